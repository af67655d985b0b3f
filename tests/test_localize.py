"""First divergence: a model with one deliberately badly quantized layer is localized to it."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.ao.quantization as tq
from torch import nn

from matrix.formats.layers import CHANGES_OUTPUT, recompile_limit
from matrix.localize import STEPS, layer_outputs, localize

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


class Artifact(nn.Module):
    """A model standing in for a converted artifact: it runs ``model`` and reports its layers
    as ``rename`` turns them (names, layouts, which ones), given the layers and the input."""

    def __init__(self, model: nn.Module, rename) -> None:
        super().__init__()
        self.model, self.rename = model, rename

    def forward(self, x):
        return self.model(x)

    def layer_outputs(self, x):
        return self.rename(layer_outputs(self.model, (x,)), x)


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
    assert found.worst is not None
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


def broken_at_fc3(model: nn.Module) -> nn.Module:
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.fc3.weight.mul_(-1.0)
    return broken


def test_a_model_off_its_simulation_is_localized_in_output_steps():
    """The simulation's outputs are on a grid; the model departs from it from fc2 on, by 10 steps."""

    class Grid(nn.Module):
        def forward(self, x):
            return torch.fake_quantize_per_tensor_affine(x, 0.05, 0, -128, 127)

    torch.manual_seed(0)
    simulation = Stack().eval()
    for name in ("relu1", "relu2", "relu3"):
        setattr(simulation, name, nn.Sequential(nn.ReLU(), Grid()))
    deployed = copy.deepcopy(simulation)
    with torch.no_grad():
        deployed.fc2.bias.add_(0.5)
    found = localize(simulation, deployed, inputs(), 8.0, STEPS)
    series = dict(found.layers)
    assert series["fc1"] == 0.0 and series["relu1"] == 0.0
    assert found.first == "fc2", found.layers
    assert "first leaves its simulation at fc2" in found.summary()
    assert found.as_record()["against"] == "simulation"


def test_layers_without_a_common_name_are_paired_in_order():
    def numbered(offset: int):
        return lambda found, x: {f"op_{index + offset}": value for index, value in enumerate(found.values())}

    torch.manual_seed(0)
    float_model = Stack().eval()
    found = localize(Artifact(float_model, numbered(0)), Artifact(broken_at_fc3(float_model), numbered(100)),
                     inputs(), LIMIT_DB)
    names = [name for name, _ in found.layers]
    assert names[:2] == ["op_0", "op_1"] and len(names) == len(layer_outputs(float_model, inputs()))
    assert found.first == "op_4"  # fc1, relu1, fc2, relu2, then fc3


def test_tflite_artifacts_are_localized_by_the_module_path_in_their_tensor_names():
    pytest.importorskip("litert_torch")
    pytest.importorskip("ai_edge_litert")
    from matrix.formats.tflite import TFLiteModel, convert

    torch.manual_seed(0)
    float_model = Stack().eval()
    example = inputs()
    expected, broken = (TFLiteModel(convert(copy.deepcopy(model), example))
                        for model in (float_model, broken_at_fc3(float_model)))
    found = localize(expected, broken, example, LIMIT_DB)
    assert found.first == "fc3 (FULLY_CONNECTED)", found.layers
    assert [name for name, _ in found.layers][:2] == ["fc1 (FULLY_CONNECTED)", "fc2 (FULLY_CONNECTED)"]


def test_openvino_models_are_localized_and_an_exposure_that_changes_the_output_is_not_trusted(monkeypatch):
    pytest.importorskip("openvino")
    from matrix.formats.openvino import OpenVinoModel, openvino

    torch.manual_seed(0)
    float_model = Stack().eval()
    example = inputs()
    with torch.no_grad():
        expected, broken = (OpenVinoModel(openvino().convert_model(m, example_input=example))
                            for m in (float_model, broken_at_fc3(float_model)))
    found = localize(expected, broken, example, LIMIT_DB)
    assert found.first == "fc3 (MatMul)", found.layers
    assert [name for name, _ in found.layers][:2] == ["fc1 (MatMul)", "fc1 (Add)"]

    # A runtime whose output changes when several layers are exposed at once: each layer
    # is then read alone, and one whose exposure changes the output is left out.
    exposed = OpenVinoModel._exposed

    def fussy(self, ops, arrays, output):  # ops by their OpenVINO names: "__module.relu2/aten::relu/Relu"
        if len(ops) > 1 or ops[0].startswith("__module.relu2/"):
            return CHANGES_OUTPUT
        return exposed(self, ops, arrays, output)

    monkeypatch.setattr(OpenVinoModel, "_exposed", fussy)
    alone = localize(expected, broken, example, LIMIT_DB)
    names = [name for name, _ in alone.layers]
    assert alone.unread == {"relu2 (Relu)": "exposing it changes the model's output"}
    assert alone.summary().endswith("; not read: relu2 (Relu)")
    assert "relu2 (Relu)" not in names and names == [n for n, _ in found.layers if n != "relu2 (Relu)"]
    assert alone.first == "fc3 (MatMul)"

    # Past max_recompiled_layers, the layers are not compiled again one at a time: each is
    # unread, and the reason says why.
    with recompile_limit(2):
        capped = localize(expected, broken, example, LIMIT_DB)
    assert all("whole model" in name for name, _ in capped.layers) and len(capped.unread) > 2
    assert all("more than max_recompiled_layers (2)" in why for why in capped.unread.values())


