"""The mode axis: how a float model is quantized (eager, FX, PT2E, ...).

A mode is a frozen dataclass registered in :data:`MODES`; it names the
backends and schemes it has a code path for, and its ``quantize`` runs the
stages capture to convert for one cell.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from matrix.cell import Stage

if TYPE_CHECKING:
    from matrix.runner import CellContext

QAT_STEPS = 12
QAT_LEARNING_RATE = 1e-4


@dataclass
class Quantized:
    """A mode's result: the model the backend deploys and the mode's fake-quant simulation."""

    model: nn.Module
    simulation: nn.Module
    simulation_kind: str
    # The float model in the format of ``model`` when that is not a PyTorch model (a .tflite,
    # an OpenVINO model), made on demand: first-divergence compares their layers.
    float_artifact: Callable[[], nn.Module] | None = None


@dataclass(frozen=True)
class Mode:
    name: str
    description: str
    backends: tuple[str, ...]
    schemes: tuple[str, ...]
    quantize: Callable[[CellContext], Quantized]
    unavailable_reason: Callable[[], str | None] = lambda: None
    # The models the mode has a code path for (None: every model).
    models: tuple[str, ...] | None = None
    # The only qspecs the mode runs (None: every qspec that applies to it, ``default`` included).
    qspecs: tuple[str, ...] | None = None


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


class FloatArtifacts:
    """A per-process cache of what a mode makes of a float model (its ONNX export, its .tflite),
    keyed by the model's name, its parameters and buffers, and the example's shapes: a model
    that is instantiated again with the same weights is not exported again."""

    def __init__(self) -> None:
        self._made: dict[tuple, bytes] = {}

    @staticmethod
    def key(name: str, model: nn.Module, example: tuple[torch.Tensor, ...]) -> tuple:
        import hashlib

        digest = hashlib.sha256()
        for tensor_name, tensor in sorted(model.state_dict().items()):
            digest.update(tensor_name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return name, digest.hexdigest(), tuple((tuple(t.shape), str(t.dtype)) for t in example)

    def get(self, name: str, model: nn.Module, example: tuple[torch.Tensor, ...], make: Callable[[], bytes]) -> bytes:
        found = self.key(name, model, example)
        if found not in self._made:
            self._made[found] = make()
        return self._made[found]


# One line per module that registers entries; their order is the order of the axis.
MODE_MODULES = ("eager", "fx", "pt2e", "ort", "litert", "keras", "nncf", "conversion")
for _module in MODE_MODULES:
    importlib.import_module(f"matrix.modes.{_module}")

