"""The timing of one cell's stages and the exceptions that end a cell."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from matrix.vocabulary import Stage

# Identical outputs have infinite SQNR; records hold this finite ceiling instead.
SQNR_CEILING_DB = 300.0


class Unavailable(Exception):
    """This environment lacks the package, version or API a cell needs."""


def first_location(locations: tuple[tuple[str, ...], ...], build: Callable, what: str):
    """``build`` of the modules of the first location (module names, newest first) that imports and
    has what ``build`` reads; :class:`Unavailable` naming every location tried and why, when none does
    (an API that moved between releases: PT2E from torch.ao to torchao, say)."""
    problems = []
    for names in locations:
        try:
            return build(*(importlib.import_module(name) for name in names))
        except (ImportError, AttributeError) as exc:
            problems.append(f"{names[0]}: {exc}")
    raise Unavailable(f"{what}: " + "; ".join(problems))


def missing_packages(packages: dict[str, str], extra: str) -> str | None:
    """Why a backend's or a mode's cells are unavailable: the pip names of the modules (module -> package)
    that cannot be imported, and the extra that installs them (or the command, for packages no
    extra can install: ``pip install ...``); None when all are there."""
    missing = [package for module, package in packages.items() if importlib.util.find_spec(module) is None]
    if missing:
        install = extra if extra.startswith("pip ") else f"pip install 'qmatrix[{extra}]'"
        return f"missing package(s) {', '.join(missing)} ({install})"
    return None


class Installable(Protocol):
    """What a mode and a backend declare of what they run on."""

    name: str
    packages: dict[str, str]
    extra: str | None
    unavailable_check: Callable[[], str | None]


def unavailable_reason(declared: Installable) -> str | None:
    """Why a mode's or a backend's cells cannot run here: a missing package, or its own check."""
    return missing_packages(declared.packages, declared.extra or declared.name) or declared.unavailable_check()


class StageFailed(Exception):
    """A stage raised; carries the stage and the original exception."""

    def __init__(self, stage: Stage, cause: BaseException):
        super().__init__(f"{stage.value}: {type(cause).__name__}: {first_line(cause)}")
        self.stage = stage
        self.cause = cause


def first_line(exc: BaseException, limit: int = 500) -> str:
    """The message's first line; when that line only announces what follows (it ends with a colon,
    as OpenVINO's "Check 'false' failed at <file>:<line>:" does), the lines after it joined to it."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return ""
    return (" ".join(lines) if lines[0].endswith(":") else lines[0])[:limit]


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
            self._add(stage, start)

    @contextmanager
    def counted_in(self, stage: Stage) -> Iterator[None]:
        """Times work that belongs to a stage that has ended (first divergence, after compare)
        into that stage's time; its exceptions stay its own, never the stage's failure."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._add(stage, start)

    def _add(self, stage: Stage, start: float) -> None:
        elapsed = time.perf_counter() - start
        self.timings[stage.value] = round(self.timings.get(stage.value, 0.0) + elapsed, 4)
