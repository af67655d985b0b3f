"""Does it pay: a deployed cell's size and latency against the float model deployed on the same
backend, measured in the same process, on the same batch and threads.

The float model is deployed once per process for each model, backend and route (the mode's own
float artifact when it makes one, such as its float .tflite or OpenVINO model; else the PyTorch
float model through the backend's own deploy: exported, converted, lowered or compiled the way
the quantized model was). Latency is timed in interleaved pairs (float then quantized, then the
other way round) after a warm-up, until the median speedup is stable or the cell's budget
(``latency_seconds`` in thresholds.toml) runs out. ``speedup`` is the median of the pairs'
ratios (float time over quantized time: a pair runs back to back, so a slow spell of the
machine strikes both of its halves), its spread their 10th to 90th percentile (``SPREAD``). Where the backend
has a profiler (PyTorch's for its engines and Inductor, ONNX Runtime's), ``time_split`` is
the share of the quantized model's time in int8 kernels, quantize/dequantize, float kernels
and the rest.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from matrix.cell import StageClock, first_line
from matrix.vocabulary import WHOLE_MODELS

if TYPE_CHECKING:
    from matrix.contract import CellContext, Deployed, Quantized

# Which cells are timed (--latency): none, those of models (not of single operators), or all.
LATENCY_CHOICES = ("off", "models", "all")
DEFAULT_LATENCY = "models"
WARM_UP = 2
MIN_PAIRS = 6
MAX_PAIRS = 400
# The percentiles of the pairs' ratios a speedup's spread runs between: where a rerun's speedup
# lands. The interquartile range did not hold it often enough (a second run of 286 cells of
# the matrix landed inside the first run's for 84 % of them, 2026-12-01), so the spread is wider.
SPREAD = (10, 90)
# The median speedup is stable when another CHECK_EVERY pairs move it by less than this share.
STABLE = 0.01
CHECK_EVERY = 10


def timed(choice: str, kind: str) -> bool:
    """Whether a cell of this kind (:data:`matrix.vocabulary.KINDS`) is timed under ``--latency choice``:
    ``models`` times the whole models (reference and zoo), ``all`` the operators too."""
    if choice not in LATENCY_CHOICES:
        raise ValueError(f"--latency must be one of {', '.join(LATENCY_CHOICES)}, not {choice!r}")
    return choice == "all" or (choice == "models" and kind in WHOLE_MODELS)


class FloatDeployments:
    """The float models this process has deployed, the latest ``limit`` of them, or why one
    could not be deployed."""

    def __init__(self, limit: int = 32) -> None:
        self.limit = limit
        self._made: OrderedDict[tuple, Deployed | Exception] = OrderedDict()

    def put(self, key: tuple, made: Deployed) -> None:
        self._made[key] = made
        self._made.move_to_end(key)
        while len(self._made) > self.limit:
            self._made.popitem(last=False)

    def has(self, key: tuple) -> bool:
        return key in self._made

    def get(self, key: tuple, make: Callable[[], Deployed]) -> Deployed | Exception:
        if key in self._made:
            self._made.move_to_end(key)
            return self._made[key]
        try:
            made: Deployed | Exception = make()
        except Exception as exc:  # recorded as the reason the cell has no latency, never dropped
            made = exc
        self.put(key, made)
        return made


FLOATS = FloatDeployments()


def _pytorch_route(ctx: CellContext) -> tuple:
    """The key of the PyTorch float model deployed through the backend's own deploy."""
    return ctx.case.model, ctx.case.backend, "pytorch", ctx.qspec.variant.onnx_exporter


def remember_float(ctx: CellContext, quantized: Quantized, deployed: Deployed) -> None:
    """A float cell's deployment, for the timed cells of this process that deploy the same float
    model the same way (:func:`float_key`: the PyTorch float model through the backend's deploy,
    or the mode's own float artifact, onnx2tf's .tflite say)."""
    FLOATS.put(float_key(ctx, quantized), deployed)


def float_key(ctx: CellContext, quantized: Quantized) -> tuple:
    own = quantized.float_artifact is not None
    return (ctx.case.model, ctx.case.backend, ctx.case.mode, ctx.qspec.variant) if own else _pytorch_route(ctx)


