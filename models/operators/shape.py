"""Operators that move data without computing on it: flatten (the function and
the module), reshape, permute, transpose."""

from __future__ import annotations

import torch
from torch import nn

from models import ModelSpec, images, register
from models.operators import Only


class Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x, 1)


class Reshape(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1, 16)


class Permute(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class Transpose(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


for _name, _build, _what in (("flatten", Flatten, "torch.flatten(x, 1)"),
                             ("flatten_module", lambda: Only(nn.Flatten()), "nn.Flatten"),
                             ("reshape", Reshape, "Tensor.reshape(n, -1, 16)"),
                             ("permute", Permute, "Tensor.permute(0, 2, 3, 1)"),
                             ("transpose", Transpose, "Tensor.transpose(1, 2)")):
    register(ModelSpec(f"op_{_name}", _build, f"{_what} alone", sample=images(4, 8, 8), kind="operator"))
