"""Conversion paths: a model carried from one quantization representation to another.

The qspec names the path (the guide's "export method conversion" sections):

- ``fx_float_to_pt2e``: the FX-traced float model captured by ``torch.export``, then the
  PT2E flow with the backend's quantizer.
- ``fx_ptq_to_pt2e``: FX static PTQ (prepare_fx, calibrate), its decomposed reference model
  (``_convert_to_reference_decomposed_fx``: quantized_decomposed Q/DQ ops, PT2E's own
  representation, around float ops, the observers' parameters carried into them) captured
  by ``torch.export`` and deployed as a PT2E model is. (The plain reference model's
  quantized tensors cannot be captured: torch.export has no meta kernels for them.)
- ``fx_qat_to_pt2e``: the same after FX QAT (prepare_qat_fx, training).
- ``fx_ptq_to_pt2e_transplant`` / ``fx_qat_to_pt2e_transplant``: the guide's own route, the
  FX-prepared model captured by ``torch.export`` with FX's quantization modules put back in
  (matrix/modes/transplant.py), with the x86 BackendConfig the guide used (quint8
  activations); QAT trains on in PT2E. The fx mode takes the same route with the backend's
  own FX BackendConfig (qint8 for litert-torch and XNNPACK): the guide's proposed fix.
- ``eager_observed_to_fx``: the calibrated eager model (observers in place) traced by FX
  and converted by ``convert_fx``.
- ``eager_statistics_to_fx``: the calibrated eager model's observer statistics carried into
  an FX-observed model: ``prepare_fx`` of the float model with the same qconfig, each FX
  observer loaded from the eager observer of the module (or input) it follows, then
  ``convert_fx``; the record says how many were carried and how far the result lands from
  converting the eager model directly.

Each stage that cannot be taken says so in the record (its stage, its error).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
import torch.ao.quantization as tq
from torch.ao.quantization import quantize_fx

from matrix.contract import Quantized
from matrix.modes import Mode, calibrate, register, takes_engine_models, takes_pt2e, transplant
from matrix.modes import pt2e as pt2e_mode
from matrix.modes.eager import _assign_qconfig, _capture, qconfig_for
from matrix.modes.fx import BACKEND_CONFIGS, observed, qconfig_mapping
from matrix.modes.simulation import static_simulation
from matrix.qspecs import CONVERSION_PATHS
from matrix.vocabulary import Stage

if TYPE_CHECKING:
    from matrix.contract import CellContext

# The qconfigs and BackendConfig FX uses when it prepares a model bound for a PT2E backend.
FX_ENGINE = "x86"


class ObserverLeaves(torch.fx.Tracer):
    """FX's tracer with eager quantization's observers and fused modules kept as leaves."""

    def is_leaf_module(self, module: torch.nn.Module, name: str) -> bool:
        from torch.ao.nn.intrinsic import _FusedModule
        from torch.ao.quantization.fake_quantize import FakeQuantizeBase
        from torch.ao.quantization.observer import ObserverBase

        leaves = (ObserverBase, FakeQuantizeBase, _FusedModule, tq.QuantStub, tq.DeQuantStub)
        return isinstance(module, leaves) or super().is_leaf_module(module, name)


def _fx_reference(ctx: CellContext) -> tuple[torch.nn.Module, torch.fx.GraphModule]:
    """(the FX-prepared model after calibration or training, its reference Q/DQ model)."""
    backend_config = BACKEND_CONFIGS[FX_ENGINE]()
    model = observed(ctx, backend_config, qconfig_mapping(ctx.scheme.name, FX_ENGINE))
    with ctx.clock.stage(Stage.CONVERT):
        reference = quantize_fx._convert_to_reference_decomposed_fx(model, backend_config=backend_config)
    return model, reference


def _calibrated_eager(ctx: CellContext) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(the eager model prepared with the engine's qconfig and calibrated, its simulation)."""
    model = _capture(ctx, training=False)
    with ctx.clock.stage(Stage.PREPARE):
        _assign_qconfig(model, qconfig_for(ctx, qat=False), tq.float_qparams_weight_only_qconfig)
        tq.prepare(model, inplace=True)
    calibrate(model, ctx)
    return model, static_simulation(model)


def _eager_observer(eager: torch.nn.Module, node: torch.fx.Node) -> torch.nn.Module | None:
    """The eager observer that saw the value an FX observer observes: the input's QuantStub for
    a model input, else the activation_post_process of the module that made it (a fused module,
    a FloatFunctional); None where eager mode observed nothing there."""
    root = eager.module if isinstance(eager, tq.QuantWrapper) else eager
    if node.op == "placeholder":
        stub = getattr(eager, "quant", None)
        return getattr(stub, "activation_post_process", None)
    if node.op != "call_module":
        return None
    path = node.target.removesuffix(".activation_post_process")
    try:
        module = root.get_submodule(path)
    except AttributeError:
        return None
    return getattr(module, "activation_post_process", None)