def float_deployed(ctx: CellContext, quantized: Quantized) -> Deployed | Exception:
    """The float model deployed on the cell's backend the way its quantized model was."""
    own = quantized.float_artifact is not None
    key = float_key(ctx, quantized)

    def make() -> Deployed:
        subject = quantized.float_artifact() if own else ctx.float_model
        # The float deploy's stages are not the cell's, and it keeps no artifact of the cell's.
        return ctx.backend.deploy(dataclasses.replace(ctx, clock=StageClock(), artifacts=None, handoff={}), subject)

    return FLOATS.get(key, make)


def quantiles(values: list[float], low: int, high: int) -> tuple[float, float]:
    """The ``low``-th and ``high``-th percentiles of ``values``."""
    if len(values) < 2:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[low - 1], cuts[high - 1]


def quartiles(values: list[float]) -> tuple[float, float]:
    return quantiles(values, 25, 75)


def time_pairs(float_run: Callable[..., Any], quantized_run: Callable[..., Any], batch: tuple[torch.Tensor, ...],
               budget: float) -> dict[str, Any]:
    """Median latency of each, in milliseconds, with interquartile ranges, and the speedup (the
    median of the pairs' ratios) with its interquartile range and its spread (:data:`SPREAD`)."""
    with torch.no_grad():
        for _ in range(WARM_UP):
            float_run(*batch)
            quantized_run(*batch)
        pairs: list[tuple[float, float]] = []
        checked = None
        deadline = time.perf_counter() + budget
        while len(pairs) < MAX_PAIRS:
            runs = (float_run, quantized_run) if len(pairs) % 2 == 0 else (quantized_run, float_run)
            spent = []
            for run in runs:
                start = time.perf_counter()
                run(*batch)
                spent.append(time.perf_counter() - start)
            pairs.append((spent[0], spent[1]) if runs[0] is float_run else (spent[1], spent[0]))
            if len(pairs) < MIN_PAIRS:
                continue
            if time.perf_counter() > deadline:
                break
            if len(pairs) % CHECK_EVERY == 0:
                now = statistics.median(f / q for f, q in pairs)
                if checked is not None and abs(now - checked) <= STABLE * checked:
                    break
                checked = now
    floats, quants = [f * 1e3 for f, _ in pairs], [q * 1e3 for _, q in pairs]
    ratios = [f / q for f, q in pairs]
    low, high = quartiles(ratios)
    spread = quantiles(ratios, *SPREAD)
    return {
        "float_ms": round(statistics.median(floats), 4), "quantized_ms": round(statistics.median(quants), 4),
        "float_iqr_ms": [round(v, 4) for v in quartiles(floats)],
        "quantized_iqr_ms": [round(v, 4) for v in quartiles(quants)],
        "speedup": round(statistics.median(ratios), 4),
        "speedup_iqr": [round(low, 4), round(high, 4)],
        "speedup_spread": [round(v, 4) for v in spread],
        "pairs": len(pairs),
    }


def measure(ctx: CellContext, quantized: Quantized, deployed: Deployed, budget: float) -> dict[str, Any]:
    """The cell's ``latency`` and ``size`` against the float model on its backend; a float model
    that does not deploy there leaves the reason in ``latency.error``."""
    size: dict[str, Any] = {"bytes": deployed.size_bytes}
    batch = tuple(tensor[: len(ctx.data.calibration[0][0])] for tensor in ctx.data.evaluation)
    latency: dict[str, Any] = {"batch": len(batch[0]), "threads": torch.get_num_threads()}
    # Whether this cell deployed the float model or found it deployed in this process (by a float
    # cell or an earlier timed cell): what the benchmark counts as builds.
    latency["float_reused"] = FLOATS.has(float_key(ctx, quantized))
    reference = float_deployed(ctx, quantized)
    if isinstance(reference, Exception):
        latency["error"] = f"the float model did not deploy on this backend: {type(reference).__name__}: " \
                           f"{first_line(reference)}"
        return {"latency": latency, "size": size}
    size["float_bytes"] = reference.size_bytes
    if size["bytes"] and size["float_bytes"]:
        size["compression"] = round(size["float_bytes"] / size["bytes"], 4)
    try:
        latency.update(time_pairs(reference.run, deployed.run, batch, budget))
    except Exception as exc:  # the reason is the record's, never dropped
        latency["error"] = f"timing failed: {type(exc).__name__}: {first_line(exc)}"
    if deployed.profile is not None:
        try:
            latency["time_split"] = deployed.profile(batch)
        except Exception as exc:  # the reason is the record's, never dropped
            latency["time_split_error"] = f"{type(exc).__name__}: {first_line(exc)}"
    return {"latency": latency, "size": size}
