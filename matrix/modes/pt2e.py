"""PT2E: torch.export, a backend's Quantizer, prepare_pt2e / prepare_qat_pt2e / convert_pt2e.

torch 2.13 no longer carries PT2E; torchao does. Older torch had it under
``torch.ao.quantization``: both are tried, in that order.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING

import torch

from matrix.cell import Unavailable, first_location
from matrix.contract import Quantized
from matrix.modes import Mode, calibrate, patterns, register, takes_pt2e, train
from matrix.vocabulary import Stage

if TYPE_CHECKING:
    from matrix.contract import CellContext

# (module with prepare/convert, module with move_exported_model_to_*), newest first.
LOCATIONS = (
    ("torchao.quantization.pt2e.quantize_pt2e", "torchao.quantization.pt2e"),
    ("torch.ao.quantization.quantize_pt2e", "torch.ao.quantization"),
)


@functools.cache
def api() -> SimpleNamespace:
    """prepare_pt2e, prepare_qat_pt2e, convert_pt2e and the train/eval movers, wherever they live."""
    patterns.install()
    return first_location(LOCATIONS, lambda flow, movers: SimpleNamespace(
        source=flow.__name__,
        prepare_pt2e=flow.prepare_pt2e,
        prepare_qat_pt2e=flow.prepare_qat_pt2e,
        convert_pt2e=flow.convert_pt2e,
        to_train=movers.move_exported_model_to_train,
        to_eval=movers.move_exported_model_to_eval,
    ), "no PT2E API")


def unavailable_reason() -> str | None:
    try:
        api()
    except Unavailable as exc:
        return str(exc)
    return None


def export(model: torch.nn.Module, example: tuple) -> torch.fx.GraphModule:
    """The graph PT2E quantizes: ``torch.export.export``'s, on torch 2.6 and later; on older torch
    ``export_for_training``, as the PT2E tutorials of torch 2.5 capture (its ``export`` gives the
    inference graph, whose functional batch norm writes its running statistics back in place, so
    QAT's backward through it fails)."""
    if torch.__version__ < "2.6" and hasattr(torch.export, "export_for_training"):
        return torch.export.export_for_training(model, example).module()
    return torch.export.export(model, example).module()


def quantize(ctx: CellContext, capture: Callable[[torch.nn.Module], torch.nn.Module] = lambda m: m) -> Quantized:
    """The PT2E flow; ``capture`` turns the float model into what torch.export captures
    (the FX-traced model, for the conversion mode)."""
    pt2e = api()
    training = ctx.scheme.trains
    example = ctx.data.calibration[0]
    with ctx.clock.stage(Stage.CAPTURE):
        source = capture(copy.deepcopy(ctx.float_model)).train(training)
        model = export(source, example)
    with ctx.clock.stage(Stage.PREPARE):
        quantizer = ctx.backend.pt2e_quantizer(ctx.scheme.name, ctx.qspec)
        patterns.install()  # reaches the quantizer's annotators, imported just now
        if ctx.backend.pt2e_handoff is not None:
            ctx.handoff.update(ctx.backend.pt2e_handoff(quantizer))
        prepare = pt2e.prepare_qat_pt2e if training else pt2e.prepare_pt2e
        model = prepare(model, quantizer)
    if training:
        train(model, ctx, to_train=pt2e.to_train, to_eval=pt2e.to_eval)
    else:
        # Dynamic quantization still runs the observers once, to place the Q/DQ pattern.
        calibrate(model, ctx)
    with ctx.clock.stage(Stage.CONVERT):
        quantized = pt2e.convert_pt2e(model, fold_quantize=ctx.backend.pt2e_fold_quantize)
    return Quantized(quantized, quantized, "the converted PT2E model run eagerly (Q/DQ in float)")


def covers(backend, kind: str, scheme: str, qspec) -> bool:
    """A scheme the backend's quantizer has (NNCF's OpenVINOQuantizer has no dynamic mode)."""
    return backend.pt2e_schemes is None or scheme in backend.pt2e_schemes


register(Mode(
    "pt2e", "PT2E: torch.export + the backend's Quantizer + prepare_pt2e / convert_pt2e",
    reaches=takes_pt2e, schemes=("ptq_static", "ptq_dynamic", "qat"), quantize=quantize,
    unavailable_check=unavailable_reason, covers=covers,
))
