"""PyTorch's own quantized CPU kernels: fbgemm, x86, qnnpack, onednn.

The converted module is the artifact; it runs under its quantized engine.
Inspection walks its modules and, for FX graphs, its call_function nodes, then
runs it once on a calibration batch and records the ops that computed on
quantized tensors there (a quantized ReLU or max pool is the float module run on
a quantized tensor) and the scale and zero point of every quantized tensor an op
returned. Ops that only move int8 data (view, transpose, cat, pad, ...) and modules
that compute nothing (an eval-mode dropout, packed parameters) count as neither, as
LiteRT's and ONNX Runtime's data ops do.
"""

from __future__ import annotations

import functools
from collections import Counter

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from matrix.backends import NATIVE, Backend, quantized_engine, register
from matrix.contract import Deployed, Inspection
from matrix.formats.pytorch import serialized_bytes, time_split
from matrix.vocabulary import Stage

QUANTIZED_NAMESPACES = ("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")
# Modules of those namespaces that move data in or out of int8 but compute nothing.
NOT_COMPUTE = {"Quantize", "DeQuantize", "QuantStub", "DeQuantStub", "LinearPackedParams",
               "EmbeddingPackedParams", "PackedParameter", "FloatFunctional", "FXFloatFunctional", "Dropout",
               # Counted by the ops it runs: quantized::add computes, quantized::cat moves data.
               "QFunctional"}
FLOAT_COMPUTE = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.Linear, nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell, nn.GRUCell, nn.RNNCell,
    nn.MultiheadAttention, nn.Embedding, nn.EmbeddingBag,
)
# Ops that take a quantized tensor but compute nothing on it: they move data out of
# int8 or read its quantization parameters.
NOT_COMPUTE_OPS = {"dequantize", "quantize_per_tensor", "quantize_per_channel", "int_repr", "q_scale",
                   "q_zero_point", "q_per_channel_scales", "q_per_channel_zero_points", "q_per_channel_axis",
                   "qscheme", "detach", "alias", "_local_scalar_dense"}
# Ops that move, reshape, join or pad int8 data without computing on it.
DATA_OPS = {"view", "_unsafe_view", "reshape", "flatten", "unflatten", "transpose", "permute", "t", "cat", "stack",
            "split", "split_with_sizes", "chunk", "unbind", "slice", "select", "narrow", "squeeze", "unsqueeze",
            "expand", "contiguous", "clone", "as_strided", "constant_pad_nd", "index_select", "copy_", "dropout",
            "empty_like", "zeros_like"}
# quantized:: kernels that QFunctional (eager) calls and that compute; its cat only joins data.
QFUNCTIONAL_COMPUTE = {"add", "add_relu", "add_scalar", "add_scalar_relu", "mul", "mul_relu", "mul_scalar",
                       "mul_scalar_relu", "matmul"}
# What the names of compute modules and ops are made of (quantized and float alike).
COMPUTE_WORDS = ("conv", "linear", "lstm", "gru", "rnn", "embedding", "matmul", "mm", "attention")
PER_TENSOR = (torch.per_tensor_affine, torch.per_tensor_symmetric)
# Distinct (scale, zero point, dtype) kept per op in the record.
QPARAMS_PER_OP = 4
FLOAT_FUNCTIONS = {"linear", "conv1d", "conv2d", "conv3d", "matmul", "bmm", "mm", "addmm", "baddbmm",
                   "embedding", "lstm", "gru"}


def _function_name(target: object) -> str:
    return getattr(target, "__name__", None) or str(target)


def _is_quantized_compute(module: nn.Module) -> bool:
    kind = type(module)
    return kind.__module__.startswith(QUANTIZED_NAMESPACES) and kind.__name__ not in NOT_COMPUTE


def inspect_module(model: nn.Module) -> Inspection:
    """Count quantized kernels versus float compute in a converted torch module."""
    found = Inspection()
    for module in model.modules():
        if _is_quantized_compute(module):
            # A container of quantized kernels (a quantized LSTM) is counted through its parts.
            if not any(_is_quantized_compute(child) for child in module.children()):
                found.quantized[type(module).__name__] += 1
        elif isinstance(module, FLOAT_COMPUTE) and not type(module).__module__.startswith("torch.ao.nn.qat"):
            found.floating[type(module).__name__] += 1
    if isinstance(model, torch.fx.GraphModule):
        found.quantized += _graph_quantized_functions(model)
        found.floating += _graph_float_functions(model)
    return found


def _graph_quantized_functions(graph_module: torch.fx.GraphModule) -> Counter[str]:
    counts: Counter[str] = Counter()
    for node in graph_module.graph.nodes:
        target = str(node.target)
        moves_data = target.startswith(("quantized.quantize", "quantized.dequantize"))
        if node.op == "call_function" and target.startswith("quantized.") and not moves_data:
            counts[target] += 1
    return counts


