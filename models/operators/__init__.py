"""Single-operator models: the operator axis of PyTorch's quantization docs.

Every module of this package registers one operator, or one family of them, with
:func:`models.register` and ``kind="operator"``; :func:`discover` imports them
all, so a new operator is one new file here and nothing else.

Each model is the operator alone (no extra layer that could be quantized in its
place), so a cell says whether that operator itself gets a quantized kernel.
Eager mode wraps a model in QuantStub/DeQuantStub unless it sets ``eager_stubs``
(a model with several inputs places its own, one per input).
"""

from __future__ import annotations

import importlib
import pkgutil

import torch
from torch import nn
from torch.ao.quantization import DeQuantStub, QuantStub

from models import Inputs, Sampler


class Only(nn.Module):
    """One layer inside a model, as a real model holds it (quantize_dynamic swaps
    children, never the root module)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class OfTwo(nn.Module):
    """An operator of two tensors. It places its own stubs, one QuantStub per
    input (register it with ``eager_stubs=True``); a subclass defines ``combine``."""

    def __init__(self) -> None:
        super().__init__()
        self.quant_a, self.quant_b, self.dequant = QuantStub(), QuantStub(), DeQuantStub()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.combine(self.quant_a(a), self.quant_b(b)))

    def combine(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def scaled(sample: Sampler, factor: float, shift: float = 0.0) -> Sampler:
    """``sample`` times ``factor`` plus ``shift``: inputs that reach an operator's interesting range."""

    def draw(gen: torch.Generator, n: int) -> Inputs:
        return tuple(x * factor + shift for x in sample(gen, n))

    return draw


def pairs(shape_a: tuple[int, ...], shape_b: tuple[int, ...] | None = None) -> Sampler:
    """Two normal inputs per row, for an operator of two tensors."""

    def draw(gen: torch.Generator, n: int) -> Inputs:
        return (torch.randn(n, *shape_a, generator=gen), torch.randn(n, *(shape_b or shape_a), generator=gen))

    return draw


def discover() -> list[str]:
    """Import every module of this package (each registers its operators); return
    their names, in file-name order. A module imported before is not run again."""
    names = [info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")]
    for name in names:
        importlib.import_module(f"{__name__}.{name}")
    return names


discover()
