"""LiteRT (TFLite): a .tflite flatbuffer run by the LiteRT interpreter's builtin kernels.

A PyTorch model reaches it through ``litert_torch.convert`` (a PT2E model quantized by
litert-torch's own PT2EQuantizer is converted with that quantizer in its QuantConfig; a
float model with a recipe the mode chose); the ``keras`` and ``aeq`` modes hand over a
.tflite they already made (:class:`~matrix.formats.tflite.TFLiteModel`). The format, the
interpreter and the inspection of its ops are :mod:`matrix.formats.tflite`.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from matrix.backends import Backend, register
from matrix.contract import Deployed
from matrix.formats import tflite
from matrix.qconfigs import per_channel_only
from matrix.qspecs import QSpec
from matrix.vocabulary import Stage


def deploy(ctx, model: torch.nn.Module) -> Deployed:
    if isinstance(model, tflite.TFLiteModel):
        content, channels_last, output_order = model.content, model.channels_last, model.output_order
    else:
        with ctx.clock.stage(Stage.EXPORT), torch.no_grad():
            content = tflite.convert(model, ctx.data.calibration[0], ctx.handoff.get(tflite.QUANT_CONFIG))
        channels_last, output_order = False, None
    if ctx.artifacts is not None:
        ctx.artifacts.mkdir(parents=True, exist_ok=True)
        (ctx.artifacts / "model.tflite").write_bytes(content)
    with ctx.clock.stage(Stage.LOAD):
        deployed = tflite.TFLiteModel(content, channels_last, output_order)
        found = tflite.interpreter(content)
        inspection = tflite.inspect_tflite(found, content)
    return Deployed(deployed, inspection, size_bytes=len(content))


def pt2e_quantizer(scheme: str, qspec: QSpec) -> Any:
    """litert-torch's own PT2EQuantizer: symmetric int8, per-channel weights unless the
    qspec asks for per-tensor. The mode hands it on, so conversion gets it in its QuantConfig."""
    found = tflite.litert_torch_part("quantize.pt2e_quantizer")
    PT2EQuantizer, get_symmetric_quantization_config = found.PT2EQuantizer, found.get_symmetric_quantization_config

    config = get_symmetric_quantization_config(
        is_per_channel=per_channel_only(qspec.knobs, "litert-torch's quantizer"), is_qat=scheme == "qat",
        is_dynamic=scheme == "ptq_dynamic")
    return PT2EQuantizer().set_global(config)


def pt2e_handoff(quantizer: Any) -> dict[str, Any]:
    quant_config = tflite.litert_torch_part("quantize.quant_config")
    return {tflite.QUANT_CONFIG: quant_config.QuantConfig(pt2e_quantizer=quantizer)}


register(Backend(
    "litert", "tflite",
    "converted to .tflite (litert_torch.convert, or a Keras / TFLite quantizer) and run by the LiteRT "
    "interpreter's builtin kernels",
    deploy=deploy, packages=tflite.PACKAGES, extra="litert", activate=contextlib.nullcontext,
    pt2e_quantizer=pt2e_quantizer, fx_target="ai_edge_torch",
    pt2e_knobs="granularity", pt2e_handoff=pt2e_handoff, pt2e_fold_quantize=False,
    tools=("LiteRT", "TFLite", "litert-torch", "ai-edge-torch", "PT2EQuantizer"),
))
