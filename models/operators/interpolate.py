"""F.interpolate, doubling a feature map: nearest and bilinear."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from models import ModelSpec, images, register


class Interpolate(nn.Module):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode=self.mode)


for _mode in ("nearest", "bilinear"):
    register(ModelSpec(f"op_interpolate_{_mode}", lambda mode=_mode: Interpolate(mode),
                       f"F.interpolate(scale_factor=2, mode={_mode!r})", sample=images(4, 6, 6), kind="operator"))
