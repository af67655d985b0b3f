"""The words of a record, defined once: stages, statuses and their groups, verdicts, the axes,
threshold violations. Every writer and reader of records takes its names from here; pytest's
own words are made from these at the plugin's edge only."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# The axes of a cell, in the order of a case id and of every table.
AXES = ("model", "kind", "mode", "scheme", "qspec", "backend")


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


VERDICTS = tuple(v.value for v in Verdict)
# Verdicts that turn a run red.
SURPRISES = (Verdict.WORSE.value, Verdict.BROKEN.value, Verdict.BETTER.value)
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
