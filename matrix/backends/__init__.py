"""The backend axis: where a quantized model is deployed and run.

A backend is a frozen dataclass registered in :data:`BACKENDS`, one module each.
``deploy`` runs the stages export and load and inspects the deployed artifact;
``activate`` wraps the whole cell (a quantized engine, say) and restores what
it changed. What a backend takes (a quantized engine's models, PT2E models with
its own quantizer, a format) is declared on it (:class:`matrix.contract.Backend`),
and the modes and qspecs that reach it are derived from that: no other module
names a backend.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator

import torch

from matrix.contract import NATIVE, Backend

__all__ = ["BACKENDS", "NATIVE", "Backend", "converting_under", "quantized_engine", "register"]

BACKENDS: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    BACKENDS[backend.name] = backend
    return backend


@contextlib.contextmanager
def quantized_engine(engine: str) -> Iterator[None]:
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


def converting_under(engine: str) -> contextlib.AbstractContextManager:
    """A cell of a backend that takes an engine's eager and FX models, converting under the
    engine whose qconfig they used (where this torch build has it)."""
    if engine in torch.backends.quantized.supported_engines:
        return quantized_engine(engine)
    return contextlib.nullcontext()


# One line per module that registers entries; their order is the order of the axis.
BACKEND_MODULES = ("native", "torch_cpu", "inductor", "onnxruntime", "litert", "executorch", "openvino")
for _module in BACKEND_MODULES:
    importlib.import_module(f"matrix.backends.{_module}")
