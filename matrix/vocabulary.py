"""The words of a record, defined once: stages, statuses and their groups, verdicts, the axes,
threshold violations. Every writer and reader of records takes its names from here; pytest's
own words are made from these at the plugin's edge only."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypedDict

# The axes of a cell, in the order of a case id and of every table.
AXES = ("model", "kind", "mode", "scheme", "qspec", "backend")

# The kinds of model: hand-written reference models, real architectures built from their
# library's code (the zoo), and one model per operator. The first two are whole models.
KINDS = ("model", "zoo", "operator")
WHOLE_MODELS = ("model", "zoo")


class Stage(str, Enum):
    """The stages of one cell, in order. ``reference`` is the float model on its own inputs."""

    REFERENCE = "reference"
    CAPTURE = "capture"
    PREPARE = "prepare"
    CALIBRATE = "calibrate"
    TRAIN = "train"
    CONVERT = "convert"
    EXPORT = "export"
    LOAD = "load"
    RUN = "run"
    # Size and latency against float on the same backend: it ends no cell (a failure is noted in
    # the record's ``latency``), but its time is the cell's.
    MEASURE = "measure"
    COMPARE = "compare"


class Status(str, Enum):
    PASS = "pass"
    INACCURATE = "inaccurate"
    NOT_QUANTIZED = "not_quantized"
    FAIL = "fail"
    CRASH = "crash"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    ERROR = "error"


STATUSES = tuple(s.value for s in Status)
# Ran and holds quantized compute ops.
QUANTIZED = (Status.PASS.value, Status.INACCURATE.value)
# Ended before a finding about the deployed model: an exception, a dead process, a time limit, a broken case.
FAILED = (Status.FAIL.value, Status.CRASH.value, Status.TIMEOUT.value, Status.ERROR.value)
# Not a finding about a backend: left out of every pass rate (and shown).
NOT_APPLICABLE = (Status.UNAVAILABLE.value, Status.ERROR.value)

# How good an outcome is, for comparing an observed status with the expected one.
# unavailable and error are not findings about a backend and have no rank.
RANK = {
    Status.PASS.value: 3,
    Status.INACCURATE.value: 2,
    Status.NOT_QUANTIZED.value: 1,
    Status.FAIL.value: 0,
    Status.TIMEOUT.value: 0,
    Status.CRASH.value: 0,
}


class Verdict(str, Enum):
    """A cell's observed status against the expected one (the record's ``verdict``)."""

    AS_EXPECTED = "as_expected"  # expected to pass, and passed
    KNOWN = "known"  # the expected non-pass outcome, with its reason
    BETTER = "better"
    WORSE = "worse"
    BROKEN = "broken"  # the case or the harness failed: no finding at all
    UNAVAILABLE = "unavailable"
    # Fidelity only: a departure from a stand-in simulation (another tool's recipe re-implemented
    # in PyTorch) that no entry explains: shown, but no finding about the backend until the
    # stand-in is checked.
    UNCONFIRMED = "unconfirmed"


VERDICTS = tuple(v.value for v in Verdict)


class Fidelity(str, Enum):
    """A quantized cell's output against the mode's own simulation (the record's ``fidelity``):
    apart from the status, which judges the output against float."""

    FAITHFUL = "faithful"  # within max_lsb_err_vs_sim steps of the simulation
    DEPARTS = "departs"  # farther: the kernels do not compute what the recipe simulates


FIDELITIES = tuple(f.value for f in Fidelity)
# The metrics the status is judged by (against float), and the one fidelity is judged by.
ACCURACY_METRICS = ("sqnr_db", "accuracy_drop")
FIDELITY_METRIC = "lsb_err_vs_sim"
# Verdicts that turn a run red.
SURPRISES = (Verdict.WORSE.value, Verdict.BROKEN.value, Verdict.BETTER.value)
# Why an expectation entry is stale: no cell takes its expectation from it.
MATCHES_NO_CELL = "matches no cell"
SHADOWED = "shadowed by earlier entries on every cell it matches"
# Records written before verdicts had words of their own carry pytest's outcome.
LEGACY_VERDICTS = {"passed": Verdict.AS_EXPECTED.value, "xfailed": Verdict.KNOWN.value,
                   "xpassed": Verdict.BETTER.value, "failed": Verdict.WORSE.value,
                   "skipped": Verdict.UNAVAILABLE.value}


@dataclass(frozen=True)
class Violation:
    """A metric over its limit: ``value`` against ``limit`` (``direction`` says which side is bad)."""

    metric: str
    value: float | None
    limit: float
    direction: str  # "<": the value must be at least the limit; ">": at most

    @property
    def phrase(self) -> str:
        value = f"{self.value:.4f}" if self.metric == "accuracy_drop" and self.value is not None else self.value
        name = "accuracy drop" if self.metric == "accuracy_drop" else self.metric
        return f"{name} {value} {self.direction} {self.limit}"

    def as_dict(self) -> dict:
        return {"metric": self.metric, "value": self.value, "limit": self.limit}


class ViolationRecord(TypedDict):
    metric: str
    value: float | None
    limit: float


# One cell's line in a records file: the fields every writer writes and every reader reads.
# The runner writes the finding (``status`` to ``divergence``), the plugin what it was held
# against (``verdict``, ``expected``, ``documented``). A record carries its own judgment:
# ``limits`` (the thresholds it was judged by) and ``violations``, so rendering an old run
# never reads today's thresholds.
Record = TypedDict("Record", {
    "case_id": str,
    **dict.fromkeys(AXES, str),
    "status": str,  # one of STATUSES
    "stage": "str | None",  # the Stage where a cell ended early (None for a cell that ran)
    "error_type": "str | None",
    "error_message": "str | None",
    "reason": "str | None",
    "metrics": "dict[str, float | None]",  # sqnr_db, sqnr_sim_db, lsb_err_vs_sim, max_abs_err, top1_agree, ...
    "limits": "dict[str, float]",
    "violations": list[ViolationRecord],
    "quantized_ops": "int | None",
    "float_ops": "int | None",
    "op_counts": "dict[str, dict[str, int]]",  # {"quantized": {op: n}, "float": {op: n}}
    "inspection_notes": dict[str, Any],
    "simulation": str,  # what the mode's simulation is
    "mode_notes": dict[str, Any],  # what the mode's path did that a reader should know
    "divergence": dict[str, Any],  # first divergence (matrix/localize.py)
    "timings": dict[str, float],  # seconds by stage
    "peak_rss_mb": float,
    "seed": int,
    "nodeid": str,
    "verdict": str,  # one of VERDICTS: the status's against its expectation, or a fidelity surprise
    "fidelity": "str | None",  # one of FIDELITIES on a quantized cell, else None
    "fidelity_reason": "str | None",  # the departure: steps against the limit
    "fidelity_verdict": "str | None",  # one of VERDICTS: the fidelity's against its expectation
    "simulation_stand_in": bool,  # the simulation re-implements another tool's recipe in PyTorch
    "expected_fidelity": dict[str, Any],
    "expected": dict[str, Any],
    "documented": dict[str, Any],
}, total=False)


# What a line must hold to be a cell record at all.
REQUIRED = ("case_id", "status", *AXES)


def record_problem(record: object) -> str | None:
    """Why a parsed line is not a cell record, or None: a field it must have is missing, or its
    status or verdict is no word of this vocabulary (after older runs' words are translated)."""
    if not isinstance(record, dict):
        return "not a cell record (a JSON object)"
    missing = [key for key in REQUIRED if not isinstance(record.get(key), str) or not record[key]]
    if missing:
        return "not a cell record (no " + ", ".join(missing) + ")"
    if record["status"] not in STATUSES:
        return f"unknown status {record['status']!r} (known: {', '.join(STATUSES)})"
    verdict = record.get("verdict")
    if verdict is not None and verdict not in VERDICTS and verdict not in LEGACY_VERDICTS:
        return f"unknown verdict {verdict!r} (known: {', '.join(VERDICTS)})"
    fidelity = record.get("fidelity")
    if fidelity is not None and fidelity not in FIDELITIES:
        return f"unknown fidelity {fidelity!r} (known: {', '.join(FIDELITIES)})"
    return None


# What a float cell's status says: its artifact holds no quantized op because no quantizer ran.
FLOAT_CELL = ("a float cell: the float model deployed with no quantizer, so no quantized op by design; its "
              "fidelity to PyTorch's float output is the backend's float parity")


def two_answers(violations: list[tuple[str, str]]) -> dict[str, str | None]:
    """A quantized cell's status and fidelity from its violations, as (metric, phrase) pairs:
    the status by the accuracy metrics alone (with their phrases as its ``reason``), the
    fidelity by the simulation's (its ``fidelity_reason``)."""
    accuracy = [phrase for metric, phrase in violations if metric in ACCURACY_METRICS]
    departure = [phrase for metric, phrase in violations if metric == FIDELITY_METRIC]
    return {"status": (Status.INACCURATE if accuracy else Status.PASS).value, "reason": "; ".join(accuracy) or None,
            "fidelity": (Fidelity.DEPARTS if departure else Fidelity.FAITHFUL).value,
            "fidelity_reason": "; ".join(departure) or None}


# A violation as a reason phrases it: "<metric> <value> <op> <limit>" (Violation.phrase).
PHRASE = re.compile(r"^(sqnr_db|lsb_err_vs_sim|accuracy drop) \S+ [<>] \S+$")


def split_legacy_judgment(record: dict) -> None:
    """A quantized record written when one status judged both accuracy and fidelity (no
    ``fidelity`` field) in today's words, read from the violations its reason phrases (the
    runner wrote the reason from them): the status by the accuracy violations alone, the
    fidelity by the simulation's. A record whose reason names none is left as written."""
    if "fidelity" in record or record.get("status") not in QUANTIZED:
        return
    phrases = [p.strip() for p in (record.get("reason") or "").split(";")]
    violations = [(m[1].replace(" ", "_"), m[0]) for m in map(PHRASE.match, phrases) if m]
    if record["status"] == Status.INACCURATE.value and not violations:
        return  # nothing says what it was over: left as it was written
    record.update(two_answers(violations))
