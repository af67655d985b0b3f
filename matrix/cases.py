"""Crossing the axes: the registries expanded once into cases."""

from __future__ import annotations

import fnmatch
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from matrix.cell import stable_seed
from matrix.qspecs import DEFAULT, QSPECS


@dataclass(frozen=True)
class Case:
    model: str
    kind: str
    mode: str
    scheme: str
    qspec: str
    backend: str

    @property
    def id(self) -> str:
        parts = [self.model, self.mode, self.scheme, self.backend]
        if self.qspec != DEFAULT:
            parts.append(self.qspec)
        return "-".join(parts)

    def axes(self) -> dict[str, str]:
        return asdict(self)

    def markers(self) -> list[str]:
        return [f"{axis}_{value}" for axis, value in self.axes().items()]


# The slice CI runs: every mode and scheme, two backends, small models.
SMOKE = (
    "mlp-eager-*-fbgemm",
    "mlp-eager-*-qnnpack",
    "conv_bn_relu-fx-*-x86",
    "conv_bn_relu-eager-ptq_dynamic-fbgemm",
    "digits_mlp-fx-ptq_static-onednn",
    "mlp-pt2e-ptq_static-inductor",
    "mlp-pt2e-ptq_static-onnxruntime",
    "mlp-ort-ptq_static-onnxruntime",
    "mlp-pt2e-ptq_static-litert",
    "mlp-keras-ptq_static-litert",
    "mlp-onnx2tf-ptq_static-litert",
    # Float parity, and float16 computed by PyTorch itself.
    "conv_bn_relu-export-float-onnxruntime",
    "mlp-export-fp16-torch_cpu",
    "mlp-pt2e-ptq_static-executorch_xnnpack",
    "mlp-nncf-ptq_static-openvino",
    "mlp-torchao-ptq_dynamic-torch_cpu",
    "conv_bn_relu-fx-ptq_static-qnnpack-w_per_tensor",
    # The zoo: a real ResNet that FX cannot trace, and a ViT's linears under dynamic quantization.
    "resnet-fx-ptq_static-x86",
    "vit-eager-ptq_dynamic-fbgemm",
)


def is_smoke(case: Case) -> bool:
    return any(fnmatch.fnmatchcase(case.id, pattern) for pattern in SMOKE)


class SelectionError(ValueError):
    pass


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` (1 <= i <= n) to ``(i, n)``."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise SelectionError(f"--shard {text!r}: expected i/n with 1 <= i <= n, for example 2/3")
    return int(match[1]), int(match[2])


# What a cell costs, to start the costliest first: seconds of a reference model's cell by
# backend (a full run's mean stage time per cell, 4,681 cells on two cores, torch 2.13), times
# its kind's weight (a zoo cell costs about ten times as much, 2026-12-02), times its
# scheme's (QAT trains, and PT2E QAT exports its conv-bn patterns). Only the order depends on it.
BACKEND_SECONDS = {"executorch_xnnpack": 3.6, "inductor": 2.5, "openvino": 2.2, "litert": 1.4,
                   "onnxruntime": 0.5}
ENGINE_SECONDS = 0.1  # PyTorch's own engines, and any backend not in the table
KIND_WEIGHT = {"zoo": 10.0, "model": 1.0, "operator": 0.5}
SCHEME_WEIGHT = {"qat": 1.5}


def estimated_seconds(case: Case) -> float:
    return (BACKEND_SECONDS.get(case.backend, ENGINE_SECONDS) * KIND_WEIGHT.get(case.kind, 1.0)
            * SCHEME_WEIGHT.get(case.scheme, 1.0))


def costliest_first(cases: Iterable[Case]) -> list[Case]:
    """The cases in the order a parallel run should start them: the cells of one model on one
    backend together (what a process makes once for them, the float model's deployment on the
    backend and its float artifacts, is then made by one worker, not by each), the costliest of
    these groups first and, inside a group, the costliest cell first. xdist's load scheduling
    hands out cells in this order, in runs of consecutive cells, as workers free up: the run
    ends on short cells on every worker rather than on one long cell on one. Groups that cost
    the same, and cells that do, keep the order they came in."""
    cases = list(cases)
    groups: dict[tuple[str, str], float] = defaultdict(float)
    first: dict[tuple[str, str], int] = {}
    for index, case in enumerate(cases):
        groups[case.model, case.backend] += estimated_seconds(case)
        first.setdefault((case.model, case.backend), index)
    return sorted(cases, key=lambda c: (-groups[c.model, c.backend], first[c.model, c.backend],
                                        -estimated_seconds(c)))


def in_shard(case: Case, shard: tuple[int, int] | None) -> bool:
    """Whether a case belongs to shard i of n: a hash of its id, the same on every machine."""
    if shard is None:
        return True
    index, count = shard
    return stable_seed("shard/" + case.id) % count == index - 1


def parse_selection(axis: str, text: str | None, valid: Iterable[str]) -> tuple[str, ...] | None:
    """``"a,b"`` to ``("a", "b")``; an unknown value is an error that lists the valid ones."""
    if text is None:
        return None
    valid = list(valid)
    chosen = tuple(v.strip() for v in text.split(",") if v.strip())
    if not chosen:
        raise SelectionError(f"--{axis} is empty; valid {axis}: {', '.join(valid)}")
    unknown = [v for v in chosen if v not in valid]
    if unknown:
        raise SelectionError(
            f"unknown {axis} {', '.join(map(repr, unknown))}; valid {axis}: {', '.join(valid)}"
        )
    return chosen


def expand(
    models: dict,
    modes: dict,
    schemes: dict,
    backends: dict,
    qspecs: dict = QSPECS,
    select: dict[str, tuple[str, ...] | None] | None = None,
) -> list[Case]:
    """Every case the registries allow, in a stable order, limited to the selected values: a mode
    crosses the backends it reaches (``mode.reaches(backend)``) and the qspecs that apply there."""
    select = select or {}

    def chosen(axis: str, names: Iterable[str]) -> list[str]:
        wanted = select.get(axis)
        return [n for n in names if wanted is None or n in wanted]

    cases = []
    for model in chosen("models", models):
        for mode_name in chosen("modes", modes):
            mode = modes[mode_name]
            if (getattr(mode, "models", None) is not None and model not in mode.models
                    and (getattr(mode, "own_models_only", True) or models[model].source is None)):
                continue
            for scheme in chosen("schemes", [s for s in schemes if s in mode.schemes]):
                for backend in chosen("backends", [b for b in backends if mode.reaches(backends[b])]):
                    covers = getattr(mode, "covers", None)
                    for qspec in chosen("qspecs", qspecs):
                        if getattr(mode, "qspecs", None) is not None and qspec not in mode.qspecs:
                            continue
                        if not qspecs[qspec].applies(mode_name, backends[backend], scheme, model, models[model].kind):
                            continue
                        if covers is None or covers(backends[backend], models[model].kind, scheme, qspecs[qspec]):
                            cases.append(Case(model, models[model].kind, mode_name, scheme, qspec, backend))
    return cases
