"""ExecuTorch with the XNNPACK delegate: PT2E quantized with ExecuTorch's XNNPACKQuantizer,
lowered by ``to_edge_transform_and_lower`` with the XnnpackPartitioner, serialized to a
.pte program and run by ExecuTorch's Python runtime.

Inspection reads the lowered program before serialization, every op each XNNPACK delegate
took, as ExecuTorch's own test suite lists its "delegated ops". XNNPACK folds the
quantize/dequantize nodes around an op into the quantization parameters of its tensors, so:
a convolution or linear whose activation comes through a dequantize runs an XNNPACK integer
kernel (dynamic quantization's output stays float); any other op runs on int8 when its
inputs come through dequantize nodes and its output goes to a quantize node; an op that only
moves data (a concatenation, a permute, a view) computes nothing, on int8 or not; everything
else is float compute, inside a delegate or outside it in ExecuTorch's portable kernels.
Quantize/dequantize ops left outside are listed in the notes.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import shutil
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from matrix.backends import Backend, register
from matrix.cell import Unavailable
from matrix.contract import Deployed, Inspection, by_base_name
from matrix.qconfigs import per_channel_only
from matrix.qspecs import QSpec
from matrix.vocabulary import Stage

# Ops with weights: they run integer kernels when their activation is quantized.
COMPUTE = {"aten::convolution", "aten::linear", "aten::addmm", "aten::mm", "aten::bmm", "aten::matmul",
           "aten::_convolution", "aten::conv2d", "aten::conv1d"}
# Ops of the edge dialect that only move, copy or reshape data: neither integer nor float compute.
DATA_OPS = {
    "aten::cat", "aten::view_copy", "aten::_unsafe_view", "aten::permute_copy", "aten::transpose_copy",
    "aten::t_copy", "aten::slice_copy", "aten::select_copy", "aten::squeeze_copy", "aten::unsqueeze_copy",
    "aten::expand_copy", "aten::clone", "aten::alias_copy", "aten::_to_copy", "aten::constant_pad_nd",
    "aten::split_copy", "aten::split_with_sizes_copy", "aten::unbind_copy", "aten::repeat",
    "aten::pixel_shuffle", "aten::pixel_unshuffle", "aten::dropout", "dim_order_ops::_to_dim_order_copy",
    "dim_order_ops::_clone_dim_order",
}
DEQUANTIZE = ("quantized_decomposed::dequantize", "torchao::dequantize")
QUANTIZE = ("quantized_decomposed::quantize", "torchao::quantize")
QDQ = ("quantized_decomposed::", "torchao::")
# Activations XNNPACK fuses into the output clamp of the quantized op before them.
FUSED_ACTIVATIONS = {"aten::relu", "aten::hardtanh", "aten::clamp"}
PORTABLE = "portable"


def _name(target: Any) -> str:
    if hasattr(target, "name") and callable(target.name):
        try:
            return target.name()
        except Exception:  # an op overload without a schema name
            pass
    return getattr(target, "__name__", str(target))


@functools.cache
def quantized_kernels() -> None:
    """Register ExecuTorch's quantized_decomposed out variants, which to_executorch needs for Q/DQ
    ops left outside a delegate. ExecuTorch 1.0's libquantized_ops_aot_lib links _portable_lib by
    name with a RUNPATH that misses it, so it loads only after portable_lib is loaded, and
    executorch.kernels.quantized swallows the failure (pytorch/executorch#22071)."""
    importlib.import_module("executorch.extension.pybindings.portable_lib")
    importlib.import_module("executorch.kernels.quantized")
    if not any(schema.name == "quantized_decomposed::quantize_per_tensor" and schema.overload_name == "out"
               for schema in torch._C._jit_get_all_schemas()):
        raise RuntimeError("ExecuTorch's quantized kernels (libquantized_ops_aot_lib) did not load")


@functools.cache
def lowering() -> Any:
    logging.getLogger("torchao").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*LeafSpec")
    # ExecuTorch 1.0 writes programs with the flatc its wheel installs beside the interpreter: found
    # there too when the environment is not activated (its bin not on PATH).
    here = Path(sys.executable).parent
    if shutil.which("flatc") is None and (here / "flatc").exists():
        os.environ["PATH"] = f"{here}{os.pathsep}{os.environ.get('PATH', '')}"
    from executorch import exir
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    return exir, XnnpackPartitioner


def _base(name: str) -> str:
    """An op's name without its overload (``aten::add.Tensor`` -> ``aten::add``)."""
    return name.split(".", 1)[0]


def _implicit(node: torch.fx.Node, kinds: tuple[str, ...]) -> bool:
    """A quantize or dequantize node (of ``kinds``) that the XNNPACK partitioner tagged as
    implicit: folded into the quantization parameters of the tensor it makes or reads. An
    untagged one is an explicit conversion, with float compute on its other side."""
    from executorch.backends.xnnpack.utils.quant_utils import is_tagged_as_implicit_q_dq

    return node.op == "call_function" and _name(node.target).startswith(kinds) and is_tagged_as_implicit_q_dq(node)


def on_int8(op: torch.fx.Node, int8: set[torch.fx.Node]) -> str | None:
    """How XNNPACK runs a delegated ``op``, given the ops before it that run on int8: "int8"
    (a convolution or linear whose activation is an implicit dequantize; any other op whose
    inputs all are), "fused" (an activation the int8 op before it absorbs as its output clamp),
    or None (float)."""
    inputs = op.all_input_nodes
    if _base(_name(op.target)) in COMPUTE:
        return "int8" if op.args and isinstance(op.args[0], torch.fx.Node) and _implicit(op.args[0], DEQUANTIZE) \
            else None
    if (_base(_name(op.target)) in FUSED_ACTIVATIONS and len(inputs) == 1 and inputs[0] in int8
            and op.users and all(_implicit(user, QUANTIZE) for user in op.users)):
        return "fused"
    return "int8" if inputs and all(_implicit(node, DEQUANTIZE) for node in inputs) else None


def computes(op: torch.fx.Node) -> bool:
    """A call of an ATen op that is neither a quantize/dequantize nor data movement."""
    if op.op != "call_function":
        return False
    name = _name(op.target)
    return name.startswith("aten::") and _base(name) not in DATA_OPS


def inspect_lowered(graph_module: torch.fx.GraphModule) -> Inspection:
    """XNNPACK integer kernels versus float compute of a lowered edge program, by op and where
    it runs (``aten::add[XnnpackBackend]``, ``aten::mean[portable]``)."""
    from executorch.exir.backend.utils import get_delegates, get_non_lowered_nodes

    inspection = Inspection()
    delegates = get_delegates(graph_module.graph)
    delegated: Counter[str] = Counter()
    for node in delegates:
        lowered = getattr(graph_module, node.name)
        inner = lowered.original_module.graph_module if hasattr(lowered.original_module, "graph_module") \
            else lowered.original_module
        int8: set[torch.fx.Node] = set()
        for op in inner.graph.nodes:
            if op.op != "call_function":
                continue
            name = _base(_name(op.target))
            delegated[name] += 1
            if not computes(op):
                continue
            runs = on_int8(op, int8)
            if runs:
                int8.add(op)
            if runs != "fused":
                (inspection.quantized if runs else inspection.floating)[f"{name}[{lowered.backend_id}]"] += 1
    outside = [n for n in get_non_lowered_nodes(graph_module.graph) if n.op == "call_function"]
    for op in outside:
        if computes(op):
            inspection.floating[f"{_base(_name(op.target))}[{PORTABLE}]"] += 1
    names = [_base(_name(op.target)) for op in outside]
    inspection.notes.update(
        delegates=len(delegates),
        delegated=dict(delegated),
        undelegated=dict(Counter(names)),
        undelegated_quantize_ops=sum(1 for name in names if name.startswith(QDQ)),
    )
    return inspection.beside_float_compute(by_base_name(COMPUTE))


def lower(model: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> Any:
    """The edge program of ``model`` with XNNPACK's partitions lowered."""
    exir, partitioner = lowering()
    return exir.to_edge_transform_and_lower(torch.export.export(model, example), partitioner=[partitioner()])


def deploy(ctx, model: torch.nn.Module) -> Deployed:
    example = ctx.data.calibration[0]
    with ctx.clock.stage(Stage.EXPORT), torch.no_grad():
        edge = lower(model, example)
        inspection = inspect_lowered(edge.exported_program().graph_module)
        if inspection.notes["undelegated_quantize_ops"]:
            quantized_kernels()  # q/dq kernels outside a delegate
        program = edge.to_executorch().buffer
    if ctx.artifacts is not None:
        ctx.artifacts.mkdir(parents=True, exist_ok=True)
        (ctx.artifacts / "model.pte").write_bytes(program)
    with ctx.clock.stage(Stage.LOAD):
        from executorch.runtime import Runtime

        share_threadpool(torch.get_num_threads())
        loaded = Runtime.get().load_program(program)
        method = loaded.load_method("forward")

    def run(*inputs: torch.Tensor, _keep=(program, loaded)) -> torch.Tensor:
        # The runtime reads the program from ``program`` without owning it: the closure keeps it.
        return method.execute([t.contiguous() for t in inputs])[0].clone()

    return Deployed(run, inspection, size_bytes=len(program))


@functools.cache
def share_threadpool(threads: int) -> None:
    """XNNPACK's threadpool sized to the worker's share of the cores (it takes them all)."""
    from executorch.extension.pybindings import portable_lib

    reset = getattr(portable_lib, "_unsafe_reset_threadpool", None)
    count = getattr(portable_lib, "_threadpool_get_thread_count", None)  # not in ExecuTorch 1.0
    if reset is not None and (count is None or count() != threads):
        reset(threads)


def pt2e_quantizer(scheme: str, qspec: QSpec) -> Any:
    """ExecuTorch's XNNPACKQuantizer: symmetric int8, per-channel weights unless the qspec asks
    for per-tensor; dynamic is per-channel with activations quantized per call."""
    try:
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
    except ImportError as exc:
        raise Unavailable(f"ExecuTorch's XNNPACKQuantizer not found: {exc}") from exc
    config = get_symmetric_quantization_config(
        is_per_channel=per_channel_only(qspec.knobs, "the XNNPACK quantizer"), is_qat=scheme == "qat",
        is_dynamic=scheme == "ptq_dynamic")
    return XNNPACKQuantizer().set_global(config)


register(Backend(
    "executorch_xnnpack", "executorch",
    "lowered to ExecuTorch with the XNNPACK delegate (to_edge_transform_and_lower), run from a .pte "
    "by ExecuTorch's runtime",
    deploy=deploy, packages={"executorch": "executorch"}, extra="executorch", pt2e_quantizer=pt2e_quantizer,
    fx_target="xnnpack",
    pt2e_knobs="granularity", tools=("ExecuTorch", "XNNPACK", "XNNPACKQuantizer", "XnnpackPartitioner"),
))
