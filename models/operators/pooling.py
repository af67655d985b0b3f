"""Pooling: max, average and adaptive average over 2-d feature maps."""

from __future__ import annotations

from torch import nn

from models import ModelSpec, images, register
from models.operators import Only

for _name, _layer, _what in (("max_pool2d", lambda: nn.MaxPool2d(2), "nn.MaxPool2d(2)"),
                             ("avg_pool2d", lambda: nn.AvgPool2d(2), "nn.AvgPool2d(2)"),
                             ("adaptive_avg_pool2d", lambda: nn.AdaptiveAvgPool2d(3), "nn.AdaptiveAvgPool2d(3)")):
    register(ModelSpec(f"op_{_name}", lambda layer=_layer: Only(layer()), f"{_what} alone",
                       sample=images(4, 8, 8), kind="operator"))
