"""Expected outcomes as data (``expectations.toml``), and the verdict of a cell.

Two kinds of entry, both keyed by case-id patterns:

* ``[[claim]]``: what a backend's own documentation says of a combination, with
  the page it says it on. It sets the expected status unless an observation
  overrides it, and reaches every record as ``documented``.
* ``[[expect]]``: an outcome known from runs or upstream reports, with the
  reason, the source, optionally the failing stage, an error signature, the
  package versions it holds for, CPU features the machine must lack
  (``cpu_lacks``), the metrics an inaccurate cell is over (``over``), and
  ``at_worst`` for a cause that strikes depending on the data (a better
  outcome is then as expected too), and ``modules``: PyTorch module types of
  which the cell's model must hold one for the cause to be there (an
  ``nn.Linear``, say, subclasses included; ``=Linear`` an ``nn.Linear`` itself,
  for a cause that keys on the exact type) and ``lacks_modules``: types of which
  it must hold none (a cause that is an absence), so an entry holds on any model
  with the cause, a user's included. An entry may speak of the status (against
  float), of the ``fidelity`` (``departs``: the kernels leave the mode's own
  simulation), or of both.

A cell with no entry is expected to pass, faithful to its simulation; a float cell (a scheme
that runs no quantizer) with no entry, to hold no quantized op (``not_quantized``), faithful to
PyTorch's float output.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from matrix.records import cpu_flags
from matrix.tomlfile import load_toml
from matrix.vocabulary import (
    ACCURACY_METRICS,
    FIDELITIES,
    FLOAT_CELL,
    MATCHES_NO_CELL,
    RANK,
    SHADOWED,
    STATUSES,
    SURPRISES,
    Fidelity,
    Stage,
    Status,
    Verdict,
)

PATH = Path(__file__).with_name("expectations.toml")
CLAIM_KEYS = {"cases", "status", "claim", "source"}
EXPECT_KEYS = {"cases", "status", "reason", "source", "stage", "error_type", "error_match", "versions", "cpu_lacks",
               "over", "at_worst", "fidelity", "modules", "lacks_modules", "weights_under"}
# Before a module type in ``modules``: that type itself, not a subclass of it.
EXACT = "="
# The class names of a cell's model's modules (torch's own classes, with their bases), made on demand.
ModuleTypes = Callable[[], frozenset[str]]
# The element count of the largest weight of a cell's model's compute layers, made on demand.
LargestWeight = Callable[[], int]
# The metrics an inaccurate cell can be over (the record's ``violations`` the status is judged by).
METRICS = ACCURACY_METRICS


class ExpectationError(ValueError):
    pass


@dataclass(frozen=True)
class Entry:
    kind: str
    index: int
    cases: tuple[str, ...]
    status: str | None  # None: the entry speaks of the fidelity only
    text: str
    source: str
    stage: str | None = None
    error_type: str | None = None
    error_match: re.Pattern | None = None
    versions: dict[str, SpecifierSet] = field(default_factory=dict)
    # CPU features (as /proc/cpuinfo names them) of which this machine must have none: a kernel's cause.
    cpu_lacks: tuple[str, ...] = ()
    # For an inaccurate cell: the metrics over their limits, exactly (none other may be).
    over: tuple[str, ...] = ()
    # The cause can happen, depending on the data: ``status`` is the worst expected, a better one is as expected.
    at_worst: bool = False
    # Fidelity to the simulation the cause brings about (Fidelity.DEPARTS), or None.
    fidelity: str | None = None
    # torch.nn module types of which the cell's model must hold one (subclasses included).
    modules: tuple[str, ...] = ()
    # torch.nn module types of which the cell's model must hold none.
    lacks_modules: tuple[str, ...] = ()
    # The cell's model's largest weight of a compute layer (linear, convolution, recurrent,
    # attention) must have fewer elements than this (a converter that skips small weights).
    weights_under: int | None = None

    @property
    def label(self) -> str:
        return f"[[{self.kind}]] #{self.index + 1} {list(self.cases)}"

    @functools.cached_property
    def _pattern(self) -> re.Pattern:
        """The entry's glob patterns as one regular expression (fnmatch's own translation)."""
        return re.compile("|".join(f"(?:{fnmatch.translate(pattern)})" for pattern in self.cases))

    def names(self, case_id: str, claimable: bool) -> bool:
        """Whether the entry's patterns (and, for a docs claim, ``claimable``) take the cell, before
        any condition on the model's module types."""
        return (self.kind != "claim" or claimable) and self._pattern.match(case_id) is not None

    def matches(self, case_id: str, claimable: bool, module_types: ModuleTypes | None = None,
                largest_weight: LargestWeight | None = None) -> bool:
        """Whether the entry speaks of a cell; a docs claim only of a ``claimable`` one
        (see :meth:`Expectations.lookup`); an entry with ``modules`` only of a cell whose model
        holds one of them, or with ``lacks_modules`` none (``module_types``; none known: the
        entry does not match); with ``weights_under``, only of a model whose compute layers'
        weights are all smaller (``largest_weight``; none known: it does not match)."""
        if not self.names(case_id, claimable):
            return False
        if self.weights_under is not None and (largest_weight is None or largest_weight() >= self.weights_under):
            return False
        if not (self.modules or self.lacks_modules):
            return True
        if module_types is None:
            return False
        held = module_types()
        return (not self.modules or bool(set(self.modules) & held)) and not set(self.lacks_modules) & held

    def holds_here(self, installed: dict[str, str | None], cpu: frozenset[str] = frozenset()) -> bool:
        """Whether the entry holds in this environment: its package versions, and a CPU known to lack
        every feature of ``cpu_lacks`` (``cpu``: this machine's feature flags; empty when unknown)."""
        for package, specifier in self.versions.items():
            version = installed.get(package)
            if version is None or Version(version) not in specifier:
                return False
        return not self.cpu_lacks or (bool(cpu) and not cpu & set(self.cpu_lacks))

    def as_dict(self) -> dict:
        found = {"status": self.status, "reason": self.text, "source": self.source}
        if self.fidelity:
            found["fidelity"] = self.fidelity
        if self.stage:
            found["stage"] = self.stage
        if self.error_type:
            found["error_type"] = self.error_type
        if self.over:
            found["over"] = list(self.over)
        if self.cpu_lacks:
            found["cpu_lacks"] = list(self.cpu_lacks)
        if self.at_worst:
            found["at_worst"] = True
        if self.modules:
            found["modules"] = list(self.modules)
        if self.lacks_modules:
            found["lacks_modules"] = list(self.lacks_modules)
        return found


