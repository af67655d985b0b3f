"""What an artifact reports of its layers: outputs by ``layer (OP)``, and reading them from a
copy instrumented to output them (which a backend may compile differently, so such a copy
counts only if its own output is unchanged)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

# The layer of an artifact's op that writes a model output under the output's own name
# (a .tflite's ``serving_default_output_0``): not a layer of the model, compared whole.
MODEL_OUTPUT = "<output>"
# Why a layer exposed as an extra output is not read (``LayerOutputs.unread``).
CHANGES_OUTPUT = "exposing it changes the model's output"
# How many layers a model may be compiled again for, one layer at a time, when exposing them
# all at once is not trusted: thresholds.toml's max_recompiled_layers, set around first divergence.
_RECOMPILE_LIMIT: ContextVar[float] = ContextVar("recompile_limit", default=math.inf)


@contextmanager
def recompile_limit(limit: float) -> Iterator[None]:
    token = _RECOMPILE_LIMIT.set(limit)
    try:
        yield
    finally:
        _RECOMPILE_LIMIT.reset(token)


def as_tensor(value: object) -> torch.Tensor | None:
    """The first tensor of a layer's output (an LSTM returns a tuple), dequantized, as float."""
    if isinstance(value, (tuple, list)):
        value = next((v for v in value if isinstance(v, torch.Tensor)), None)
    if not isinstance(value, torch.Tensor):
        return None
    if value.is_quantized:
        value = value.dequantize()
    return value.detach().float() if value.is_floating_point() else None


class LayerOutputs(dict):
    """An artifact's outputs by ``layer (OP)``, with the names of ops whose output only the
    same layer's ops read (a partial sum inside a decomposed pooling, say): those are not the
    layer's output; and the layers that could not be read, with the reason (``unread``)."""

    def __init__(self) -> None:
        super().__init__()
        self.internal: set[str] = set()
        self.unread: dict[str, str] = {}

    def put(self, layer: str, op: str, value: torch.Tensor, read_by: set[str]) -> None:
        """The output of an ``op`` of ``layer``, read by ops of the layers ``read_by`` (none for
        a model output). A later op of the same layer and kind replaces it, value and all."""
        name = f"{layer} ({op})"
        self.pop(name, None)
        self[name] = value
        if read_by == {layer}:
            self.internal.add(name)
        else:
            self.internal.discard(name)


def read_exposed(keys: list, expose: Callable[[list], dict | str]) -> tuple[dict, dict[object, str]]:
    """(values, the keys left unread and why) of ``keys`` read from a model instrumented to
    output them: all at once, or, when ``expose`` says why that copy is not trusted, each key
    alone (unless there are more keys than :func:`recompile_limit` allows), leaving out a key
    whose copy is not trusted either."""
    values = expose(keys)
    if not isinstance(values, str):
        return values, {}
    limit = _RECOMPILE_LIMIT.get()
    if len(keys) > limit:
        why = (f"exposed all at once, {values}; its {len(keys)} layers one at a time are more than "
               f"max_recompiled_layers ({limit:g})")
        return {}, dict.fromkeys(keys, why)
    values, unread = {}, {}
    for key in keys:
        alone = expose([key])
        if isinstance(alone, str):
            unread[key] = alone
        else:
            values.update(alone)
    return values, unread


def output_unchanged(own: torch.Tensor, expected: torch.Tensor) -> bool:
    """Whether an instrumented copy's own output is still the deployed model's."""
    return own.shape == expected.shape and torch.allclose(own.float(), expected.float(), rtol=1e-4, atol=1e-5)
