"""One cell, stage by stage, to one record."""

from __future__ import annotations

import functools
import math
import resource
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from matrix.backends import BACKENDS
from matrix.cases import Case, expand
from matrix.cell import StageClock, StageFailed, Unavailable, first_line, stable_seed, unavailable_reason
from matrix.contract import CellContext, Deployed, Quantized
from matrix.formats.compiled import CompiledGraph
from matrix.formats.graph import last_nodes
from matrix.formats.layers import recompile_limit
from matrix.localize import SQNR, STEPS, localize
from matrix.metrics import compare, sqnr_db
from matrix.modes import MODES
from matrix.payoff import DEFAULT_LATENCY, measure, remember_float, timed
from matrix.qspecs import QSPECS
from matrix.schemes import SCHEMES
from matrix.thresholds import JUDGED, Thresholds, judge
from matrix.vocabulary import FIDELITY_METRIC, FLOAT_CELL, WHOLE_MODELS, Fidelity, Record, Stage, Status, two_answers
from matrix.watchdog import CellTimeout, time_limit
from models import BATCH, MODELS, Inputs, layers, operator_models

# What first divergence looked inside (the record's ``divergence.compared``).
DEPLOYED = "the deployed model"
STAND_IN = "the mode's model run in PyTorch"


def new_record(case: Case) -> Record:
    return {
        "case_id": case.id,
        **case.axes(),
        "status": None,
        "stage": None,
        "error_type": None,
        "error_message": None,
        "reason": None,
        "metrics": {},
        "quantized_ops": None,
        "float_ops": None,
        "op_counts": {},
        "timings": {},
        "seed": stable_seed(case.id),
        "fidelity": None,
        # Where a model brought with --models-from (or an entry point) comes from; None for the suite's own.
        "model_source": MODELS[case.model].source if case.model in MODELS else None,
    }


def _unavailable(case: Case) -> str | None:
    return (unavailable_reason(MODELS[case.model]) or MODES[case.mode].unavailable_reason()
            or BACKENDS[case.backend].unavailable_reason())


def run_cell(
    case: Case,
    thresholds: Thresholds,
    seconds: float | None = None,
    on_hang: Callable[[dict], None] | None = None,
    on_stage: Callable[[Stage], None] | None = None,
    artifacts: Path | None = None,
    localize_all: bool = False,
    latency: str = DEFAULT_LATENCY,
) -> dict:
    """Attempt one cell; never raises. The record says what happened and where.

    ``seconds`` overrides the cell's time limit from the thresholds; ``on_hang``
    receives the timeout record of a cell stuck past the limit, just before the
    process ends; ``on_stage`` is told of every stage as it starts; ``artifacts``
    is a folder where the backend keeps the artifact it deployed. An inaccurate cell
    (any cell with ``localize_all``) gets the first layer where it diverges from float.
    ``latency`` (:data:`matrix.payoff.LATENCY_CHOICES`) says which cells are timed against
    float on their backend; every cell that deploys records its size.
    """
    record = new_record(case)
    clock = StageClock(on_enter=on_stage)
    limit = seconds or thresholds.for_cell(case.scheme, case.model, case.backend, case.kind)["max_cell_seconds"]
    torch.manual_seed(record["seed"])
    # Each cell starts from a clean dynamo: what an earlier cell's export left in its caches changes
    # what a later capture traces (on torch 2.5, after a failed ONNX export of an eager model, the
    # next torch.export of a model with a QuantStub in it fails: "inline in skipfiles: QuantStub.forward").
    torch._dynamo.reset()

    def hung() -> None:
        if on_hang is not None:
            on_hang(_timed_out(record, clock, CellTimeout(limit), hard=True))

    try:
        reason = _unavailable(case)
        if reason:
            raise Unavailable(reason)
        with time_limit(limit, hung):
            _attempt(case, record, clock, thresholds, artifacts, localize_all, timed(latency, case.kind))
    except CellTimeout as exc:
        _timed_out(record, clock, exc, hard=False)
    except Unavailable as exc:
        record.update(status=Status.UNAVAILABLE.value, reason=str(exc))
    except StageFailed as exc:
        broken_case = exc.stage is Stage.REFERENCE
        message = first_line(exc.cause)
        if broken_case:
            source = MODELS[case.model].source
            message = f"model {case.model!r}" + (f" from {source}" if source else "") + f" is broken: {message}"
        record.update(
            status=(Status.ERROR if broken_case else Status.FAIL).value,
            stage=exc.stage.value,
            error_type=type(exc.cause).__name__,
            error_message=message,
            traceback=_short_traceback(exc.cause),
        )
    except Exception as exc:  # a bug of the harness itself, never a finding about a backend
        record.update(
            status=Status.ERROR.value, stage="harness", error_type=type(exc).__name__,
            error_message=first_line(exc), traceback=_short_traceback(exc),
        )
    record["timings"] = clock.timings
    record["peak_rss_mb"] = peak_rss_mb()
    return record