@dataclass(frozen=True)
class Expectation:
    status: str
    reason: str | None
    entry: Entry | None
    claim: Entry | None
    # What is expected of the cell's fidelity to its simulation, and the entry that says so.
    fidelity: str = Fidelity.FAITHFUL.value
    fidelity_entry: Entry | None = None
    # Further causes (``at_worst`` entries) that match the cell beside ``entry``.
    causes: tuple[Entry, ...] = ()

    def of_float_cell(self) -> Expectation:
        """The expectation of a float cell (a scheme that runs no quantizer): with no entry of its
        own, what the float scheme gives, no quantized op (``not_quantized``) and faithful to
        PyTorch's float output."""
        if self.entry is not None:
            return self
        return dataclasses.replace(self, status=Status.NOT_QUANTIZED.value, reason=FLOAT_CELL)

    def explaining(self, record: dict) -> Expectation:
        """This expectation, or, when the record shows the outcome and signature of one of the further
        causes instead of the first one's, the expectation of that cause."""
        if record["status"] == self.status and _signature_mismatch(record, self.entry) is None:
            return self
        for cause in self.causes:
            if cause.status == record["status"] and _signature_mismatch(record, cause) is None:
                return dataclasses.replace(self, status=cause.status, reason=cause.text, entry=cause, causes=())
        return self


