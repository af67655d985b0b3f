"""Normalization: batch norm (alone, and fused into the conv before it), layer,
group and instance norm. Inputs are off-centre and wider than unit normal, so
the normalization has something to undo."""

from __future__ import annotations

import torch
from torch import nn

from models import ModelSpec, images, register, sequences
from models.operators import Only, scaled


class ConvBatchNorm(nn.Module):
    """A convolution and the batch norm that folds into it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(4, 8, 3), nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


feature_maps = scaled(images(8, 6, 6), 2.0, 1.0)

register(ModelSpec("op_batch_norm", lambda: Only(nn.BatchNorm2d(8)), "nn.BatchNorm2d alone (not fused)",
                   sample=feature_maps, kind="operator"))
register(ModelSpec("op_batch_norm_fused", ConvBatchNorm, "nn.Conv2d then nn.BatchNorm2d, fused",
                   sample=images(4, 8, 8), kind="operator", eager_fuse=(("conv", "bn"),)))
register(ModelSpec("op_layer_norm", lambda: Only(nn.LayerNorm(16)), "nn.LayerNorm alone (over the last dim)",
                   sample=scaled(sequences(6, 16), 2.0, 1.0), kind="operator"))
register(ModelSpec("op_group_norm", lambda: Only(nn.GroupNorm(2, 8)), "nn.GroupNorm alone (2 groups of 4)",
                   sample=feature_maps, kind="operator"))
register(ModelSpec("op_instance_norm", lambda: Only(nn.InstanceNorm2d(8)), "nn.InstanceNorm2d alone",
                   sample=feature_maps, kind="operator"))
