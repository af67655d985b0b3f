"""The FX BackendConfigs written after PT2E quantizers, and the FX -> PT2E transplant."""

from __future__ import annotations

import copy
import functools
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.ao.quantization import quantize_fx
from torch.ao.quantization.backend_config import BackendConfig

from matrix.modes import fx_targets, transplant
from matrix.modes.fx import BACKEND_CONFIGS, qconfig_mapping
from matrix.modes.fx_targets import FX_TARGETS

DTYPES = {torch.int8: torch.qint8, torch.uint8: torch.quint8}


def _litert_config(qat: bool):
    pytest.importorskip("litert_torch")
    from litert_torch.quantize.pt2e_quantizer import get_symmetric_quantization_config

    return get_symmetric_quantization_config(is_per_channel=True, is_qat=qat)


def _xnnpack_config(qat: bool):
    pytest.importorskip("executorch")
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config

    return get_symmetric_quantization_config(is_per_channel=True, is_qat=qat)


class Ops(nn.Module):
    """The ops NNCF's CPU setup quantizes the inputs of, and that the openvino target has patterns for."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(torch.relu(self.conv(x))).flatten(1)
        y = self.fc(torch.cat([y, y * 2.0], dim=1)[:, :16])
        return torch.matmul(y.unsqueeze(2), y.unsqueeze(1)) + y.unsqueeze(2)


@functools.cache
def _openvino_annotations() -> dict:
    """OpenVINOQuantizer's annotation of :class:`Ops`: op target -> the specs of its quantized inputs."""
    pytest.importorskip("executorch")
    pytest.importorskip("nncf")
    from executorch.backends.openvino.quantizer.quantizer import OpenVINOQuantizer

    graph_module = torch.export.export(Ops().eval(), (torch.randn(2, 3, 6, 6),)).module()
    OpenVINOQuantizer().annotate(graph_module)
    found: dict = {}
    for node in graph_module.graph.nodes:
        annotation = node.meta.get("quantization_annotation")
        if annotation is not None and annotation.input_qspec_map:
            found.setdefault(node.target, []).extend(annotation.input_qspec_map.values())
    return found


def _openvino_config(qat: bool) -> SimpleNamespace:
    """OpenVINOQuantizer's specs as a QuantizationConfig: its activation and weight specs from its
    annotation of a conv (it annotates the same specs for PTQ and QAT)."""
    specs = _openvino_annotations()[torch.ops.aten.conv2d.default]
    weight = next(s for s in specs if s.qscheme == torch.per_channel_symmetric)
    activation = next(s for s in specs if s is not weight)
    return SimpleNamespace(input_activation=activation, output_activation=activation, weight=weight, bias=None)


QUANTIZER_CONFIGS = {"ai_edge_torch": _litert_config, "xnnpack": _xnnpack_config, "openvino": _openvino_config}


def _spec_of(observer: torch.nn.Module) -> tuple:
    return observer.dtype, observer.quant_min, observer.quant_max, observer.qscheme


def _quantizer_spec(spec) -> tuple:
    return DTYPES[spec.dtype], spec.quant_min, spec.quant_max, spec.qscheme


@pytest.mark.parametrize("target", list(FX_TARGETS))
@pytest.mark.parametrize("qat", [False, True])
def test_qconfig_matches_the_quantizers_annotation(target: str, qat: bool) -> None:
    """The observers FX gets are the quantizer's specs: dtype, range and scheme, activations and weights."""
    quantizer = QUANTIZER_CONFIGS[target](qat)
    qconfig = FX_TARGETS[target].qconfig_mapping("qat" if qat else "ptq_static").global_qconfig
    assert _spec_of(qconfig.activation()) == _quantizer_spec(quantizer.input_activation)
    assert _spec_of(qconfig.activation()) == _quantizer_spec(quantizer.output_activation)
    assert _spec_of(qconfig.weight()) == _quantizer_spec(quantizer.weight)
    assert qconfig.weight().ch_axis == quantizer.weight.ch_axis
    assert quantizer.bias is None or quantizer.bias.dtype == torch.float


