"""The contract modes and backends are written against: what they are handed of a cell
(:class:`CellContext`), what a mode returns (:class:`Quantized`) and what a backend returns
(:class:`Deployed`, with the :class:`Inspection` of its artifact), and what a backend declares
(:class:`Backend`). It sits below the mode and backend registries and the runner, so none of them
imports another to reach it."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from matrix.cell import unavailable_reason

if TYPE_CHECKING:
    from matrix.cases import Case
    from matrix.cell import StageClock
    from matrix.qspecs import QSpec
    from matrix.schemes import Scheme
    from models import ModelData, ModelSpec


@dataclass
class CellContext:
    """What a mode and a backend see of the cell they work on."""

    case: Case
    spec: ModelSpec
    scheme: Scheme
    qspec: QSpec
    backend: Backend
    float_model: nn.Module
    data: ModelData
    clock: StageClock
    artifacts: Path | None = None  # where a backend keeps what it deployed, when asked
    handoff: dict = field(default_factory=dict)  # what a mode leaves for the backend's deploy


@dataclass
class Quantized:
    """A mode's result: the model the backend deploys and the mode's fake-quant simulation."""

    model: nn.Module
    simulation: nn.Module
    simulation_kind: str
    # The float model in the format of ``model`` when that is not a PyTorch model (a .tflite,
    # an OpenVINO model), made on demand: first-divergence compares their layers.
    float_artifact: Callable[[], nn.Module] | None = None
    # The simulation re-implements another tool's recipe in PyTorch (a TFLite converter's, an
    # ONNX Runtime dynamic kernel's) rather than being that tool's own: a departure from it
    # may be the stand-in's, so it is shown as unconfirmed, never as the backend's bug.
    stand_in: bool = False
    # What the mode's path did that a reader of the record should know (a QAT model trained on
    # after a conversion: its loss before and after), recorded as ``mode_notes``.
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Inspection:
    """Compute ops of a deployed artifact, by name, split into quantized and float."""

    quantized: Counter[str] = field(default_factory=Counter)
    floating: Counter[str] = field(default_factory=Counter)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def quantized_ops(self) -> int:
        return sum(self.quantized.values())

    @property
    def float_ops(self) -> int:
        return sum(self.floating.values())

    def beside_float_compute(self, is_compute: Callable[[str], bool]) -> Inspection:
        """The artifact as quantized compute sees it: when it has compute ops (``is_compute`` of
        their names: convolutions, linears, matmuls, RNNs) and every one of them ran in float,
        the weightless ops that ran in integers (an add, a pooling between float convolutions)
        did not make it a quantized model. They move to the notes and count as neither."""
        if any(map(is_compute, self.quantized)) or not any(map(is_compute, self.floating)):
            return self
        self.notes["integer_beside_float_compute"] = dict(self.quantized)
        self.quantized = Counter()
        return self

    def computed_in_half(self) -> Inspection:
        """The artifact as an fp16 cell sees it: the ops that computed in float16 (counted as
        ``NAME[f16]``) are its reduced-precision compute and count as quantized; every other op,
        float16 weights dequantized into a float32 kernel among them, stays float."""
        for name in [n for n in self.floating if is_half(n)]:
            self.quantized[name] += self.floating.pop(name)
        return self


# How an inspection tags an op that computed in float16.
HALF_TAG = "f16"


def is_half(counted: str) -> bool:
    """An op counted as ``NAME[f16]`` (or ``NAME[f16, ...]``)."""
    return "[" in counted and counted.split("[", 1)[1].rstrip("]").split(",")[0].strip() == HALF_TAG


def by_base_name(names: Collection[str]) -> Callable[[str], bool]:
    """For :meth:`Inspection.beside_float_compute`: an op counted as ``NAME[detail]`` (``CONV_2D[int8]``,
    ``Convolution[f32]``) is compute when ``NAME`` is one of ``names``."""
    return lambda counted: counted.split("[")[0] in names


@dataclass
class Deployed:
    run: Callable[..., torch.Tensor]
    inspection: Inspection
    # The mode's model itself when that is what runs (PyTorch's own engines): first
    # divergence then looks inside what was deployed, not at a model standing in for it.
    model: torch.nn.Module | None = None
    # The deployed artifact's bytes: the module's state as torch.save writes it, the .onnx, the
    # .tflite, the .pte, the OpenVINO IR (.xml and .bin, weights as they are, not compressed).
    size_bytes: int | None = None
    # The share of the deployed model's time on a batch in int8 kernels, quantize/dequantize,
    # float kernels and the rest, from the backend's own profiler, where it has one.
    profile: Callable[[tuple[torch.Tensor, ...]], dict[str, float]] | None = None


# The family of PyTorch's own quantized engines: the converted module runs as it is.
NATIVE = "torch_native"


@dataclass(frozen=True)
class Backend:
    name: str
    # What the deployed artifact is: "torch_native", "torch_eager" (a module run as it is, tensor
    # subclasses and all), "torch_compile", "onnx", "tflite", "executorch", "openvino". Modes that
    # produce one format (ONNX Runtime's quantizer, say) reach its family.
    family: str
    description: str
    deploy: Callable[[CellContext, torch.nn.Module], Deployed]
    # Import name -> pip distribution of what the backend runs on, and the extra that installs it:
    # a missing one makes its cells unavailable, and every one is recorded in a run's env.json.
    packages: dict[str, str] = field(default_factory=dict)
    extra: str | None = None
    # More reasons than a missing package (an engine absent from this torch build, say).
    unavailable_check: Callable[[], str | None] = lambda: None
    activate: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    # The quantized engine whose qconfigs and BackendConfig eager and FX use for this backend:
    # a backend with one takes eager and FX models.
    engine: str | None = None
    # The quantized engine whose eager and FX models a backend with no engine of its own reads as
    # ONNX (OpenVINO): those modes reach it only by the TorchScript exporter's route (and FX by
    # its fx_target), with the ONNX that ONNX Runtime gets.
    engine_via_onnx: str | None = None
    # Deploys FX's reference (Q/DQ) model rather than convert_fx's quantized kernels.
    takes_fx_reference: bool = False
    # The backend's PT2E quantizer for (scheme name, QSpec): a backend with one takes PT2E models.
    pt2e_quantizer: Callable[[str, QSpec], Any] | None = None
    # Which qspec knobs that quantizer's config expresses: "all" (the knobs of matrix/qconfigs.py),
    # "granularity" (weights per tensor or per channel only), or None.
    pt2e_knobs: str | None = None
    # What the backend's deploy needs to know of the PT2E quantizer (CellContext.handoff).
    pt2e_handoff: Callable[[Any], dict[str, Any]] | None = None
    # The FX BackendConfig (matrix/modes/fx_targets.py) written after this backend's PT2E
    # quantizer: FX prepares with it and the model reaches the backend through the transplant.
    fx_target: str | None = None
    # The schemes that quantizer has (None: every scheme PT2E has).
    pt2e_schemes: tuple[str, ...] | None = None
    # convert_pt2e(fold_quantize=...): False keeps weights as quantize ops, as litert-torch needs.
    pt2e_fold_quantize: bool = True
    # The names an expectation's reason gives the tools this backend's cells run (its runtime, its
    # kernels, its PT2E quantizer): a reason that names another backend's tool is not this one's.
    tools: tuple[str, ...] = ()
    # Families of artifacts made for another backend that this one runs too (OpenVINO reads ONNX):
    # the modes that produce one (ONNX Runtime's quantizer) reach it as well.
    reads: tuple[str, ...] = ()

    @property
    def native(self) -> bool:
        """One of PyTorch's quantized engines, running the converted module itself."""
        return self.family == NATIVE

    @property
    def qconfig_engine(self) -> str | None:
        """The engine whose qconfigs and BackendConfig eager and FX models for this backend use."""
        return self.engine or self.engine_via_onnx

    def unavailable_reason(self) -> str | None:
        return unavailable_reason(self)
