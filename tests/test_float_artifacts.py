"""The per-process cache of float exports: the same weights reuse an export, other weights do not."""

from __future__ import annotations

import torch
from torch import nn

from matrix.formats.float_artifacts import FloatArtifacts


def test_an_export_is_made_once_per_model_weights_and_shapes():
    made = []
    cache = FloatArtifacts()
    example = (torch.randn(2, 4),)

    def make(tag: str):
        def run() -> bytes:
            made.append(tag)
            return tag.encode()

        return run

    torch.manual_seed(0)
    first = nn.Linear(4, 2)
    torch.manual_seed(0)
    same = nn.Linear(4, 2)
    assert cache.get("m", first, example, make("a")) == b"a"
    assert cache.get("m", same, example, make("b")) == b"a"  # same weights: the first export serves
    other = nn.Linear(4, 2)
    assert cache.get("m", other, example, make("c")) == b"c"  # other weights: exported again
    assert cache.get("m", first, (torch.randn(3, 4),), make("d")) == b"d"  # other shapes too
    assert made == ["a", "c", "d"]
