"""The float model with no quantizer: deployed as it is (``float``), or in half precision (``fp16``).

A ``float`` cell hands the float model to the backend's own deploy, which exports, converts,
lowers or compiles it as it does a quantized model (the dynamo ONNX exporter, litert_torch,
ExecuTorch's XNNPACK partitioner, OpenVINO's PyTorch frontend, Inductor): its output against
PyTorch's float output says whether the export is faithful (``[schemes.float]`` in
thresholds.toml), so a quantized cell of the same backend can be read apart from its export.
PyTorch's own engines and eager PyTorch run the float model itself, the reference: they have
no float cell.

An ``fp16`` cell casts the model the backend's way: ONNX Runtime gets the float ONNX export
converted to float16 (onnxruntime.transformers.float16, inputs and outputs kept float32);
OpenVINO compiles the float model with inference precision f16, on a CPU whose plugin lists
FP16 among its optimization capabilities; eager PyTorch runs ``model.half()`` on float16
inputs. Inspection counts ops by the dtype they computed in (``[f16]``).
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from matrix.cell import Unavailable
from matrix.contract import NATIVE, Quantized
from matrix.formats import onnx, openvino
from matrix.modes import Mode, register
from matrix.modes.ort import float_onnx
from matrix.modes.simulation import fp16_simulation
from matrix.vocabulary import Stage

if TYPE_CHECKING:
    from matrix.contract import Backend, CellContext
    from matrix.qspecs import QSpec

# The families whose fp16 path this mode has (LiteRT's fp16 is the TFLite converter's: the
# keras and litert_recipe modes).
FP16_FAMILIES = ("onnx", "openvino", "torch_eager")


class HalfPrecision(nn.Module):
    """A model in float16 as a float32 module: float inputs cast to half, the output back."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.half()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        halves = [t.half() if t.is_floating_point() else t for t in inputs]
        return self.model(*halves).float()


def _onnx_fp16(ctx: CellContext) -> Quantized:
    import onnx as onnx_lib
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with tempfile.TemporaryDirectory(prefix="qmatrix-fp16-") as folder:
        path = Path(folder) / "float.onnx"
        with ctx.clock.stage(Stage.CAPTURE):
            path.write_bytes(float_onnx(ctx, path))
        with ctx.clock.stage(Stage.CONVERT):
            half = convert_float_to_float16(onnx_lib.load(str(path)), keep_io_types=True)
    return Quantized(onnx.OnnxModel(half.SerializeToString()), fp16_simulation(ctx.float_model),
                     "parameters rounded to float16", stand_in=True)


def openvino_fp16_reason() -> str | None:
    """Why the OpenVINO CPU plugin cannot compute in f16 here, or None."""
    capabilities = openvino.openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if "FP16" in capabilities:
        return None
    return (f"OpenVINO's CPU plugin lists no FP16 among its optimization capabilities on this CPU "
            f"({', '.join(capabilities)}): an f16 inference precision hint runs in f32 here")


def _openvino_fp16(ctx: CellContext) -> Quantized:
    reason = openvino_fp16_reason()
    if reason:
        raise Unavailable(reason)
    with ctx.clock.stage(Stage.CAPTURE), torch.no_grad():
        model = openvino.from_pt2e(copy.deepcopy(ctx.float_model).eval(), ctx.data.calibration[0])
    model.precision = "f16"
    return Quantized(model, fp16_simulation(ctx.float_model), "parameters rounded to float16", stand_in=True)


def quantize(ctx: CellContext) -> Quantized:
    float_model = ctx.float_model
    if ctx.scheme.name == "float":
        return Quantized(copy.deepcopy(float_model).eval(), float_model, "the float model itself")
    family = ctx.backend.family
    if family == "onnx":
        return _onnx_fp16(ctx)
    if family == "openvino":
        return _openvino_fp16(ctx)
    with ctx.clock.stage(Stage.CONVERT):
        model = HalfPrecision(copy.deepcopy(float_model).eval())
    return Quantized(model, fp16_simulation(float_model), "parameters rounded to float16", stand_in=True)


def reaches(backend: Backend) -> bool:
    """Every backend that deploys a PyTorch model through an artifact of its own; not PyTorch's
    quantized engines, which run the float model itself."""
    return backend.family != NATIVE


def covers(backend: Backend, kind: str, scheme: str, qspec: QSpec) -> bool:
    if scheme == "fp16":
        return backend.family in FP16_FAMILIES
    return backend.family != "torch_eager"  # eager PyTorch runs the float model itself


register(Mode(
    "export", "no quantizer: the float model deployed as the backend takes it (float parity), or cast to float16",
    reaches=reaches, schemes=("float", "fp16"), quantize=quantize, qspecs=("default",), covers=covers,
))
