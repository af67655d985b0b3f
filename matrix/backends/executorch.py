"""ExecuTorch with the XNNPACK delegate: PT2E quantized with ExecuTorch's XNNPACKQuantizer,
lowered by ``to_edge_transform_and_lower`` with the XnnpackPartitioner, serialized to a
.pte program and run by ExecuTorch's Python runtime.

Inspection reads the lowered program before serialization: a compute op (convolution,
linear, matmul) inside an XNNPACK delegate that takes a dequantized input runs as an
XNNPACK integer kernel; any compute op left outside a delegate runs in ExecuTorch's
portable float kernels, and quantize/dequantize ops left outside are listed in the notes.
"""

from __future__ import annotations

import functools
import importlib
import logging
import warnings
from collections import Counter
from typing import Any

import torch

from matrix.backends import Backend, register
from matrix.cell import Unavailable
from matrix.contract import Deployed, Inspection
from matrix.qconfigs import per_channel_only
from matrix.qspecs import QSpec
from matrix.vocabulary import Stage

COMPUTE = {"aten::convolution", "aten::linear", "aten::addmm", "aten::mm", "aten::bmm", "aten::matmul",
           "aten::_convolution", "aten::conv2d", "aten::conv1d"}
DEQUANTIZE = ("quantized_decomposed::dequantize", "torchao::dequantize")
QDQ = ("quantized_decomposed::", "torchao::")


def _name(target: Any) -> str:
    if hasattr(target, "name") and callable(target.name):
        try:
            return target.name()
        except Exception:  # an op overload without a schema name
            pass
    return getattr(target, "__name__", str(target))


@functools.cache
def lowering() -> Any:
    logging.getLogger("torchao").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*LeafSpec")
    from executorch import exir
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    return exir, XnnpackPartitioner


def inspect_lowered(graph_module: torch.fx.GraphModule) -> Inspection:
    """XNNPACK integer kernels versus float compute of a lowered edge program."""
    from executorch.exir.backend.utils import get_delegates, get_non_lowered_nodes

    inspection = Inspection()
    delegates = get_delegates(graph_module.graph)
    for node in delegates:
        lowered = getattr(graph_module, node.name)
        inner = lowered.original_module.graph_module if hasattr(lowered.original_module, "graph_module") \
            else lowered.original_module
        for op in inner.graph.nodes:
            name = _name(op.target) if op.op == "call_function" else ""
            if name not in COMPUTE:
                continue
            fed = any(isinstance(a, torch.fx.Node) and _name(a.target).startswith(DEQUANTIZE) for a in op.args)
            (inspection.quantized if fed else inspection.floating)[f"{name}[{lowered.backend_id}]"] += 1
    outside = [_name(n.target) for n in get_non_lowered_nodes(graph_module.graph)]
    for name in outside:
        if name in COMPUTE:
            inspection.floating[f"{name}[portable]"] += 1
    inspection.notes.update(
        delegates=len(delegates),
        undelegated=dict(Counter(outside)),
        undelegated_quantize_ops=sum(1 for name in outside if name.startswith(QDQ)),
    )
    return inspection


def deploy(ctx, model: torch.nn.Module) -> Deployed:
    exir, partitioner = lowering()
    example = ctx.data.calibration[0]
    with ctx.clock.stage(Stage.EXPORT), torch.no_grad():
        edge = exir.to_edge_transform_and_lower(torch.export.export(model, example), partitioner=[partitioner()])
        inspection = inspect_lowered(edge.exported_program().graph_module)
        if inspection.notes["undelegated_quantize_ops"]:
            importlib.import_module("executorch.kernels.quantized")  # q/dq kernels outside a delegate
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
    if reset is not None and portable_lib._threadpool_get_thread_count() != threads:
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
    pt2e_knobs="granularity",
))
