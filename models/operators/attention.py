"""nn.MultiheadAttention as self-attention."""

from __future__ import annotations

import torch
from torch import nn

from models import ModelSpec, register, sequences


class SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x, x, x, need_weights=False)[0]


register(ModelSpec("op_multihead_attention", SelfAttention, "nn.MultiheadAttention alone (self-attention)",
                   sample=sequences(6, 8), kind="operator"))
