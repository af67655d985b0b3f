"""nn.Linear, and the matrix products of two activations (matmul, bmm)."""

from __future__ import annotations

import torch
from torch import nn
from torch.ao.nn.quantized import FloatFunctional

from models import ModelSpec, register, vectors
from models.operators import OfTwo, Only, pairs


class Matmul(OfTwo):
    def __init__(self) -> None:
        super().__init__()
        self.functional = FloatFunctional()

    def combine(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.functional.matmul(a, b)


class Bmm(OfTwo):
    """torch.bmm as written (FloatFunctional has no bmm)."""

    def combine(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.bmm(a, b)


register(ModelSpec("op_linear", lambda: Only(nn.Linear(16, 16)), "nn.Linear alone", sample=vectors(16),
                   kind="operator"))
register(ModelSpec("op_matmul", Matmul, "FloatFunctional.matmul of (4 x 8) and (8 x 6) activations",
                   sample=pairs((4, 8), (8, 6)), kind="operator", eager_stubs=True))
register(ModelSpec("op_bmm", Bmm, "torch.bmm of (4 x 8) and (8 x 6) activations",
                   sample=pairs((4, 8), (8, 6)), kind="operator", eager_stubs=True))
