"""torch.mean over the spatial dims of a feature map."""

from __future__ import annotations

import torch
from torch import nn

from models import ModelSpec, images, register
from models.operators import scaled


class SpatialMean(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


register(ModelSpec("op_mean", SpatialMean, "Tensor.mean over height and width",
                   sample=scaled(images(4, 8, 8), 1.0, 0.5), kind="operator"))