@pytest.mark.parametrize("target", list(FX_TARGETS))
@pytest.mark.parametrize("pattern", [nn.Conv2d, nn.Linear, torch.nn.functional.linear])
def test_weighted_patterns_take_the_quantizers_dtypes(target: str, pattern: object) -> None:
    quantizer = QUANTIZER_CONFIGS[target](False)
    configs = [c for c in FX_TARGETS[target].backend_config().configs if c.pattern == pattern]
    assert configs, f"{target} has no pattern for {pattern}"
    (dtype_config,) = configs[0].dtype_configs
    activation, weight = _quantizer_spec(quantizer.input_activation), _quantizer_spec(quantizer.weight)
    assert dtype_config.input_dtype == activation[0] and dtype_config.weight_dtype == weight[0]
    assert dtype_config.input_dtype_with_constraints.quant_min_lower_bound == activation[1]
    assert dtype_config.weight_dtype_with_constraints.quant_min_lower_bound == weight[1]
    assert dtype_config.bias_dtype == torch.float


# The quantizers' annotator names and a pattern of each in the BackendConfig.
ANNOTATORS = {
    "linear": nn.Linear, "conv": nn.Conv2d, "conv_relu": (nn.Conv2d, nn.ReLU), "addmm": torch.addmm,
    "conv_transpose": nn.ConvTranspose2d, "linear_relu": (nn.Linear, nn.ReLU),
    "conv_bn": (nn.Conv2d, nn.BatchNorm2d), "conv_bn_relu": (nn.Conv2d, nn.BatchNorm2d, nn.ReLU),
    "adaptive_avg_pool2d": nn.AdaptiveAvgPool2d, "max_pool2d": nn.MaxPool2d, "gru_io_only": nn.GRU,
    "add": torch.add, "add_relu": (torch.add, nn.ReLU), "mul": torch.mul, "mul_relu": (torch.mul, nn.ReLU),
    "cat": torch.cat, "fixed_qparams": nn.Sigmoid,
}


# OpenVINOQuantizer's annotated ops and a pattern of each in the BackendConfig.
OPENVINO_OPS = {
    torch.ops.aten.conv2d.default: nn.Conv2d, torch.ops.aten.linear.default: nn.Linear,
    torch.ops.aten.adaptive_avg_pool2d.default: nn.AdaptiveAvgPool2d, torch.ops.aten.cat.default: torch.cat,
    torch.ops.aten.mul.Tensor: torch.mul, torch.ops.aten.matmul.default: torch.matmul,
    torch.ops.aten.add.Tensor: torch.add,
}


def _quantizer_ops(target: str) -> set[str]:
    if target == "openvino":
        return {str(op) for op in _openvino_annotations()}
    if target == "ai_edge_torch":
        pytest.importorskip("litert_torch")
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer

        return set(PT2EQuantizer.STATIC_OPS) | set(PT2EQuantizer.STATIC_QAT_ONLY_OPS)
    pytest.importorskip("executorch")
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer

    return {p.name for p in XNNPACKQuantizer.SUPPORTED_PATTERNS if not p.is_dynamic or p.name in ("linear", "conv")}


@pytest.mark.parametrize("target", list(FX_TARGETS))
def test_every_static_op_of_the_quantizer_has_a_pattern(target: str) -> None:
    patterns = {c.pattern for c in FX_TARGETS[target].backend_config().configs}
    ops = {op for op in _quantizer_ops(target) if not op.startswith("conv_transpose_")}
    annotators = {str(op): pattern for op, pattern in OPENVINO_OPS.items()} if target == "openvino" else ANNOTATORS
    assert ops
    missing = {op for op in ops if op not in annotators or annotators[op] not in patterns}
    assert not missing


def test_fixed_qparams_are_litert_torchs() -> None:
    sigmoid = [c for c in FX_TARGETS["ai_edge_torch"].backend_config().configs if c.pattern is nn.Sigmoid]
    constraints = sigmoid[0].dtype_configs[0].output_dtype_with_constraints
    assert (constraints.scale_exact_match, constraints.zero_point_exact_match) == (1 / 256, -128)
    observer = FX_TARGETS["ai_edge_torch"].qconfig_mapping("ptq_static").object_type_qconfigs[nn.Sigmoid].activation()
    scale, zero_point = observer.calculate_qparams()
    assert (float(scale), int(zero_point), observer.dtype) == (1 / 256, -128, torch.qint8)


class ConvLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.relu(self.conv(x)), 1))


def _prepared(backend_config: BackendConfig, mapping, qat: bool) -> tuple[torch.fx.GraphModule, tuple]:
    torch.manual_seed(0)
    example = (torch.randn(4, 3, 8, 8),)
    model = ConvLinear().train(qat)
    prepare = quantize_fx.prepare_qat_fx if qat else quantize_fx.prepare_fx
    prepared = prepare(copy.deepcopy(model), mapping, example, backend_config=backend_config)
    for _ in range(3):
        prepared(torch.randn(4, 3, 8, 8))
    return prepared, example


