"""First divergence: a model with one deliberately badly quantized layer is localized to it."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.ao.quantization as tq
from torch import nn

from matrix.localize import localize

LIMIT_DB = 15.0


class Stack(nn.Module):
    def __init__(self, stubs: bool = False) -> None:
        super().__init__()
        self.quant, self.dequant = (tq.QuantStub(), tq.DeQuantStub()) if stubs else (nn.Identity(), nn.Identity())
        self.fc1, self.fc2, self.fc3, self.fc4 = (nn.Linear(16, 16) for _ in range(4))
        self.relu1, self.relu2, self.relu3 = nn.ReLU(), nn.ReLU(), nn.ReLU()

    def forward(self, x):
        x = self.quant(x)
        x = self.relu1(self.fc1(x))
        x = self.relu2(self.fc2(x))
        x = self.relu3(self.fc3(x))
        return self.dequant(self.fc4(x))


def inputs() -> tuple[torch.Tensor]:
    return (torch.randn(64, 16, generator=torch.Generator().manual_seed(0)),)


def eager_quantized(bad_layer: str) -> tuple[nn.Module, nn.Module]:
    """The float stack and its eager static quantization, fused, where ``bad_layer`` alone
    gets an output observer with fixed, far too coarse parameters (a scale of 5)."""
    torch.manual_seed(0)
    float_model = Stack(stubs=True).eval()
    model = tq.fuse_modules(copy.deepcopy(float_model), [["fc1", "relu1"], ["fc2", "relu2"], ["fc3", "relu3"]])
    engine = "fbgemm" if "fbgemm" in torch.backends.quantized.supported_engines else "qnnpack"
    torch.backends.quantized.engine = engine
    model.qconfig = tq.get_default_qconfig(engine)
    coarse = tq.FixedQParamsObserver.with_args(scale=5.0, zero_point=0, dtype=torch.quint8, quant_min=0, quant_max=255)
    model.get_submodule(bad_layer).qconfig = tq.QConfig(activation=coarse, weight=tq.default_weight_observer)
    tq.prepare(model, inplace=True)
    with torch.no_grad():
        model(*inputs())
    return float_model, tq.convert(model)


@pytest.mark.parametrize("bad_layer", ["fc2", "fc3"])
def test_the_badly_quantized_layer_is_named(bad_layer):
    float_model, quantized = eager_quantized(bad_layer)
    found = localize(float_model, quantized, inputs(), LIMIT_DB)
    names = [name for name, _ in found.layers]
    assert found.first == bad_layer, found.layers
    assert names.index(bad_layer) > 0  # layers before it were compared and stayed above the limit
    assert all(value >= LIMIT_DB for name, value in found.layers[: names.index(bad_layer)])
    assert f"first diverges at {bad_layer}" in found.summary()


def test_a_graph_from_torch_export_is_localized_by_module_path():
    torch.manual_seed(0)
    float_model = Stack().eval()
    broken = copy.deepcopy(float_model)
    with torch.no_grad():
        broken.fc3.weight.mul_(-1.0)
    graph = torch.export.export(broken, inputs()).module()
    found = localize(float_model, graph, inputs(), LIMIT_DB)
    assert found.first == "fc3", found.layers
    assert [name for name, _ in found.layers][:2] == ["fc1", "relu1"]


def test_a_faithful_model_has_no_first_divergence_but_names_its_lowest_layer():
    torch.manual_seed(0)
    float_model = Stack().eval()
    found = localize(float_model, copy.deepcopy(float_model), inputs(), LIMIT_DB)
    assert found.first is None
    assert found.lowest is not None
    assert "no layer below 15 dB" in found.summary()


def test_a_model_of_one_functional_op_is_its_own_layer():
    class Transpose(nn.Module):
        def forward(self, x):
            return x.transpose(0, 1)

    class Broken(nn.Module):
        def forward(self, x):
            return x.transpose(0, 1).round()

    found = localize(Transpose(), Broken(), (torch.rand(4, 4) / 4,), LIMIT_DB)
    assert found.first == "Transpose (the whole model)"
