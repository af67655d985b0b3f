"""Single-operator models: the operator axis of PyTorch's quantization docs.

Each is the operator alone (no extra layer that could be quantized in its
place), so a cell says whether that operator itself gets a quantized kernel.
"""

from __future__ import annotations

import torch
from torch import nn

from models import ModelSpec, images, register, sequences, vectors


class Only(nn.Module):
    """One layer inside a model, as a real model holds it (quantize_dynamic swaps
    children, never the root module)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class Recurrent(nn.Module):
    def __init__(self, cell: type[nn.LSTM] | type[nn.GRU]) -> None:
        super().__init__()
        self.rnn = cell(8, 8, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


class SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x, x, x, need_weights=False)[0]


register(ModelSpec("op_linear", lambda: Only(nn.Linear(16, 16)), "nn.Linear alone", sample=vectors(16),
                   kind="operator"))
register(ModelSpec("op_conv2d", lambda: Only(nn.Conv2d(4, 8, 3)), "nn.Conv2d alone", sample=images(4, 8, 8),
                   kind="operator"))
register(ModelSpec("op_lstm", lambda: Recurrent(nn.LSTM), "nn.LSTM alone", sample=sequences(6, 8),
                   kind="operator"))
register(ModelSpec("op_gru", lambda: Recurrent(nn.GRU), "nn.GRU alone", sample=sequences(6, 8),
                   kind="operator"))
register(ModelSpec("op_multihead_attention", SelfAttention, "nn.MultiheadAttention alone (self-attention)",
                   sample=sequences(6, 8), kind="operator"))
