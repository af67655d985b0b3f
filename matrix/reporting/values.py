"""What a report table's cells hold: plain values (text, numbers) and a few of the suite's own,
so each renderer shows them its own way and none re-reads another's output."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from matrix.cell import SQNR_CEILING_DB
from matrix.vocabulary import NOT_APPLICABLE, STATUSES


@dataclass(frozen=True)
class Tally:
    """The statuses of a group of cells: passing over applicable ones, and how many ended in each
    other status. ``rated`` tallies show the share that passes (the mode-support table's square);
    ``link`` is an anchor of the report the tally leads to; ``cells`` are the rows of the run's frame
    it counts (the HTML report recounts them under its filters)."""

    statuses: tuple[str, ...]
    rated: bool = False
    link: str | None = None
    cells: tuple[int, ...] = ()

    @classmethod
    def of(cls, statuses: Iterable[str], rated: bool = False, link: str | None = None,
           cells: Iterable[int] = ()) -> Tally:
        return cls(tuple(statuses), rated, link, tuple(cells))

    @property
    def counts(self) -> Counter[str]:
        return Counter(self.statuses)

    @property
    def applicable(self) -> int:
        return sum(1 for s in self.statuses if s not in NOT_APPLICABLE)

    @property
    def passed(self) -> int:
        return sum(1 for s in self.statuses if s == "pass")

    def others(self, include_pass: bool = False) -> list[tuple[str, int]]:
        """(status, count) for every status present, in the vocabulary's order."""
        counts = self.counts
        return [(s, counts[s]) for s in STATUSES if counts.get(s) and (include_pass or s != "pass")]


@dataclass(frozen=True)
class Chip:
    """One cell's outcome: its status, shown by symbol (and by name with ``word``), and a note
    (its SQNR, the stage where it failed, an error); ``cell`` is its row in the run's frame."""

    status: str
    note: str = ""
    word: bool = False
    cell: int | None = None
    pays: str = ""  # its speed and size against float on its backend, in words (per-model table)


@dataclass(frozen=True)
class Chips:
    """The outcomes of several cells in one table cell (one per qspec, one per model)."""

    chips: tuple[Chip, ...]

    @property
    def statuses(self) -> tuple[str, ...]:
        return tuple(c.status for c in self.chips)


@dataclass(frozen=True)
class Command:
    """A command a reader runs, such as the one that reruns a cell."""

    text: str


@dataclass(frozen=True)
class NoPath:
    """A combination with no code path: not a cell."""


NO_PATH = NoPath()


def db(value: float) -> str:
    """SQNR for people: the ceiling that stands for identical outputs reads as infinity."""
    return "∞" if value >= SQNR_CEILING_DB else f"{value:.1f}"


def speed(speedup: object, low: object = None, high: object = None) -> str:
    """A speedup over float in words: "1.3× faster", "1.8× slower", or "same speed" when its
    spread (the timed pairs' ratios from the 10th to the 90th percentile) holds 1."""
    if missing(speedup):
        return ""
    if not missing(low) and not missing(high) and low <= 1.0 <= high:
        return "same speed"
    return f"{speedup:.2f}× faster" if speedup >= 1 else f"{1 / speedup:.2f}× slower"


def size(compression: object) -> str:
    """A compression ratio (float bytes over quantized bytes) in words."""
    if missing(compression):
        return ""
    if abs(compression - 1) < 0.005:
        return "same size"
    return f"{compression:.2f}× smaller" if compression > 1 else f"{1 / compression:.2f}× larger"


def kilobytes(count: object) -> str:
    return "" if missing(count) else f"{count / 1024:.1f} KB"


def missing(value: object) -> bool:
    """A value a record does not have (None, or pandas's NaN for it)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def short(text: object, limit: int = 160) -> str:
    """A text on one line and at most ``limit`` characters."""
    text = "" if missing(text) else str(text)
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def reproduce(nodeid: object) -> Command | str:
    """The command that reruns one cell alone (empty when the record has no node id)."""
    return Command(f"pytest '{nodeid}'") if isinstance(nodeid, str) and nodeid else ""


def ordered(values: Iterable, order: Iterable[str] | None = None) -> list[str]:
    """The distinct values present, those named in ``order`` first and in its order."""
    present = list(dict.fromkeys(v for v in values if not missing(v)))
    order = list(order or ())
    return [v for v in order if v in present] + [v for v in present if v not in order]
