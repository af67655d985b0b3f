"""nn.Embedding and nn.EmbeddingBag: token ids in, so there is no input to quantize
(``eager_stubs`` without stubs: the output stays float, as the docs say of EmbeddingBag)."""

from __future__ import annotations

from torch import nn

from models import ModelSpec, register, tokens
from models.operators import Only

register(ModelSpec("op_embedding", lambda: Only(nn.Embedding(50, 8)), "nn.Embedding alone (50 x 8)",
                   sample=tokens(50, 6), kind="operator", eager_stubs=True))
register(ModelSpec("op_embedding_bag", lambda: Only(nn.EmbeddingBag(50, 8, mode="sum")),
                   "nn.EmbeddingBag alone (50 x 8, sum of 6 tokens)", sample=tokens(50, 6), kind="operator",
                   eager_stubs=True))
