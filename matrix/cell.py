"""Stages, statuses and the timing of one cell's stages."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum

# Identical outputs have infinite SQNR; records hold this finite ceiling instead.
SQNR_CEILING_DB = 300.0


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


# How good an outcome is, for comparing an observed status with the expected one.
# unavailable and error are not findings about a backend and have no rank.
RANK = {
    Status.PASS: 3,
    Status.INACCURATE: 2,
    Status.NOT_QUANTIZED: 1,
    Status.FAIL: 0,
    Status.TIMEOUT: 0,
    Status.CRASH: 0,
}


class Unavailable(Exception):
    """This environment lacks the package, version or API a cell needs."""


class StageFailed(Exception):
    """A stage raised; carries the stage and the original exception."""

    def __init__(self, stage: Stage, cause: BaseException):
        super().__init__(f"{stage.value}: {type(cause).__name__}: {first_line(cause)}")
        self.stage = stage
        self.cause = cause


def first_line(exc: BaseException, limit: int = 500) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return line[:limit]


def stable_seed(text: str) -> int:
    """A seed that is the same on every machine and run for the same text."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


class StageClock:
    """Times stages and turns the first exception of a stage into :class:`StageFailed`.

    ``last`` is the stage entered last (where a timeout or a crash happened);
    ``on_enter`` is told of every stage as it starts.
    """

    def __init__(self, on_enter: Callable[[Stage], None] | None = None) -> None:
        self.timings: dict[str, float] = {}
        self.last: Stage | None = None
        self.on_enter = on_enter

    @contextmanager
    def stage(self, stage: Stage) -> Iterator[None]:
        self.last = stage
        if self.on_enter is not None:
            self.on_enter(stage)
        start = time.perf_counter()
        try:
            yield
        except (StageFailed, Unavailable):
            raise
        except Exception as exc:
            raise StageFailed(stage, exc) from exc
        finally:
            elapsed = time.perf_counter() - start
            self.timings[stage.value] = round(self.timings.get(stage.value, 0.0) + elapsed, 4)
