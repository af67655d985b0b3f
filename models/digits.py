"""A classifier trained at run time on scikit-learn's digits (shipped with the package),
so its accuracy is real top-1 accuracy on held-out images."""

from __future__ import annotations

import functools

import torch
from torch import nn

from matrix.cell import stable_seed
from models import BATCH, CALIBRATION_BATCHES, ModelData, ModelSpec, register
from models.reference import Mlp

NAME = "digits_mlp"
TRAIN_STEPS = 300
WIDTHS = (64, 64, 32, 10)


@functools.lru_cache(maxsize=1)
def _split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(stable_seed(NAME)))
    x, y = x[order], y[order]
    test = len(x) // 5
    return x[test:], y[test:], x[:test], y[:test]


@functools.lru_cache(maxsize=1)
def _trained_state() -> dict[str, torch.Tensor]:
    x_train, y_train, _, _ = _split()
    with torch.random.fork_rng(), torch.enable_grad():
        torch.manual_seed(stable_seed(NAME))
        model = Mlp(WIDTHS)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(TRAIN_STEPS):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x_train), y_train).backward()
            optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def build() -> nn.Module:
    model = Mlp(WIDTHS)
    model.load_state_dict(_trained_state())
    return model


def data() -> ModelData:
    x_train, _, x_test, y_test = _split()
    calibration = [(x_train[i : i + BATCH],) for i in range(0, CALIBRATION_BATCHES * BATCH, BATCH)]
    usable = len(x_test) - len(x_test) % BATCH
    return ModelData(calibration=calibration, evaluation=(x_test[:usable],), labels=y_test[:usable])


register(ModelSpec(
    NAME, build, "MLP 64 -> 64 -> 32 -> 10 trained on scikit-learn's digits; accuracy is real",
    data=data, classifier=True, eager_fuse=(("fc1", "relu1"), ("fc2", "relu2")),
    structure=lambda: Mlp(WIDTHS),
))
