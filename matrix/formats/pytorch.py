"""A PyTorch module as an artifact: the bytes of what it deploys."""

from __future__ import annotations

import io
import operator
from collections.abc import Iterable

import torch
from torch import nn


def deployed_state(module: nn.Module) -> dict[str, object]:
    """The tensors (and packed parameters) ``module`` computes with. A graph module counts only
    what its graph reads: PT2E's convert folds int8 weights into new constants and leaves the
    float parameters registered, unused."""
    if not isinstance(module, torch.fx.GraphModule):
        return dict(module.state_dict())
    state: dict[str, object] = {}
    for node in module.graph.nodes:
        if node.op not in ("get_attr", "call_module"):
            continue
        if node.op == "call_module":
            found = module.get_submodule(node.target)
        else:
            found = operator.attrgetter(node.target)(module)
        if isinstance(found, nn.Module):
            state.update({f"{node.target}.{name}": value for name, value in deployed_state(found).items()})
        elif isinstance(found, (torch.Tensor, torch.ScriptObject)):
            state[node.target] = found
    return state


def serialized_bytes(module: nn.Module) -> int:
    """The size of ``module``'s deployed state as ``torch.save`` writes it."""
    buffer = io.BytesIO()
    torch.save(deployed_state(module), buffer)
    return buffer.getbuffer().nbytes


# How a profiled op's time is counted (:func:`time_split`): the int8 kernels of PyTorch's
# engines and of Inductor's oneDNN calls, the moves in and out of int8, the float kernels that
# carry a model's arithmetic, and everything else (elementwise ops, data movement, the fused
# C++ kernels Inductor generates).
QUANTIZED_PREFIXES = ("quantized::", "_quantized::", "onednn::q", "aten::_int_mm", "torchao::_linear_8bit_act")
QDQ_PREFIXES = ("aten::quantize_per_", "aten::dequantize", "quantized_decomposed::", "aten::_make_per_",
                "aten::int_repr", "aten::q_")
FLOAT_KERNELS = {"aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::convolution",
                 "aten::_convolution", "aten::mkldnn_convolution", "aten::conv1d", "aten::conv2d", "aten::conv3d",
                 "aten::conv_transpose1d", "aten::conv_transpose2d", "aten::lstm", "aten::gru", "aten::rnn_tanh",
                 "aten::embedding", "aten::_embedding_bag", "mkldnn::_linear_pointwise",
                 "mkldnn::_convolution_pointwise", "mkldnn::_convolution_transpose_pointwise", "aten::_mkldnn_linear"}
SPLIT = ("quantized", "qdq", "float", "other")
PROFILED_CALLS = 5


def op_class(name: str) -> str:
    """Which of :data:`SPLIT` a profiled op's time counts as."""
    if name.startswith(QUANTIZED_PREFIXES):
        return "quantized"
    if name.startswith(QDQ_PREFIXES):
        return "qdq"
    if name in FLOAT_KERNELS or name.startswith("mkl::"):
        return "float"
    return "other"


def shares(timed: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Profiled time, as (class, seconds) for each op, by class of :data:`SPLIT` as shares of the whole."""
    seconds = dict.fromkeys(SPLIT, 0.0)
    for kind, spent in timed:
        seconds[kind] += spent
    total = sum(seconds.values())
    return {name: round(spent / total, 4) if total else 0.0 for name, spent in seconds.items()}


def time_split(run, inputs: tuple[torch.Tensor, ...]) -> dict[str, float]:
    """The share of ``run``'s time on ``inputs`` in int8 kernels, quantize/dequantize, float
    kernels and the rest, from PyTorch's profiler (self CPU time of each op, over a few calls)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as found:
        for _ in range(PROFILED_CALLS):
            run(*inputs)
    return shares((op_class(event.key), event.self_cpu_time_total / 1e6) for event in found.key_averages())
