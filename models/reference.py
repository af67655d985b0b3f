"""Reference models: small, deterministic, and written the way the PyTorch
quantization guide asks for eager mode (functional add/cat/mul through
FloatFunctional, fusable module names)."""

from __future__ import annotations

import torch
from torch import nn
from torch.ao.nn.quantized import FloatFunctional
from torch.ao.quantization import DeQuantStub, QuantStub

from models import ModelSpec, images, register, sequences, tokens, vectors


class ConvAdaptiveMaxPool(nn.Module):
    """The guide's example: a conv followed by an adaptive max pool."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.pool = nn.AdaptiveMaxPool2d((2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.conv(x)), 1)


class ConvBnRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()
        self.conv2, self.bn2, self.relu2 = nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        return torch.flatten(self.pool(x), 1)


class Mlp(nn.Module):
    def __init__(self, sizes: tuple[int, ...] = (32, 64, 64, 10)) -> None:
        super().__init__()
        self.fc1, self.relu1 = nn.Linear(sizes[0], sizes[1]), nn.ReLU()
        self.fc2, self.relu2 = nn.Linear(sizes[1], sizes[2]), nn.ReLU()
        self.fc3 = nn.Linear(sizes[2], sizes[3])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.relu2(self.fc2(self.relu1(self.fc1(x)))))


class ResidualAdd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.skip = FloatFunctional()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu(self.skip.add(out, x))


class DepthwiseSeparable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dw, self.bn1, self.act1 = nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU6()
        self.pw, self.bn2 = nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16)
        self.act2 = nn.Hardswish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act2(self.bn2(self.pw(self.act1(self.bn1(self.dw(x))))))


class SplitConvCat(nn.Module):
    """The guide's ONNX Runtime example: split, a conv on each half, concatenate."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(4, 4, 3, padding=1)
        self.conv_b = nn.Conv2d(4, 4, 3, padding=1)
        self.cat = FloatFunctional()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(x, 4, dim=1)
        return self.cat.cat([self.conv_a(a), self.conv_b(b)], dim=1)


class SigmoidSoftmaxHead(nn.Module):
    """Sigmoid and softmax outputs: the ops with fixed quantization parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.sigmoid = nn.Linear(16, 32), nn.Sigmoid()
        self.fc2, self.softmax = nn.Linear(32, 10), nn.Softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.softmax(self.fc2(self.sigmoid(self.fc1(x))))


class EmbeddingLinear(nn.Module):
    """Token ids in, so the model quantizes its float activations itself."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(100, 16)
        self.quant = QuantStub()
        self.fc = nn.Linear(16, 10)
        self.dequant = DeQuantStub()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pooled = self.embedding(ids).mean(dim=1)
        return self.dequant(self.fc(self.quant(pooled)))


class RecurrentClassifier(nn.Module):
    def __init__(self, cell: type[nn.LSTM] | type[nn.GRU]) -> None:
        super().__init__()
        self.rnn = cell(8, 16, batch_first=True)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


class TinyEncoder(nn.Module):
    """One transformer encoder layer: MultiheadAttention, LayerNorm, GELU feed-forward."""

    def __init__(self, width: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.fc1, self.gelu, self.fc2 = nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width)
        self.residual1, self.residual2 = FloatFunctional(), FloatFunctional()
        self.head = nn.Linear(width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attention(x, x, x, need_weights=False)
        x = self.norm1(self.residual1.add(x, attended))
        x = self.norm2(self.residual2.add(x, self.fc2(self.gelu(self.fc1(x)))))
        return self.head(x[:, 0])


register(ModelSpec(
    "conv_adaptive_max_pool", ConvAdaptiveMaxPool, "conv -> adaptive max pool (the guide's example)",
    sample=images(3, 12, 12),
))
register(ModelSpec(
    "conv_bn_relu", ConvBnRelu, "two conv-bn-relu blocks, global average pool",
    sample=images(3, 16, 16), eager_fuse=(("conv1", "bn1", "relu1"), ("conv2", "bn2", "relu2")),
))
register(ModelSpec(
    "mlp", Mlp, "linear-relu MLP, 32 -> 64 -> 64 -> 10",
    sample=vectors(32), classifier=True, eager_fuse=(("fc1", "relu1"), ("fc2", "relu2")),
))
register(ModelSpec(
    "residual_add", ResidualAdd, "conv-bn-relu, conv-bn, residual add, relu",
    sample=images(8, 10, 10), eager_fuse=(("conv1", "bn1", "relu1"), ("conv2", "bn2")),
))
register(ModelSpec(
    "depthwise_separable", DepthwiseSeparable, "depthwise conv-bn-relu6, pointwise conv-bn, hardswish",
    # Eager mode fuses conv-bn but has no conv-bn-relu6 fuser; the relu6 stays a module of its own.
    sample=images(8, 10, 10), eager_fuse=(("dw", "bn1"), ("pw", "bn2")),
))
register(ModelSpec(
    "split_conv_cat", SplitConvCat, "split -> two convs -> cat (the guide's ONNX Runtime example)",
    sample=images(8, 10, 10),
))
register(ModelSpec(
    "sigmoid_softmax_head", SigmoidSoftmaxHead, "linear-sigmoid, linear-softmax (fixed-qparams ops)",
    sample=vectors(16), classifier=True,
))
register(ModelSpec(
    "embedding_linear", EmbeddingLinear, "embedding, mean over tokens, linear",
    sample=tokens(100, 12), classifier=True, eager_stubs=True,
))
register(ModelSpec(
    "lstm_classifier", lambda: RecurrentClassifier(nn.LSTM), "LSTM over 10 steps, linear on the last",
    sample=sequences(10, 8), classifier=True,
))
register(ModelSpec(
    "gru_classifier", lambda: RecurrentClassifier(nn.GRU), "GRU over 10 steps, linear on the last",
    sample=sequences(10, 8), classifier=True,
))
register(ModelSpec(
    "transformer_encoder", TinyEncoder, "one encoder layer: MultiheadAttention, LayerNorm, GELU",
    sample=sequences(6, 16), classifier=True,
))
