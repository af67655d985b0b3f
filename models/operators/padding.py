"""F.pad: a border of zeros around a feature map."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from models import ModelSpec, images, register


class ZeroPad(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (1, 1, 1, 1))


register(ModelSpec("op_pad", ZeroPad, "F.pad with one zero on every side", sample=images(4, 8, 8),
                   kind="operator"))