class Expectations:
    def __init__(self, entries: list[Entry], path: Path = PATH, cpu: frozenset[str] | None = None):
        self.entries = entries
        self.path = path
        self.cpu = cpu_flags() if cpu is None else cpu
        self._installed: dict[str, str | None] = {}

    @classmethod
    def load(cls, path: Path = PATH, axis_values: dict[str, Iterable[str]] | None = None) -> Expectations:
        """The entries of ``path``; with ``axis_values`` (each axis's registered names), every
        part of a case pattern must name one of them (see :func:`_check_axis_values`)."""
        table = load_toml(path, ExpectationError)
        unknown = set(table) - {"claim", "expect"}
        if unknown:
            raise ExpectationError(f"{path}: unknown tables {sorted(unknown)} (valid: claim, expect)")
        entries = [_entry(path, "claim", i, raw) for i, raw in enumerate(table.get("claim", []))]
        entries += [_entry(path, "expect", i, raw) for i, raw in enumerate(table.get("expect", []))]
        if axis_values is not None:
            known = {name for names in axis_values.values() for name in names}
            axes = ", ".join(axis.rstrip("s") for axis in axis_values)
            for entry in entries:
                _check_axis_values(path, entry, known, axes)
        return cls(entries, path)

    def _version(self, package: str) -> str | None:
        if package not in self._installed:
            try:
                self._installed[package] = metadata.version(package)
            except metadata.PackageNotFoundError:
                self._installed[package] = None
        return self._installed[package]

    def _matching(self, kind: str, case_id: str, claimable: bool, at_worst: bool = False,
                  about: str = "status", module_types: ModuleTypes | None = None,
                  largest_weight: LargestWeight | None = None) -> Iterator[Entry]:
        for entry in self.entries:
            if (entry.kind == kind and entry.at_worst == at_worst and getattr(entry, about) is not None
                    and entry.matches(case_id, claimable, module_types, largest_weight)):
                installed = {p: self._version(p) for p in entry.versions}
                if entry.holds_here(installed, self.cpu):
                    yield entry

    def lookup(self, case_id: str, claimable: bool, module_types: ModuleTypes | None = None,
               largest_weight: LargestWeight | None = None) -> Expectation:
        """What is expected of a cell. ``claimable``: the cell is one PyTorch's quantization page
        speaks of (one of its engines, with their default qconfig), so its docs claims apply;
        ``module_types``: what its model is made of, for the entries that name module types;
        ``largest_weight``: its compute layers' largest weight, for ``weights_under``."""
        matching = functools.partial(self._matching, case_id=case_id, claimable=claimable, module_types=module_types,
                                     largest_weight=largest_weight)

        def first(*args, **kwargs) -> Entry | None:
            return next(matching(*args, **kwargs), None)

        claim = first("claim")
        entry = first("expect") or claim
        # Causes that strike depending on the data or the model's code: the first stands for a cell
        # otherwise expected to pass; the record shows which one, if any, struck (a trace that stops
        # at capture comes before the export failure expected of the cell).
        causes = tuple(matching("expect", at_worst=True))
        if causes and (entry is None or entry.status == Status.PASS.value):
            entry, causes = causes[0], causes[1:]
        departs = first("expect", about="fidelity") or first("expect", at_worst=True, about="fidelity")
        fidelity = {"fidelity": departs.fidelity, "fidelity_entry": departs} if departs else {}
        if entry is None:
            return Expectation(Status.PASS.value, None, None, None, **fidelity)
        return Expectation(entry.status, entry.text, entry, claim, **fidelity, causes=causes)

    def unused(self, cells: Iterable[tuple]) -> list[tuple[Entry, str]]:
        """Entries no cell's expectation comes from (cells as ``(case_id, claimable, module_types,
        largest_weight)``, the last ones optional),
        each with why: it matches none of the cells, or
        on every cell it matches an earlier entry of its kind, under the same conditions, speaks
        first of what it speaks of (the status, the fidelity); ``at_worst`` entries are all consulted."""
        matched: set[int] = set()
        used: set[int] = set()
        for cell in cells:
            named = [i for i, entry in enumerate(self.entries) if entry.names(*cell[:2])]
            if used.issuperset(named):
                continue  # nothing left to learn here; a model's module types are built only when needed
            found = [i for i in named if self.entries[i].matches(*cell)]
            matched.update(found)
            for position, i in enumerate(found):
                entry = self.entries[i]
                earlier = [self.entries[j] for j in found[:position]]
                if entry.at_worst or any(not any(_speaks_first(other, entry, about) for other in earlier)
                                         for about in _abouts(entry)):
                    used.add(i)
        return [(entry, SHADOWED if i in matched else MATCHES_NO_CELL)
                for i, entry in enumerate(self.entries) if i not in used]


