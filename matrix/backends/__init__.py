"""The backend axis: where a quantized model is deployed and run.

A backend is a frozen dataclass registered in :data:`BACKENDS`. ``deploy``
runs the stages export and load and inspects the deployed artifact;
``activate`` wraps the whole cell (a quantized engine, say) and restores what
it changed.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from matrix.runner import CellContext


@dataclass
class Inspection:
    """Compute ops of a deployed artifact, by name, split into quantized and float."""

    quantized: Counter[str] = field(default_factory=Counter)
    floating: Counter[str] = field(default_factory=Counter)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def quantized_ops(self) -> int:
        return sum(self.quantized.values())

    @property
    def float_ops(self) -> int:
        return sum(self.floating.values())


@dataclass
class Deployed:
    run: Callable[..., torch.Tensor]
    inspection: Inspection
    # The mode's model itself when that is what runs (PyTorch's own engines): first
    # divergence then looks inside what was deployed, not at a model standing in for it.
    model: torch.nn.Module | None = None


@dataclass(frozen=True)
class Backend:
    name: str
    family: str
    description: str
    deploy: Callable[[CellContext, torch.nn.Module], Deployed]
    unavailable_reason: Callable[[], str | None] = lambda: None
    activate: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    pt2e_quantizer: Callable[[str, str], Any] | None = None
    # What the backend's deploy needs to know of the PT2E quantizer (CellContext.handoff).
    pt2e_handoff: Callable[[Any], dict[str, Any]] | None = None
    # convert_pt2e(fold_quantize=...): False keeps weights as quantize ops, as litert-torch needs.
    pt2e_fold_quantize: bool = True
    # The quantized engine whose qconfigs and BackendConfig eager and FX use for this backend.
    engine: str | None = None
    # Deploys FX's reference (Q/DQ) model rather than convert_fx's quantized kernels.
    takes_fx_reference: bool = False

    @property
    def qengine(self) -> str:
        return self.engine or self.name


BACKENDS: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    BACKENDS[backend.name] = backend
    return backend


def missing_packages(packages: dict[str, str], extra: str) -> str | None:
    """Why a backend's cells are unavailable: the pip names of the modules (module -> package)
    that cannot be imported, and the extra that installs them; None when all are there."""
    missing = [package for module, package in packages.items() if importlib.util.find_spec(module) is None]
    if missing:
        return f"missing package(s) {', '.join(missing)} (pip install 'qmatrix[{extra}]')"
    return None


@contextlib.contextmanager
def quantized_engine(engine: str) -> Iterator[None]:
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous



# One line per module that registers entries; their order is the order of the axis.
BACKEND_MODULES = ("native", "inductor", "onnxruntime", "litert", "executorch", "openvino")
for _module in BACKEND_MODULES:
    importlib.import_module(f"matrix.backends.{_module}")