def _qdq_dtypes(graph_module: torch.fx.GraphModule) -> list[tuple[str, torch.dtype]]:
    names = [(n, getattr(n.target, "__name__", "").split(".")[0]) for n in graph_module.graph.nodes
             if n.op == "call_function"]
    return [(name, n.args[-1]) for n, name in names if name.startswith("quantize_per")]


@pytest.mark.parametrize("qat", [False, True])
def test_transplant_puts_fxs_own_qparams_into_pt2e(qat: bool) -> None:
    """Each FX observer (and, for PTQ, each weight observer convert_fx would make) is in the captured
    graph, and convert_pt2e quantizes with its qparams: int8 with the qint8 target, uint8 with x86."""
    from matrix.modes import pt2e

    target = FX_TARGETS["ai_edge_torch"]
    scheme = "qat" if qat else "ptq_static"
    prepared, example = _prepared(target.backend_config(), target.qconfig_mapping(scheme), qat)
    input_observer = prepared.activation_post_process_0
    graph_module, placed = transplant.transplant(prepared, example, training=qat)
    # Four activations (the input, the conv-relu output, flatten's, the linear's; flatten's observer
    # is the conv-relu one, shared) and two weights.
    assert placed == 6
    converted = pt2e.api().convert_pt2e(graph_module, fold_quantize=False)
    dtypes = _qdq_dtypes(converted)
    assert ("quantize_per_channel", torch.int8) in dtypes and sum(n == "quantize_per_channel" for n, _ in dtypes) == 2
    assert {d for n, d in dtypes if n == "quantize_per_tensor"} == {torch.int8}
    first = next(n for n in converted.graph.nodes if getattr(n.target, "__name__", "") == "quantize_per_tensor.default")
    scale, zero_point = input_observer.calculate_qparams()
    assert (first.args[1], first.args[2]) == (pytest.approx(float(scale)), int(zero_point))
    torch.testing.assert_close(converted(*example), prepared.eval()(*example), atol=0.05, rtol=0.05)

    x86, _ = _prepared(BACKEND_CONFIGS["x86"](), qconfig_mapping(scheme, "x86"), qat)
    x86_module, _ = transplant.transplant(x86, example, training=qat)
    uint8 = _qdq_dtypes(pt2e.api().convert_pt2e(x86_module, fold_quantize=False))
    assert {d for n, d in uint8 if n == "quantize_per_tensor"} == {torch.uint8}


def test_transplant_leaves_no_marker() -> None:
    target = FX_TARGETS["xnnpack"]
    prepared, example = _prepared(target.backend_config(), target.qconfig_mapping("ptq_static"), False)
    graph_module, _ = transplant.transplant(prepared, example, training=False)
    targets = {n.target for n in graph_module.graph.nodes if n.op == "call_function"}
    assert transplant._marker_op() not in targets
    modules = [graph_module.get_submodule(n.target) for n in graph_module.graph.nodes
               if n.op == "call_module" and n.target.startswith("fx_quantization_")]
    # torchao's convert_pt2e gets each module inside an adapter; torch.ao's (older torch) the module itself
    observers = [getattr(m, "module", m) for m in modules]
    assert len(modules) == 6 and all(isinstance(o, torch.ao.quantization.ObserverBase) for o in observers)
    # FX's record of what it prepared goes with the graph (the guide's last step): convert_pt2e asserts it
    carried, fx = graph_module.meta["_observed_graph_module_attrs"], prepared.meta["_observed_graph_module_attrs"]
    assert carried.node_name_to_qconfig.keys() == fx.node_name_to_qconfig.keys() and carried.is_qat == fx.is_qat


def test_shared_qparams_ops_follow_the_guide() -> None:
    assert "view" in fx_targets.SHARED_QPARAMS_OPS and torch.flatten in fx_targets.SHARED_QPARAMS_OPS
    assert set(fx_targets.ADAPTIVE_POOL_OPS) == {nn.AdaptiveAvgPool2d, torch.nn.functional.adaptive_avg_pool2d}