def _abouts(entry: Entry) -> tuple[str, ...]:
    """What an entry's expectation is of: the status, the fidelity, or both."""
    return tuple(about for about in ("status", "fidelity") if getattr(entry, about) is not None)


def _speaks_first(earlier: Entry, entry: Entry, about: str) -> bool:
    """Whether ``earlier``, matching the same cell, takes ``about`` from ``entry`` wherever ``entry``
    holds (no narrower versions or CPU conditions than ``entry``'s)."""
    return (earlier.kind == entry.kind and not earlier.at_worst and getattr(earlier, about) is not None
            and (not earlier.versions or earlier.versions == entry.versions)
            and (not earlier.cpu_lacks or earlier.cpu_lacks == entry.cpu_lacks))


def _entry(path: Path, kind: str, index: int, raw: object) -> Entry:
    where = f"{path}: [[{kind}]] #{index + 1}"
    if not isinstance(raw, dict):
        raise ExpectationError(f"{where}: must be a table")
    allowed = CLAIM_KEYS if kind == "claim" else EXPECT_KEYS
    unknown = set(raw) - allowed
    if unknown:
        raise ExpectationError(f"{where}: unknown keys {sorted(unknown)} (valid: {sorted(allowed)})")
    text_key = "claim" if kind == "claim" else "reason"
    for key in ("cases", text_key, "source"):
        if not raw.get(key):
            raise ExpectationError(f"{where}: {key!r} is required")
    if not raw.get("status") and not raw.get("fidelity"):
        raise ExpectationError(f"{where}: 'status' is required" + ("" if kind == "claim" else " (or 'fidelity')"))
    if raw.get("fidelity") is not None and raw["fidelity"] not in FIDELITIES:
        raise ExpectationError(f"{where}: unknown fidelity {raw['fidelity']!r} (valid: {list(FIDELITIES)})")
    cases = raw["cases"]
    if isinstance(cases, str):
        cases = [cases]
    if not isinstance(cases, list) or not all(isinstance(c, str) for c in cases):
        raise ExpectationError(f"{where}: 'cases' must be a pattern or a list of patterns")
    stages = [stage.value for stage in Stage]
    if raw.get("stage") is not None and raw["stage"] not in stages:
        raise ExpectationError(f"{where}: unknown stage {raw['stage']!r} (valid: {stages})")
    if raw.get("status") is not None and raw["status"] not in STATUSES:
        raise ExpectationError(f"{where}: unknown status {raw['status']!r} (valid: {sorted(STATUSES)})")
    try:
        pattern = re.compile(raw["error_match"]) if raw.get("error_match") else None
    except re.error as exc:
        raise ExpectationError(f"{where}: error_match is not a regular expression: {exc}") from exc
    try:
        versions = {p: SpecifierSet(s) for p, s in raw.get("versions", {}).items()}
    except (InvalidSpecifier, AttributeError) as exc:
        raise ExpectationError(f"{where}: bad versions: {exc}") from exc
    lists = {}
    for key in ("cpu_lacks", "over", "modules", "lacks_modules"):
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ExpectationError(f"{where}: {key!r} must be a list of names")
        lists[key] = tuple(value)
    unknown_metrics = [m for m in lists["over"] if m not in METRICS]
    if unknown_metrics:
        raise ExpectationError(f"{where}: 'over' names unknown metrics {unknown_metrics} (valid: {list(METRICS)})")
    if lists["over"] and raw.get("status") != Status.INACCURATE.value:
        raise ExpectationError(f"{where}: 'over' is for status 'inaccurate', not {raw.get('status')!r}")
    for key in ("modules", "lacks_modules"):
        unknown_modules = [m for m in lists[key] if not _torch_module_type(m)]
        if unknown_modules:
            raise ExpectationError(f"{where}: {key!r} names no torch.nn module type: {unknown_modules}")
    if not isinstance(raw.get("at_worst", False), bool):
        raise ExpectationError(f"{where}: 'at_worst' must be true or false")
    weights_under = raw.get("weights_under")
    if weights_under is not None and (isinstance(weights_under, bool) or not isinstance(weights_under, int)
                                      or weights_under < 1):
        raise ExpectationError(f"{where}: 'weights_under' must be a positive whole number of elements")
    return Entry(
        kind=kind, index=index, cases=tuple(cases), status=raw.get("status"), text=raw[text_key],
        source=raw["source"], stage=raw.get("stage"), error_type=raw.get("error_type"),
        error_match=pattern, versions=versions, **lists, at_worst=raw.get("at_worst", False),
        fidelity=raw.get("fidelity"), weights_under=weights_under,
    )


