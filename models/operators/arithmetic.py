"""Operators of two tensors: add, mul, cat and add_relu, through FloatFunctional
as eager mode needs them."""

from __future__ import annotations

import torch
from torch.ao.nn.quantized import FloatFunctional

from models import ModelSpec, register
from models.operators import OfTwo, pairs


class Add(OfTwo):
    def __init__(self) -> None:
        super().__init__()
        self.functional = FloatFunctional()

    def combine(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.functional.add(a, b)


class Mul(Add):
    def combine(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.functional.mul(a, b)


class Cat(Add):
    def combine(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.functional.cat([a, b], dim=1)


class AddRelu(Add):
    def combine(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.functional.add_relu(a, b)


for _name, _module, _what in (("add", Add, "FloatFunctional.add"), ("mul", Mul, "FloatFunctional.mul"),
                              ("cat", Cat, "FloatFunctional.cat along channels"),
                              ("add_relu", AddRelu, "FloatFunctional.add_relu")):
    register(ModelSpec(f"op_{_name}", _module, f"{_what} of two feature maps", sample=pairs((4, 8, 8)),
                       kind="operator", eager_stubs=True))