def test_an_artifacts_channels_last_ops_are_compared_with_a_pytorch_models_layers():
    """A .tflite names each op ``layer (OP)`` and holds NHWC activations: with no name in common,
    its ops are taken by layer (the last op's output) and permuted to NCHW."""

    class Conv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 5, 3, padding=1)

        def forward(self, x):
            return self.conv2(self.conv1(x))

    def channels_last(found, x):
        return {"conv1 (TRANSPOSE)": x.permute(0, 2, 3, 1),
                **{f"{name} (CONV_2D)": value.permute(0, 2, 3, 1) for name, value in found.items()}}

    torch.manual_seed(0)
    reference = Conv().eval()
    broken = copy.deepcopy(reference)
    with torch.no_grad():
        broken.conv2.weight.mul_(-1.0)
    example = (torch.randn(2, 3, 5, 6),)
    found = localize(reference, Artifact(broken, channels_last), example, LIMIT_DB)
    assert [name for name, _ in found.layers] == ["conv1", "conv2"]
    assert found.layers[0][1] > 100 and found.first == "conv2"


class QuantizedFc(nn.Module):
    """A linear layer whose output is quantized to int8 and dequantized, as in a PT2E graph."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 16)

    def forward(self, x):
        q = torch.ops.quantized_decomposed.quantize_per_tensor.default(self.fc(x), 0.05, 0, -128, 127, torch.int8)
        return torch.ops.quantized_decomposed.dequantize_per_tensor.default(q, 0.05, 0, -128, 127, torch.int8)


class QuantizedPair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = QuantizedFc(), QuantizedFc()

    def forward(self, x):
        return self.second(self.first(x))


def test_a_compiled_graph_is_read_from_copies_compiled_with_its_layers_as_outputs():
    """A backend that compiles a graph whole (Inductor, ONNX Runtime) keeps no layer: a copy
    outputs each layer's last value; a dequantized int8 value is output as int8 and
    dequantized after, and a copy whose own output changed is not trusted."""
    import torch.ao.quantization.fx._decomposed

    from matrix.formats.compiled import CompiledGraph

    torch.manual_seed(0)
    model = QuantizedPair().eval()
    graph = torch.export.export(model, inputs()).module()
    built: list[list[torch.dtype]] = []

    def build(copy: torch.fx.GraphModule):
        def run(*args):
            own, *values = copy(*args)
            built.append([value.dtype for value in values])
            return (own, *values)
        return run

    compiled = CompiledGraph(graph, graph, build)
    found = compiled.layer_outputs(*inputs())
    assert list(found) == ["first.fc", "second.fc"]
    assert built == [[torch.int8, torch.int8]]  # the int8 tensors, not their dequantization
    with torch.no_grad():
        expected = model.first(inputs()[0])
    assert torch.equal(found["first.fc"], expected)

    # A backend whose output changes when both layers are exposed at once, or the second alone.
    def fussy(copy: torch.fx.GraphModule):
        exposed = len(list(copy.graph.find_nodes(op="output"))[0].args[0]) - 1
        quantizes = [n for n in copy.graph.nodes if "quantize_per_tensor" in str(n.target)
                     and "dequantize" not in str(n.target)]
        second = any(user.op == "output" for user in quantizes[-1].users)
        run = build(copy)
        return (lambda *args: (run(*args)[0] + 1.0, *run(*args)[1:])) if exposed > 1 or second else run

    alone = CompiledGraph(graph, graph, fussy).layer_outputs(*inputs())
    assert list(alone) == ["first.fc"]
    assert alone.unread == {"second.fc": "exposing it changes the model's output"}

    # A backend that returns an exposed value it never wrote (zeros) has that layer unread.
    def unwritten(copy: torch.fx.GraphModule):
        run = build(copy)
        return lambda *args: (lambda own, first, *rest: (own, torch.zeros_like(first), *rest))(*run(*args))

    blank = CompiledGraph(graph, graph, unwritten).layer_outputs(*inputs())
    assert list(blank) == ["second.fc"]
    assert blank.unread == {"first.fc": "the backend returned zeros where the graph run in PyTorch does not"}


def test_a_departure_after_the_last_layer_is_placed_at_the_output():
    """Every layer within the limit but not the output: the ops after the last layer (here a
    scaling in the model's own forward) are where the model first departs."""

    class Scaled(Stack):
        scale = 1.0

        def forward(self, x):
            return super().forward(x) * self.scale

    torch.manual_seed(0)
    reference = Scaled().eval()
    flipped = copy.deepcopy(reference)
    flipped.scale = -1.0
    found = localize(reference, flipped, inputs(), LIMIT_DB)
    assert [name for name, _ in found.layers][-1] == "the output, after fc4"
    assert found.first == "the output, after fc4"


def test_runs_of_one_shape_are_aligned_when_names_and_counts_differ():
    """An artifact that fused conv, bn and relu and named them anew is compared, run of one shape
    by run, with the reference's layers, under the reference's names."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.bn1, self.relu1 = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()
            self.conv2, self.relu2 = nn.Conv2d(4, 6, 3), nn.ReLU()

        def forward(self, x):
            return self.relu2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))

    def renamed(found, x):
        return {"block/re_lu (CONV_2D)": found["relu1"], "block/re_lu_1 (CONV_2D)": found["relu2"]}

    torch.manual_seed(0)
    reference = Block().eval()
    broken = copy.deepcopy(reference)
    with torch.no_grad():
        broken.conv2.weight.mul_(-1.0)
    found = localize(reference, Artifact(broken, renamed), (torch.randn(2, 3, 8, 8),), LIMIT_DB)
    assert [name for name, _ in found.layers] == ["relu1", "relu2"]
    assert found.layers[0][1] > 100 and found.first == "relu2"