def test_fx_reaches_pt2e_backends_through_the_transplant_only_where_it_carries() -> None:
    """fx on litert, XNNPACK and OpenVINO: static and QAT, reference and zoo models; no operator, no dynamic cell."""
    from matrix.backends import BACKENDS
    from matrix.cases import expand
    from matrix.modes import MODES
    from matrix.schemes import SCHEMES
    from models import MODELS

    reached = [c for c in expand(MODELS, {"fx": MODES["fx"]}, SCHEMES, BACKENDS)
               if c.backend in ("litert", "executorch_xnnpack", "openvino")]
    cells = [c for c in reached if c.qspec != "torchscript"]
    assert {c.scheme for c in cells} == {"ptq_static", "qat"}
    assert {c.kind for c in cells} == {"model", "zoo"}
    assert {c.backend for c in cells} == {"litert", "executorch_xnnpack", "openvino"}
    assert not [c for c in expand(MODELS, {"fx": MODES["fx"]}, SCHEMES, BACKENDS) if c.backend == "inductor"]
    # OpenVINO also reads the ONNX the TorchScript exporter writes of convert_fx's model.
    onnx_route = [c for c in reached if c.qspec == "torchscript"]
    assert {(c.backend, c.kind) for c in onnx_route} == {("openvino", "model")}
    assert {c.scheme for c in onnx_route} == {"ptq_static", "ptq_dynamic", "qat"}


def test_eager_reaches_openvino_by_the_torchscript_route_alone() -> None:
    """OpenVINO has no quantized engine: eager models reach it as the ONNX the TorchScript
    exporter writes, converted under the x86 engine as for ONNX Runtime."""
    from matrix.backends import BACKENDS
    from matrix.cases import expand
    from matrix.modes import MODES
    from matrix.schemes import SCHEMES
    from models import MODELS

    cells = [c for c in expand(MODELS, {"eager": MODES["eager"]}, SCHEMES, BACKENDS) if c.backend == "openvino"]
    assert cells and {c.qspec for c in cells} == {"torchscript"}
    assert {c.kind for c in cells} == {"model"}
    assert BACKENDS["openvino"].qconfig_engine == BACKENDS["onnxruntime"].engine == "x86"


def test_eager_statistics_carry_into_fx_observers() -> None:
    """Each FX observer is loaded from the eager observer after the same module (or the input's
    QuantStub), so convert_fx gives what eager convert gives, without calibrating FX."""
    import torch.ao.quantization as tq

    from matrix.modes.conversion import _carry_statistics
    from matrix.modes.eager import FloatInputsWrapper

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    batches = [torch.randn(4, 8) for _ in range(3)]
    with _engine("x86"):
        eager = FloatInputsWrapper(copy.deepcopy(model))
        eager.qconfig = tq.get_default_qconfig("x86")
        tq.prepare(eager, inplace=True)
        for batch in batches:
            eager(batch)
        prepared = quantize_fx.prepare_fx(copy.deepcopy(model), tq.QConfigMapping().set_global(eager.qconfig),
                                          (batches[0],), backend_config=BACKEND_CONFIGS["x86"]())
        carried, empty = _carry_statistics(eager, prepared)
        assert (carried, empty) == (3, [])  # the input, the fused linear-relu's output, the last linear's
        fx_quantized = quantize_fx.convert_fx(prepared, backend_config=BACKEND_CONFIGS["x86"]())
        eager_quantized = tq.convert(eager)
        torch.testing.assert_close(fx_quantized(batches[0]), eager_quantized(batches[0]))


class _engine:
    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        self.saved, torch.backends.quantized.engine = torch.backends.quantized.engine, self.name

    def __exit__(self, *exc: object) -> None:
        torch.backends.quantized.engine = self.saved


def test_xnnpack_target_shares_qparams_across_data_movement_as_its_quantizer_does() -> None:
    """ExecuTorch's XNNPACKQuantizer gives a flatten its input's qparams (propagate_annotation), and
    XNNPACK builds a reshape only when they match: the FX target must not give it its own observer."""
    class PoolLinear(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.pool, self.fc = nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.flatten(self.pool(self.conv(x)), 1))

    target = FX_TARGETS["xnnpack"]
    example = (torch.randn(4, 3, 8, 8),)
    prepared = quantize_fx.prepare_fx(PoolLinear().eval(), target.qconfig_mapping("ptq_static"), example,
                                      backend_config=target.backend_config())
    prepared(*example)
    flatten = next(n for n in prepared.graph.nodes if n.target is torch.flatten)
    before, after = flatten.args[0], next(iter(flatten.users))
    assert before.op == after.op == "call_module"
    assert prepared.get_submodule(before.target) is prepared.get_submodule(after.target)