def _check_axis_values(path: Path, entry: Entry, known: set[str], axes: str) -> None:
    """Each hyphen-separated part of each case pattern names a value of some axis (``known``, the
    values of the ``axes``; a part with wildcards matches one): a misspelt mode or a model that is
    not registered is a usage error naming the entry, not an entry that silently matches nothing."""
    for pattern in entry.cases:
        for part in pattern.split("-"):
            if part.strip("*") and not (fnmatch.filter(known, part) if set(part) & set("*?[") else part in known):
                raise ExpectationError(
                    f"{path}: [[{entry.kind}]] #{entry.index + 1}: 'cases' pattern {pattern!r}: {part!r} names no "
                    f"{axes} (the registered values of each axis)")


def _torch_module_type(name: str) -> bool:
    import torch

    found = getattr(torch.nn, name.removeprefix(EXACT), None)
    return isinstance(found, type) and issubclass(found, torch.nn.Module)


@dataclass(frozen=True)
class Judged:
    """How an observed record compares with its expectation, and why."""

    verdict: Verdict
    message: str


def verdict(record: dict, expected: Expectation) -> Judged:
    """The cell's verdict: its status's against the expected one, unless that meets its
    expectation and the fidelity does not (a departure nobody explained, or one that is gone)."""
    judged = status_verdict(record, expected)
    fidelity = fidelity_verdict(record, expected)
    if judged.verdict is Verdict.WORSE and fidelity is not None and fidelity.verdict is Verdict.KNOWN:
        caused = _inaccurate_by_departure(record, expected)
        if caused:
            return Judged(Verdict.KNOWN, f"{caused}: {fidelity.message}")
    if judged.verdict not in SURPRISES and fidelity is not None and fidelity.verdict in SURPRISES:
        return Judged(fidelity.verdict, f"{judged.message}; but {fidelity.message}")
    return judged


def _inaccurate_by_departure(record: dict, expected: Expectation) -> str | None:
    """Why a cell judged worse, inaccurate where a pass was left expected (none, or an at-worst cause
    that did not strike), is so by its kernels' known departure from the simulation: the simulation
    is within every limit the cell is over; None when it is not, or the cell is not such a cell (an
    inaccurate cell expected inaccurate is worse only by its signature, which no departure explains)."""
    if record["status"] != Status.INACCURATE.value or expected.status == Status.INACCURATE.value:
        return None
    over = {v["metric"] for v in record.get("violations") or []} - {"lsb_err_vs_sim"}
    limit, simulated = (record.get("limits") or {}).get("min_sqnr_db"), (record.get("metrics") or {}).get("sqnr_sim_db")
    if over != {"sqnr_db"} or limit is None or simulated is None or simulated < limit:
        return None
    return (f"inaccurate ({record['metrics']['sqnr_db']:.1f} dB) by its kernels' departure from the simulation, "
            f"which is within the limit ({simulated:.1f} dB >= {limit:g})")


