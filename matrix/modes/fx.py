"""FX graph mode: symbolic tracing, a QConfigMapping and the backend's BackendConfig.

On PyTorch's engines (and ONNX Runtime, which takes their models) the BackendConfig is the
engine's own and convert_fx makes the model. On a backend that takes PT2E models and has an
FX BackendConfig written after its PT2E quantizer (matrix/modes/fx_targets.py: litert-torch's,
ExecuTorch's XNNPACK), FX prepares with that one and the transplant carries the model to PT2E
(matrix/modes/transplant.py), for static PTQ and QAT, on the reference and zoo models.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch.ao.quantization as tq
import torch.fx
from torch.ao.quantization import backend_config as bc
from torch.ao.quantization import quantize_fx
from torch.ao.quantization.backend_config.x86 import get_x86_backend_config

from matrix.contract import Quantized
from matrix.modes import (
    Mode,
    calibrate,
    register,
    takes_engine_models,
    takes_fx_target,
    torchscript_route,
    train,
    transplant,
)
from matrix.modes.fx_targets import FX_TARGETS
from matrix.modes.simulation import qat_simulation
from matrix.qconfigs import torch_qconfig
from matrix.vocabulary import Stage

if TYPE_CHECKING:
    from matrix.contract import CellContext

BACKEND_CONFIGS = {
    "fbgemm": bc.get_fbgemm_backend_config,
    "x86": get_x86_backend_config,
    "qnnpack": bc.get_qnnpack_backend_config,
    "onednn": bc.get_onednn_backend_config,
}


def qconfig_mapping(scheme: str, engine: str, knobs: dict[str, str] | None = None) -> tq.QConfigMapping:
    """The engine's default mapping; a qspec's knobs change its global qconfig (the fixed-qparams
    entries for sigmoid, softmax, ... stay)."""
    if scheme == "ptq_dynamic":
        return tq.QConfigMapping().set_global(tq.default_dynamic_qconfig)
    mapping = tq.get_default_qat_qconfig_mapping(engine) if scheme == "qat" else tq.get_default_qconfig_mapping(engine)
    if knobs:
        mapping.set_global(torch_qconfig(knobs, engine, qat=scheme == "qat"))
    return mapping


def observed(ctx: CellContext, backend_config: bc.BackendConfig, mapping: tq.QConfigMapping) -> torch.fx.GraphModule:
    """The float model traced (the capture stage), prepared by FX with ``backend_config`` and
    ``mapping``, then trained (QAT) or calibrated (static)."""
    training = ctx.scheme.trains
    with ctx.clock.stage(Stage.CAPTURE):
        model = copy.deepcopy(ctx.float_model).train(training)
        torch.fx.symbolic_trace(model)
    with ctx.clock.stage(Stage.PREPARE):
        prepare = quantize_fx.prepare_qat_fx if training else quantize_fx.prepare_fx
        model = prepare(model, mapping, ctx.data.calibration[0], backend_config=backend_config)
    if training:
        train(model, ctx)
    elif ctx.scheme.calibrates:
        calibrate(model, ctx)
    return model


def quantize(ctx: CellContext) -> Quantized:
    engine, scheme = ctx.backend.qconfig_engine, ctx.scheme.name
    if ctx.backend.engine is None and not torchscript_route(ctx.qspec):
        target = FX_TARGETS[ctx.backend.fx_target]
        prepared = observed(ctx, target.backend_config(), target.qconfig_mapping(scheme))
        return transplant.carry(ctx, prepared, f"FX prepared with the {target.name} BackendConfig, carried by "
                                "the transplant")
    training = ctx.scheme.trains
    backend_config = BACKEND_CONFIGS[engine]()
    model = observed(ctx, backend_config, qconfig_mapping(scheme, engine, ctx.qspec.knobs))
    with ctx.clock.stage(Stage.CONVERT):
        if training:
            simulation, kind = qat_simulation(model), "the trained QAT model, fake-quants frozen"
        else:
            simulation = quantize_fx.convert_to_reference_fx(copy.deepcopy(model), backend_config=backend_config)
            kind = "convert_to_reference_fx (QDQ reference model)"
        if ctx.backend.takes_fx_reference and not ctx.qspec.variant.fx_quantized_modules:
            quantized = quantize_fx.convert_to_reference_fx(model, backend_config=backend_config)
        else:
            quantized = quantize_fx.convert_fx(model, backend_config=backend_config)
    return Quantized(quantized, simulation, kind)


def covers(backend, kind: str, scheme: str, qspec) -> bool:
    """A backend with an engine takes every FX model; one that reads them as ONNX
    (``engine_via_onnx``), the TorchScript exporter's route; the transplant carries static and
    QAT models, and on the operators it is left out for wall time (their PT2E cells show what
    the same quantizer annotates)."""
    if backend.engine is not None or torchscript_route(qspec):
        return True
    return scheme in ("ptq_static", "qat") and kind in ("model", "zoo")


register(Mode(
    "fx", "FX graph mode: prepare_fx / prepare_qat_fx / convert_fx with the backend's BackendConfig, or "
    "an FX BackendConfig after the backend's PT2E quantizer and the FX -> PT2E transplant",
    reaches=lambda b: takes_engine_models(b) or takes_fx_target(b), schemes=("ptq_static", "ptq_dynamic", "qat"),
    quantize=quantize, covers=covers,
))
