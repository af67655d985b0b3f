"""PyTorch on the CPU, eager: the model runs as it is, each tensor subclass (torchao's quantized
weights) dispatching its own kernels.

Inspection runs the model once on a calibration batch under a dispatch mode and counts the
ATen ops that compute: an integer matmul (``aten._int_mm``, torchao's int8 x intN CPU kernels)
is a quantized op; a matmul on float operands is float compute, and so is a mixed kernel that
reads int8 or int4 weights into a float matmul (``_weight_int8pack_mm``, ``_weight_int4pack_mm``:
weight-only storage, tagged ``[weight_only]``).
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from matrix.backends import Backend, register
from matrix.contract import Deployed, Inspection
from matrix.formats.pytorch import FLOAT_KERNELS, QUANTIZED_PREFIXES, serialized_bytes, time_split
from matrix.vocabulary import Stage

# The int8 kernels and float kernels are the ones the profiler's time split counts
# (matrix/formats/pytorch.py), by the same names; a dispatched call also sees these float ops.
WEIGHT_ONLY_KERNELS = ("aten::_weight_int8pack_mm", "aten::_weight_int4pack_mm")
DISPATCHED_FLOAT = FLOAT_KERNELS | {"aten::linear", "aten::matmul", "aten::_scaled_dot_product_flash_attention_for_cpu",
                                    "aten::_native_multi_head_attention"}


class _Calls(TorchDispatchMode):
    """The ATen ops a run dispatches, by ``namespace::name`` as the profiler names them."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls[f"{func.namespace}::{func._opname}"] += 1
        return func(*args, **(kwargs or {}))


def inspect_calls(calls: Counter[str]) -> Inspection:
    found = Inspection(notes={"aten_calls": dict(calls)})
    for name, count in calls.items():
        if name.startswith(QUANTIZED_PREFIXES):
            found.quantized[name] += count
        elif name.startswith(WEIGHT_ONLY_KERNELS):
            found.floating[f"{name}[weight_only]"] += count
        elif name in DISPATCHED_FLOAT:
            found.floating[name] += count
    return found


def inspect_run(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> Inspection:
    """What one run of ``model`` computes in integers and in float."""
    mode = _Calls()
    with torch.no_grad(), mode:
        model(*inputs)
    return inspect_calls(mode.calls)


def deploy(ctx, model: torch.nn.Module) -> Deployed:
    with ctx.clock.stage(Stage.LOAD):
        model = model.eval()
        inspection = inspect_run(model, ctx.data.calibration[0])
    with ctx.clock.stage(Stage.EXPORT):
        size = serialized_bytes(model)

    def run(*inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(*inputs)

    return Deployed(run, inspection, model=model, size_bytes=size, profile=lambda inputs: time_split(run, inputs))


register(Backend(
    "torch_cpu", "torch_eager",
    "the model run eagerly by PyTorch on the CPU, its tensor subclasses (torchao's quantized weights) "
    "dispatching their own kernels",
    deploy=deploy, tools=("PyTorch eager",),
))
