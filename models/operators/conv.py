"""Convolutions: nn.Conv1d/2d/3d and nn.ConvTranspose1d/2d."""

from __future__ import annotations

import torch
from torch import nn

from models import Inputs, ModelSpec, Sampler, images, register
from models.operators import Only


def signals(channels: int, length: int) -> Sampler:
    def sample(gen: torch.Generator, n: int) -> Inputs:
        return (torch.randn(n, channels, length, generator=gen),)

    return sample


def volumes(channels: int, depth: int, height: int, width: int) -> Sampler:
    def sample(gen: torch.Generator, n: int) -> Inputs:
        return (torch.randn(n, channels, depth, height, width, generator=gen),)

    return sample


register(ModelSpec("op_conv1d", lambda: Only(nn.Conv1d(4, 8, 3)), "nn.Conv1d alone", sample=signals(4, 16),
                   kind="operator"))
register(ModelSpec("op_conv2d", lambda: Only(nn.Conv2d(4, 8, 3)), "nn.Conv2d alone", sample=images(4, 8, 8),
                   kind="operator"))
register(ModelSpec("op_conv3d", lambda: Only(nn.Conv3d(2, 4, 3)), "nn.Conv3d alone", sample=volumes(2, 4, 6, 6),
                   kind="operator"))
register(ModelSpec("op_conv_transpose1d", lambda: Only(nn.ConvTranspose1d(4, 8, 3, stride=2)),
                   "nn.ConvTranspose1d alone (stride 2)", sample=signals(4, 8), kind="operator"))
register(ModelSpec("op_conv_transpose2d", lambda: Only(nn.ConvTranspose2d(4, 8, 3, stride=2)),
                   "nn.ConvTranspose2d alone (stride 2)", sample=images(4, 6, 6), kind="operator"))
