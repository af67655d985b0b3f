"""Activations, each alone, on inputs wide enough to reach their saturated and
bent regions (sigmoid, tanh and softmax are the fixed-qparams ops)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from models import ModelSpec, images, register, vectors
from models.operators import Only, scaled


class Clamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, -1.5, 1.5)


# name: (the layer, what it is, how far the inputs spread)
ACTIVATIONS: dict[str, tuple[Callable[[], nn.Module], str, float]] = {
    "relu": (nn.ReLU, "nn.ReLU", 3.0),
    "relu6": (nn.ReLU6, "nn.ReLU6", 4.0),
    "leaky_relu": (lambda: nn.LeakyReLU(0.1), "nn.LeakyReLU(0.1)", 3.0),
    "hardswish": (nn.Hardswish, "nn.Hardswish", 3.0),
    "hardsigmoid": (nn.Hardsigmoid, "nn.Hardsigmoid", 3.0),
    "elu": (nn.ELU, "nn.ELU", 2.0),
    "gelu": (nn.GELU, "nn.GELU", 2.0),
    "silu": (nn.SiLU, "nn.SiLU", 2.0),
    "sigmoid": (nn.Sigmoid, "nn.Sigmoid", 3.0),
    "tanh": (nn.Tanh, "nn.Tanh", 2.0),
    "hardtanh": (nn.Hardtanh, "nn.Hardtanh(-1, 1)", 2.0),
    "clamp": (Clamp, "torch.clamp(x, -1.5, 1.5)", 2.0),
}

for _name, (_layer, _what, _spread) in ACTIVATIONS.items():
    register(ModelSpec(f"op_{_name}", lambda layer=_layer: Only(layer()), f"{_what} alone",
                       sample=scaled(images(4, 8, 8), _spread), kind="operator"))

register(ModelSpec("op_softmax", lambda: Only(nn.Softmax(dim=-1)), "nn.Softmax alone, over 10 logits",
                   sample=scaled(vectors(10), 3.0), kind="operator"))