def peak_rss_mb() -> float:
    """The peak resident memory of this process so far, in MiB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _timed_out(record: dict, clock: StageClock, exc: CellTimeout, hard: bool) -> dict:
    message = str(exc) + (" and did not return to the interpreter; its worker was ended" if hard else "")
    record.update(
        status=Status.TIMEOUT.value, stage=clock.last.value if clock.last else "harness",
        error_type="CellTimeout", error_message=message, timings=dict(clock.timings),
    )
    return record


def _attempt(case: Case, record: dict, clock: StageClock, thresholds: Thresholds, artifacts: Path | None,
             localize_all: bool = False, time_it: bool = False) -> None:
    spec = MODELS[case.model]
    limits = thresholds.for_cell(case.scheme, case.model, case.backend, case.kind)
    with clock.stage(Stage.REFERENCE), torch.no_grad():
        float_model = spec.instantiate()
        data = spec.make_data()
        reference = in_batches(float_model, data.evaluation)
        if not torch.isfinite(reference).all():
            raise ValueError("the float model's output holds NaN or Inf")
    record["layers"] = layers(float_model)
    if case.kind in WHOLE_MODELS:
        # The cell of the same mode, scheme, backend and qspec of each layer class's operator model:
        # the report reads its outcome as evidence for this cell's (matrix.reporting.tables).
        # (only cells the matrix has: a qspec made for whole models has no operator cells).
        by_layer, matrix = _operator_cells()
        record["operator_cells"] = {layer: cell for layer, model in by_layer.items() if layer in record["layers"]
                                    and (cell := model + case.id[len(case.model):]) in matrix}
    backend = BACKENDS[case.backend]
    ctx = CellContext(case, spec, SCHEMES[case.scheme], QSPECS[case.qspec], backend, float_model, data, clock,
                      artifacts)
    with backend.activate():
        quantized = MODES[case.mode].quantize(ctx)
        with clock.stage(Stage.CONVERT), torch.no_grad():
            simulated = in_batches(quantized.simulation, data.evaluation)
        record["simulation"] = quantized.simulation_kind
        record["simulation_stand_in"] = quantized.stand_in
        if quantized.notes:
            record["mode_notes"] = quantized.notes
        deployed = backend.deploy(ctx, quantized.model)
        inspection = deployed.inspection
        if case.scheme == "fp16":
            inspection = inspection.computed_in_half()
        if not ctx.scheme.quantizes:
            # The float model as this backend deployed it: what this process's timed cells of the
            # same model and backend are measured against, deployed once.
            remember_float(ctx, quantized, deployed)
        record.update(
            quantized_ops=inspection.quantized_ops,
            float_ops=inspection.float_ops,
            op_counts={"quantized": dict(inspection.quantized), "float": dict(inspection.floating)},
            **({"inspection_notes": inspection.notes} if inspection.notes else {}),
        )
        with clock.stage(Stage.RUN):
            output = in_batches(deployed.run, data.evaluation)
        if time_it and ctx.scheme.quantizes:
            with clock.stage(Stage.MEASURE):
                record.update(measure(ctx, quantized, deployed, limits["latency_seconds"]))
        else:
            record["size"] = {"bytes": deployed.size_bytes}
    with clock.stage(Stage.COMPARE):
        metrics = compare(reference, output, simulated, spec.classifier, data.labels)
    record["metrics"] = metrics
    if not ctx.scheme.quantizes:
        _judge_float_cell(record, inspection, metrics, limits)
        return
    if inspection.quantized_ops == 0:
        beside = inspection.notes.get("integer_beside_float_compute")
        record.update(status=Status.NOT_QUANTIZED.value, reason=(
            "no op computed in float16 in the deployed artifact" if case.scheme == "fp16" else
            "no quantized compute op in the deployed artifact") + (
            f": its compute ops all ran in float, only weightless ops in integers ({_counts(beside)})"
            if beside else ""))
        return
    violations = judge(metrics, limits)
    record["limits"] = {key: limits[key] for key in JUDGED}
    record["violations"] = [v.as_dict() for v in violations]
    # Two answers: the status against float (accuracy), the fidelity against the simulation.
    record.update(two_answers([(v.metric, v.phrase) for v in violations]))
    if violations or localize_all:
        with backend.activate(), clock.counted_in(Stage.COMPARE):
            over = {v.metric for v in violations}
            off_simulation_only = FIDELITY_METRIC in over and "sqnr_db" not in over
            subject, compared = _localized(deployed, quantized)
            graph_layers = len(last_nodes(subject.model)) if isinstance(subject, CompiledGraph) else 0
            if graph_layers > limits["max_recompiled_layers"]:
                record["divergence"] = {"error": (
                    f"{compared}: its {graph_layers} layers are more than max_recompiled_layers "
                    f"({limits['max_recompiled_layers']:g}); compiling it again with them as outputs costs more "
                    "than the cell")}
                return
            start = worst_batch(simulated if off_simulation_only else reference, output, off_simulation_only)
            with recompile_limit(limits["max_recompiled_layers"]):
                record["divergence"] = _divergence(float_model, quantized, subject, data.evaluation, limits,
                                                   off_simulation_only, compared, start, case.model)


def _judge_float_cell(record: dict, inspection, metrics: dict, limits: dict) -> None:
    """A float cell: its artifact holds no quantized op (status ``not_quantized``, by design; one
    that holds some is the harness's error), and its fidelity to PyTorch's float output, by the
    float scheme's thresholds, is the backend's float parity: every limit met is ``faithful``."""
    if inspection.quantized_ops:
        record.update(status=Status.ERROR.value, stage="harness", error_type="QuantizedFloatCell",
                      error_message=f"the float cell's deployed artifact holds {_counts(inspection.quantized)}: "
                                    "the harness quantized a model it was to deploy as float")
        return
    violations = judge(metrics, limits)
    record["limits"] = {key: limits[key] for key in JUDGED}
    record["violations"] = [v.as_dict() for v in violations]
    record.update(status=Status.NOT_QUANTIZED.value, reason=FLOAT_CELL,
                  fidelity=(Fidelity.DEPARTS if violations else Fidelity.FAITHFUL).value,
                  fidelity_reason="; ".join(v.phrase for v in violations) or None)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in counts.items())


@functools.cache
def _operator_cells() -> tuple[dict[str, str], frozenset[str]]:
    """The operator model of each layer class, and the ids of every operator cell of the matrix."""
    operators = {name: spec for name, spec in MODELS.items() if spec.kind == "operator"}
    return operator_models(), frozenset(case.id for case in expand(operators, MODES, SCHEMES, BACKENDS, QSPECS))


def _localized(deployed: Deployed, quantized: Quantized) -> tuple[nn.Module, str]:
    """What first divergence looks inside, and what that is: the deployed artifact when it
    reports its own layers (a .tflite, an OpenVINO model), when it is a graph compiled again
    with its layers as outputs (Inductor's code, an ONNX Runtime session) or when it is the
    mode's model itself (PyTorch's engines); else the mode's model run in PyTorch, standing
    in for the artifact (an ONNX Runtime session of a module, an ExecuTorch program: a copy
    lowered with extra outputs returns zeros for a value computed inside an XNNPACK delegate,
    executorch 1.5.1, so its layers are not read that way)."""
    if isinstance(deployed.run, CompiledGraph):
        return deployed.run, DEPLOYED + ", compiled again with its layers as extra outputs"
    if callable(getattr(deployed.run, "layer_outputs", None)) or deployed.model is quantized.model:
        return (deployed.run if deployed.model is None else deployed.model), DEPLOYED
    return quantized.model, STAND_IN


def worst_batch(expected: torch.Tensor, output: torch.Tensor, by_distance: bool) -> int:
    """The first row of the ``BATCH`` rows where the output is farthest from what was expected:
    by largest distance (from the simulation) or by lowest SQNR (against float)."""
    scores = []
    for start in range(0, len(output), BATCH):
        want, got = expected[start : start + BATCH], output[start : start + BATCH]
        score = float((want - got).abs().max()) if by_distance else -sqnr_db(want, got)
        scores.append(math.inf if math.isnan(score) else score)  # a NaN output is the worst
    return max(range(len(scores)), key=scores.__getitem__) * BATCH


def _divergence(float_model: nn.Module, quantized: Quantized, subject: nn.Module, inputs: Inputs, limits: dict,
                off_simulation_only: bool, compared: str, start: int = 0, name: str | None = None) -> dict:
    """Where ``subject`` (``compared``, see :func:`_localized`) first leaves its reference, on the batch from
    row ``start`` (the one where the cell's output is worst); ``name`` is the model's, for a
    model compared whole.

    The reference is the mode's simulation (in output steps) for a cell whose output is near
    float but not near its simulation; else the float model: the same model's float artifact
    when the mode made one (compared tensor by tensor inside the format), else the PyTorch
    float model (SQNR). A failure to localize is noted in the record and changes no status."""
    batch = tuple(tensor[start : start + BATCH] for tensor in inputs)
    try:
        found = None
        if off_simulation_only:
            found = localize(quantized.simulation, subject, batch, limits["max_lsb_err_vs_sim"], STEPS, name)
        if not (found and found.layers):
            reference = quantized.float_artifact() if quantized.float_artifact is not None else float_model
            found = localize(reference, subject, batch, limits["min_sqnr_db"], SQNR, name)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {first_line(exc)}"}
    summary = found.summary() + (f" ({compared}, not the deployed artifact)" if compared == STAND_IN else "")
    return {**found.as_record(), "compared": compared, "batch_start": start, "summary": summary}


def in_batches(run: Callable[..., torch.Tensor], inputs: Inputs) -> torch.Tensor:
    """Run on ``BATCH`` rows at a time and join the outputs (dequantized if need be)."""
    outputs = []
    for start in range(0, len(inputs[0]), BATCH):
        output = run(*(tensor[start : start + BATCH] for tensor in inputs))
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"the model returned {type(output).__name__}, not one tensor")
        outputs.append(output.dequantize() if output.is_quantized else output)
    return torch.cat(outputs)


def _short_traceback(exc: BaseException, frames: int = 6) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-frames:])[-3000:]
