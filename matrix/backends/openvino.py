"""OpenVINO: a model compiled and run by the OpenVINO CPU plugin.

The ``nncf`` mode hands over an OpenVINO model (:class:`~matrix.formats.openvino.OpenVinoModel`);
PT2E (and FX, through the transplant) hands over its converted model (quantized by NNCF's
``OpenVINOQuantizer``, the PT2E quantizer OpenVINO's own ExecuTorch backend ships), which
torch.export captures and ``ov.convert_model`` reads, or, with the ``via_onnx`` qspec, which
``torch.onnx.export`` writes as ONNX and OpenVINO's ONNX frontend reads. OpenVINO reads ONNX
(``reads``): the ``ort`` mode's models, quantized by ONNX Runtime's quantizer, run here too, and
eager and FX models converted for the x86 engine, as the TorchScript exporter writes them for
ONNX Runtime (``engine_via_onnx``).
Compilation, inspection and layer reading are :mod:`matrix.formats.openvino`.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

import torch

from matrix.backends import Backend, converting_under, register
from matrix.cell import Unavailable
from matrix.contract import Deployed
from matrix.formats import onnx, openvino
from matrix.qspecs import QSpec
from matrix.vocabulary import Stage

# The engine whose eager and FX models OpenVINO reads as ONNX, the TorchScript exporter's, as
# ONNX Runtime gets them (x86: OpenVINO's CPU plugin runs on x86 here).
ENGINE_VIA_ONNX = "x86"

# The backend runs what NNCF made: both install with its extra (the ONNX it reads comes with the onnx extra).
PACKAGES = {**openvino.PACKAGES, "nncf": "nncf"}


def deploy(ctx, model: torch.nn.Module) -> Deployed:
    variant = ctx.qspec.variant
    if isinstance(model, onnx.OnnxModel) or variant.via_onnx or variant.torchscript:
        with (ctx.clock.stage(Stage.EXPORT), torch.no_grad(),
              tempfile.TemporaryDirectory(prefix="qmatrix-ov-") as folder):
            path = Path(folder) / "model.onnx"
            if isinstance(model, onnx.OnnxModel):
                path.write_bytes(model.serialized)
            else:
                onnx.export(model, ctx.data.calibration[0], path, variant.onnx_exporter)
            model = openvino.from_onnx(path)
    elif not isinstance(model, openvino.OpenVinoModel):
        with ctx.clock.stage(Stage.EXPORT), torch.no_grad():
            model = openvino.from_pt2e(model, ctx.data.calibration[0])
    with ctx.clock.stage(Stage.LOAD):
        compiled = model.compiled()
        inspection = openvino.inspect_compiled(compiled, model.precision)
    if ctx.artifacts is not None:
        ctx.artifacts.mkdir(parents=True, exist_ok=True)
        openvino.openvino().save_model(model.ov_model, str(ctx.artifacts / "model.xml"), compress_to_fp16=False)
    return Deployed(model, inspection, size_bytes=openvino.ir_bytes(model.ov_model))


def pt2e_quantizer(scheme: str, qspec: QSpec) -> Any:
    """NNCF's OpenVINOQuantizer in its default mode (INT8_SYM: symmetric int8 activations and
    weights, per-channel weights; NNCF picks unsigned activations after a non-negative op). It
    ships in ExecuTorch's OpenVINO backend; it has no dynamic mode (PT2E_SCHEMES)."""
    try:
        from executorch.backends.openvino.quantizer.quantizer import OpenVINOQuantizer
    except ImportError as exc:
        raise Unavailable(f"NNCF's OpenVINOQuantizer ships in executorch (the executorch extra): {exc}") from exc
    return OpenVINOQuantizer()


register(Backend(
    "openvino", "openvino",
    "quantized by NNCF (on the OpenVINO model, or as PT2E's OpenVINOQuantizer) and run by the OpenVINO CPU "
    "plugin (f32 float precision, snippets off)",
    deploy=deploy, packages=PACKAGES, extra="openvino", tools=("OpenVINO", "oneDNN", "NNCF", "OpenVINOQuantizer"),
    pt2e_quantizer=pt2e_quantizer, pt2e_schemes=("ptq_static", "qat"), pt2e_fold_quantize=False, fx_target="openvino",
    reads=("onnx",), engine_via_onnx=ENGINE_VIA_ONNX, activate=functools.partial(converting_under, ENGINE_VIA_ONNX),
))
