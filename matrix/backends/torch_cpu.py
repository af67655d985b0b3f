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
from matrix.contract import HALF_TAG, Deployed, Inspection
from matrix.formats.pytorch import FLOAT_KERNELS, QUANTIZED_PREFIXES, serialized_bytes, time_split
from matrix.vocabulary import Stage

# The int8 kernels and float kernels are the ones the profiler's time split counts
# (matrix/formats/pytorch.py), by the same names; a dispatched call also sees these float ops.
WEIGHT_ONLY_KERNELS = ("aten::_weight_int8pack_mm", "aten::_weight_int4pack_mm")
DISPATCHED_FLOAT = FLOAT_KERNELS | {"aten::linear", "aten::matmul", "aten::_scaled_dot_product_flash_attention_for_cpu",
                                    "aten::_native_multi_head_attention"}


# Calls that only move, copy or make data: a half model's run is not float16 compute for them.
DATA_CALLS = {"aten::_to_copy", "aten::copy_", "aten::clone", "aten::cat", "aten::stack", "aten::constant_pad_nd",
              "aten::_unsafe_view", "aten::expand", "aten::detach", "aten::alias", "aten::lift_fresh", "aten::empty",
              "aten::empty_like", "aten::zeros", "aten::zeros_like", "aten::ones_like", "aten::full", "aten::split",
              "aten::split_with_sizes", "aten::unbind", "aten::repeat", "aten::index_select"}


def _half(args: tuple) -> bool:
    """Whether a call's first floating-point tensor argument is float16: the dtype it computes in."""
    first = next((a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()), None)
    return first is not None and first.dtype == torch.float16


class _Calls(TorchDispatchMode):
    """The ATen ops a run dispatches, by ``namespace::name`` as the profiler names them, tagged
    ``[f16]`` when they computed in float16 (and ``[f16][data]`` when they only moved float16 data)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = f"{func.namespace}::{func._opname}"
        if _half(args):
            name += f"[{HALF_TAG}]"
            if func.is_view or func.namespace == "aten" and name.split("[")[0] in DATA_CALLS:
                name += "[data]"
        self.calls[name] += 1
        return func(*args, **(kwargs or {}))


def inspect_calls(calls: Counter[str]) -> Inspection:
    found = Inspection(notes={"aten_calls": dict(calls)})
    for name, count in calls.items():
        base = name.split("[")[0]
        if base.startswith(QUANTIZED_PREFIXES):
            found.quantized[name] += count
        elif base.startswith(WEIGHT_ONLY_KERNELS):
            found.floating[f"{name}[weight_only]"] += count
        elif base in DISPATCHED_FLOAT or name.endswith(f"[{HALF_TAG}]"):
            # every op a half model computes in float16 counts (an activation, a pooling, a norm):
            # what the fp16 scheme asks is whether compute ran in half precision
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
