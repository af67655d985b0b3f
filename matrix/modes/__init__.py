"""The mode axis: how a float model is quantized (eager, FX, PT2E, ...).

A mode is a frozen dataclass registered in :data:`MODES`; it names the
schemes it has a code path for and which backends it reaches, by what a backend
declares (a quantized engine, a PT2E quantizer, a format), never by name; its
``quantize`` runs the stages capture to convert for one cell.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from matrix.cell import unavailable_reason
from matrix.vocabulary import Stage

if TYPE_CHECKING:
    from matrix.contract import Backend, CellContext, Quantized
    from matrix.qspecs import QSpec

QAT_STEPS = 12
QAT_LEARNING_RATE = 1e-4


@dataclass(frozen=True)
class Mode:
    name: str
    description: str
    # Whether the mode has a code path to a backend, from what the backend declares.
    reaches: Callable[[Backend], bool]
    schemes: tuple[str, ...]
    quantize: Callable[[CellContext], Quantized]
    # Import name -> pip distribution of what the mode runs on, and the extra that installs it (or
    # the pip command, for packages no extra can install).
    packages: dict[str, str] = field(default_factory=dict)
    extra: str | None = None
    unavailable_check: Callable[[], str | None] = lambda: None
    # The models the mode has a code path for (None: every model).
    models: tuple[str, ...] | None = None
    # Whether a model brought from outside (``--models-from``) runs too when ``models`` names some:
    # the list then only keeps the suite's own models to those where the mode has something to do.
    own_models_only: bool = True
    # The only qspecs the mode runs (None: every qspec that applies to it, ``default`` included).
    qspecs: tuple[str, ...] | None = None
    # The names an expectation's reason gives the quantizer this mode runs, when it is a tool of
    # its own (NNCF, ONNX Runtime's quantizer), as Backend.tools.
    tools: tuple[str, ...] = ()
    # Whether the mode's path to a backend takes this kind of model (matrix/vocabulary.py's KINDS),
    # scheme and qspec, for a mode whose paths differ by backend (None: every one it has).
    covers: Callable[[Backend, str, str, QSpec], bool] | None = None

    def unavailable_reason(self) -> str | None:
        return unavailable_reason(self)


def takes_engine_models(backend: Backend) -> bool:
    """A backend that takes a quantized engine's eager or FX model (as it is, or as ONNX)."""
    return backend.qconfig_engine is not None


def torchscript_route(qspec: QSpec) -> bool:
    """An eager or FX cell whose converted model goes to ONNX by the TorchScript exporter: it
    reaches a backend that reads ONNX with no engine of its own (``Backend.engine_via_onnx``)."""
    return qspec.variant.torchscript


def takes_fx_target(backend: Backend) -> bool:
    """A backend with an FX BackendConfig written after its PT2E quantizer."""
    return backend.fx_target is not None


def takes_pt2e(backend: Backend) -> bool:
    """A backend with a PT2E quantizer of its own."""
    return backend.pt2e_quantizer is not None


def of_family(*families: str) -> Callable[[Backend], bool]:
    """Backends that run an artifact of one of these families (a .tflite, an ONNX model, ...), as
    their own or as one they read (``Backend.reads``)."""
    return lambda backend: backend.family in families or any(f in backend.reads for f in families)


MODES: dict[str, Mode] = {}


def register(mode: Mode) -> Mode:
    MODES[mode.name] = mode
    return mode


def calibrate(model: nn.Module, ctx: CellContext) -> None:
    with ctx.clock.stage(Stage.CALIBRATE), torch.no_grad():
        for batch in ctx.data.calibration:
            model(*batch)


def train(
    model: nn.Module,
    ctx: CellContext,
    to_train: Callable[[nn.Module], object] = lambda m: m.train(),
    to_eval: Callable[[nn.Module], object] = lambda m: m.eval(),
) -> None:
    """A few real QAT steps: distil the float model's outputs on the calibration batches.

    A model without weights (a ReLU alone, say) has nothing to optimize: its
    training steps are forward passes in training mode, where the fake-quants observe.
    """
    with ctx.clock.stage(Stage.TRAIN):
        with torch.no_grad():
            targets = [ctx.float_model(*batch) for batch in ctx.data.calibration]
        to_train(model)
        weights = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(weights, lr=QAT_LEARNING_RATE) if weights else None
        for step in range(QAT_STEPS):
            index = step % len(targets)
            output = model(*ctx.data.calibration[index])
            if optimizer is not None:
                optimizer.zero_grad()
                nn.functional.mse_loss(output, targets[index]).backward()
                optimizer.step()
        to_eval(model)


# One line per module that registers entries; their order is the order of the axis.
MODE_MODULES = ("export", "eager", "fx", "pt2e", "torchao", "ort", "litert", "keras", "onnx2tf", "nncf", "conversion")
for _module in MODE_MODULES:
    importlib.import_module(f"matrix.modes.{_module}")