def fidelity_verdict(record: dict, expected: Expectation) -> Judged | None:
    """A quantized cell's fidelity against the expected one; None for a cell without one. A
    departure from a stand-in simulation nobody expected is ``unconfirmed``, not the backend's."""
    observed = record.get("fidelity")
    if observed is None:
        return None
    entry = expected.fidelity_entry
    found = record.get("fidelity_reason") or observed
    if observed == expected.fidelity:
        met = Verdict.AS_EXPECTED if observed == Fidelity.FAITHFUL.value else Verdict.KNOWN
        return Judged(met, entry.text if entry else found)
    if observed == Fidelity.FAITHFUL.value:
        if entry is not None and entry.at_worst:
            return Judged(Verdict.AS_EXPECTED, f"faithful; at worst departs: {entry.text}")
        return Judged(Verdict.BETTER, f"expected to depart from its simulation ({entry.text if entry else ''}), "
                                      "observed faithful")
    if record.get("simulation_stand_in"):
        return Judged(Verdict.UNCONFIRMED, f"departs from a stand-in simulation ({found}): "
                                           f"{record.get('simulation') or 'a re-implementation of the recipe'}")
    return Judged(Verdict.WORSE, f"departs from its simulation: {found}")


def status_verdict(record: dict, expected: Expectation) -> Judged:
    observed = record["status"]
    if observed == Status.UNAVAILABLE.value:
        return Judged(Verdict.UNAVAILABLE, record.get("reason") or "unavailable")
    if observed == Status.ERROR.value and expected.status != Status.ERROR.value:
        return Judged(Verdict.BROKEN, f"case or harness error at {record.get('stage')}: "
                                      f"{record.get('error_type')}: {record.get('error_message')}")
    found = _describe(record)
    if observed == expected.status:
        mismatch = _signature_mismatch(record, expected.entry)
        if mismatch:
            return Judged(Verdict.WORSE, f"{found}; expected {mismatch}")
        return Judged(_met(observed, expected), expected.reason or found)
    better = RANK.get(observed, -1) > RANK.get(expected.status, -1)
    if better and expected.entry is not None and expected.entry.at_worst:
        # The cause did not strike: what is left expected is a pass. A better outcome short of it
        # has another cause, which this entry does not explain.
        if observed == Status.PASS.value:
            return Judged(Verdict.AS_EXPECTED, f"{found}; at worst {expected.status}: {expected.reason}")
        return Judged(Verdict.WORSE, f"{found}: unexplained (the one cause known here, at worst "
                                     f"{expected.status}, did not strike: {expected.reason})")
    return Judged(Verdict.BETTER if better else Verdict.WORSE, f"expected {expected.status}, observed {found}")


def _met(observed: str, expected: Expectation) -> Verdict:
    """The verdict of an outcome that meets its expectation: a pass, or the outcome its scheme gives
    with no entry (a float cell's no quantized op), else a known non-pass."""
    default = expected.entry is None and expected.claim is None
    return Verdict.AS_EXPECTED if observed == Status.PASS.value or default else Verdict.KNOWN


def _describe(record: dict) -> str:
    if record.get("stage"):
        return (f"{record['status']} at {record['stage']}: "
                f"{record.get('error_type')}: {record.get('error_message')}")
    return f"{record['status']}" + (f" ({record['reason']})" if record.get("reason") else "")


def _signature_mismatch(record: dict, entry: Entry | None) -> str | None:
    if entry is None:
        return None
    if entry.stage and record.get("stage") != entry.stage:
        return f"stage {entry.stage}"
    if entry.error_type and record.get("error_type") != entry.error_type:
        return f"error type {entry.error_type}"
    if entry.error_match and not entry.error_match.search(record.get("error_message") or ""):
        return f"an error matching {entry.error_match.pattern!r}"
    over = {v["metric"] for v in record.get("violations") or [] if v["metric"] in METRICS}
    if entry.over and over != set(entry.over):
        return f"only {', '.join(entry.over)} over its limit"
    return None