def _graph_float_functions(graph_module: torch.fx.GraphModule) -> Counter[str]:
    counts: Counter[str] = Counter()
    for node in graph_module.graph.nodes:
        if node.op in ("call_function", "call_method"):
            name = _function_name(node.target).split(".")[-1]
            if name in FLOAT_FUNCTIONS and not str(node.target).startswith("quantized."):
                counts[name] += 1
    return counts


def _is_compute_name(name: str) -> bool:
    """A module or op counted by name (``ConvReLU2d``, ``quantized.linear``, ``aten.bmm``) that
    is a convolution, linear, matmul, RNN, embedding or attention, not a weightless op."""
    return any(word in name.lower() for word in COMPUTE_WORDS)


def _is_quantized(value: object) -> bool:
    return isinstance(value, torch.Tensor) and value.is_quantized


class QuantizedOpTrace(TorchDispatchMode):
    """While a model runs: the ops that compute on quantized tensors, and the qparams
    of the quantized tensors each op returns.

    ``aten`` ops are counted but data movement; of the ``quantized::`` kernels, which are
    counted through the modules and graph calls that hold them, only QFunctional's compute
    (add, mul, matmul, ...): the QFunctional module itself may hold a mere cat.
    """

    def __init__(self) -> None:
        super().__init__()
        self.computed: Counter[str] = Counter()
        self.output_qparams: dict[str, list[list]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        output = func(*args, **(kwargs or {}))
        name = func.name().split(".")[0].replace("::", ".")
        op = name.split(".")[-1]
        if op in NOT_COMPUTE_OPS:
            return output
        computes = op not in DATA_OPS if func.namespace == "aten" else (
            func.namespace == "quantized" and op in QFUNCTIONAL_COMPUTE)
        if computes and any(_is_quantized(a) for a in tree_leaves((args, kwargs))):
            self.computed[name] += 1
        for tensor in tree_leaves(output):
            if _is_quantized(tensor) and tensor.qscheme() in PER_TENSOR:
                self._keep(name, tensor)
        return output

    def _keep(self, name: str, tensor: torch.Tensor) -> None:
        qparams = [float(tensor.q_scale()), int(tensor.q_zero_point()), str(tensor.dtype).removeprefix("torch.")]
        kept = self.output_qparams.setdefault(name, [])
        if qparams not in kept and len(kept) < QPARAMS_PER_OP:
            kept.append(qparams)


def trace_run(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> QuantizedOpTrace:
    """Run ``model`` once on ``inputs`` under a :class:`QuantizedOpTrace`."""
    trace = QuantizedOpTrace()
    with torch.no_grad(), trace:
        model(*inputs)
    return trace


def deploy(ctx, model: nn.Module) -> Deployed:
    inspection = inspect_module(model)
    with ctx.clock.stage(Stage.EXPORT):  # the artifact a user saves: the module's state, as torch.save writes it
        size = serialized_bytes(model)
    with ctx.clock.stage(Stage.RUN):
        trace = trace_run(model, ctx.data.calibration[0])
    computed = trace.computed
    if isinstance(model, torch.fx.GraphModule):
        # FX calls quantized::add and the like from its graph, which counted them already.
        computed = Counter({op: n for op, n in computed.items() if not op.startswith("quantized.")})
    inspection.quantized += computed
    if trace.output_qparams:
        inspection.notes["output_qparams"] = trace.output_qparams
    inspection = inspection.beside_float_compute(_is_compute_name)

    def run(*inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(*inputs)

    return Deployed(run, inspection, model=model, size_bytes=size, profile=lambda inputs: time_split(run, inputs))


def _engine_reason(engine: str) -> str | None:
    if engine in torch.backends.quantized.supported_engines:
        return None
    return f"quantized engine {engine!r} not in this torch build {torch.backends.quantized.supported_engines}"


# The names of each engine's kernels, as a reason gives them.
TOOLS = {
    "fbgemm": ("fbgemm", "FBGEMM"), "x86": ("fbgemm", "FBGEMM", "oneDNN", "onednn", "ONEDNN"),
    "qnnpack": ("qnnpack", "QNNPACK"), "onednn": ("oneDNN", "onednn", "ONEDNN"),
}
DESCRIPTIONS = {
    "fbgemm": "FBGEMM int8 kernels (x86, AVX2+)",
    "x86": "x86 engine: FBGEMM and oneDNN kernels chosen per op (PyTorch's x86 default)",
    "qnnpack": "QNNPACK int8 kernels (the mobile/ARM engine, also built for x86)",
    "onednn": "oneDNN int8 kernels (VNNI/AMX CPUs)",
}

for _engine, _description in DESCRIPTIONS.items():
    register(Backend(
        _engine, NATIVE, _description, deploy=deploy, engine=_engine,
        unavailable_check=functools.partial(_engine_reason, _engine),
        activate=functools.partial(quantized_engine, _engine), tools=TOOLS[_engine],
    ))
