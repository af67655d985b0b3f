"""nn.Dropout: the identity in eval mode, active while QAT trains."""

from __future__ import annotations

from torch import nn

from models import ModelSpec, images, register
from models.operators import Only

register(ModelSpec("op_dropout", lambda: Only(nn.Dropout(0.1)), "nn.Dropout(0.1) alone", sample=images(4, 8, 8),
                   kind="operator"))
