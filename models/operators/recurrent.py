"""nn.LSTM and nn.GRU, the sequence of outputs."""

from __future__ import annotations

import torch
from torch import nn

from models import ModelSpec, register, sequences


class Recurrent(nn.Module):
    def __init__(self, cell: type[nn.LSTM] | type[nn.GRU]) -> None:
        super().__init__()
        self.rnn = cell(8, 8, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


register(ModelSpec("op_lstm", lambda: Recurrent(nn.LSTM), "nn.LSTM alone", sample=sequences(6, 8),
                   kind="operator"))
register(ModelSpec("op_gru", lambda: Recurrent(nn.GRU), "nn.GRU alone", sample=sequences(6, 8),
                   kind="operator"))