def _carry_statistics(eager: torch.nn.Module, prepared: torch.fx.GraphModule) -> tuple[int, list[str]]:
    """Load each FX observer from its eager observer: (how many were loaded, the FX observers
    left empty). Observers are visited in graph order, so a shared one is met after its first use."""
    loaded: set[int] = set()
    empty = []
    for node in prepared.graph.nodes:
        target = prepared.get_submodule(node.target) if node.op == "call_module" else None
        if not isinstance(target, tq.ObserverBase):
            continue
        source = _eager_observer(eager, node.args[0])
        if source is not None and type(source) is type(target):
            target.load_state_dict(source.state_dict())
            loaded.add(id(target))
        elif id(target) not in loaded:  # an observer FX shares with its input's is loaded already
            empty.append(f"{node.target} (after {node.args[0].name})")
    return len(loaded), empty


def _eager_statistics_to_fx(ctx: CellContext) -> Quantized:
    eager, simulation = _calibrated_eager(ctx)
    backend_config = BACKEND_CONFIGS[ctx.backend.engine]()
    with ctx.clock.stage(Stage.PREPARE):
        mapping = tq.QConfigMapping().set_global(eager.qconfig)
        for embedding in (torch.nn.Embedding, torch.nn.EmbeddingBag):
            mapping.set_object_type(embedding, tq.float_qparams_weight_only_qconfig)
        prepared = quantize_fx.prepare_fx(copy.deepcopy(ctx.float_model).eval(), mapping, ctx.data.calibration[0],
                                          backend_config=backend_config)
        carried, empty = _carry_statistics(eager, prepared)
    with ctx.clock.stage(Stage.CONVERT):
        quantized = quantize_fx.convert_fx(prepared, backend_config=backend_config)
        direct = tq.convert(copy.deepcopy(eager))
        with torch.no_grad():
            apart = max((quantized(*b) - direct(*b)).abs().max().item() for b in ctx.data.calibration)
    notes = {"observers_carried": carried, "observers_left_empty": empty,
             "max_abs_diff_vs_eager_convert": round(apart, 6)}
    return Quantized(quantized, simulation, "the calibrated eager model's observers as fixed fake-quants", notes=notes)


def quantize(ctx: CellContext) -> Quantized:
    path = ctx.qspec.variant.conversion
    if path == "fx_float_to_pt2e":
        return pt2e_mode.quantize(ctx, capture=lambda model: torch.fx.symbolic_trace(model))
    if path in ("fx_ptq_to_pt2e_transplant", "fx_qat_to_pt2e_transplant"):
        prepared = observed(ctx, BACKEND_CONFIGS[FX_ENGINE](), qconfig_mapping(ctx.scheme.name, FX_ENGINE))
        return transplant.carry(ctx, prepared, f"FX prepared with the {FX_ENGINE} BackendConfig, carried by the "
                                "transplant")
    if path in ("fx_ptq_to_pt2e", "fx_qat_to_pt2e"):
        _, reference = _fx_reference(ctx)
        with ctx.clock.stage(Stage.CONVERT):
            exported = torch.export.export(reference.eval(), ctx.data.calibration[0]).module()
        transplant.hand_off_static(ctx)
        return Quantized(exported, reference, "the FX decomposed reference model (Q/DQ) run eagerly")
    if path == "eager_statistics_to_fx":
        return _eager_statistics_to_fx(ctx)
    # eager_observed_to_fx
    model, simulation = _calibrated_eager(ctx)
    with ctx.clock.stage(Stage.CAPTURE):
        traced = torch.fx.GraphModule(model, ObserverLeaves().trace(model))
    with ctx.clock.stage(Stage.CONVERT):
        quantized = quantize_fx.convert_fx(traced, backend_config=BACKEND_CONFIGS[ctx.backend.engine]())
    return Quantized(quantized, simulation, "the calibrated eager model's observers as fixed fake-quants")


register(Mode(
    "conversion", "a model carried between representations (FX -> PT2E, eager -> FX); the qspec names the path",
    reaches=lambda b: takes_engine_models(b) or takes_pt2e(b), schemes=("ptq_static", "qat"), quantize=quantize,
    qspecs=tuple(CONVERSION_PATHS),
))
