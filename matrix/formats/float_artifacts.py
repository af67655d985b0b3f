"""What a mode makes of a float model once per process (its ONNX export, its .tflite): the
artifact a quantized one is compared with, layer by layer."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class FloatArtifacts:
    """A per-process cache of what a mode makes of a float model (its ONNX export, its .tflite),
    keyed by the model's name, its parameters and buffers, and the example's shapes: a model
    that is instantiated again with the same weights is not exported again."""

    def __init__(self) -> None:
        self._made: dict[tuple, Any] = {}

    @staticmethod
    def key(name: str, model: nn.Module, example: tuple[torch.Tensor, ...]) -> tuple:
        digest = hashlib.sha256()
        for tensor_name, tensor in sorted(model.state_dict().items()):
            digest.update(tensor_name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return name, digest.hexdigest(), tuple((tuple(t.shape), str(t.dtype)) for t in example)

    def get(self, name: str, model: nn.Module, example: tuple[torch.Tensor, ...], make: Callable[[], Any]) -> Any:
        found = self.key(name, model, example)
        if found not in self._made:
            self._made[found] = make()
        return self._made[found]
