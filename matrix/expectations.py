"""Expected outcomes as data (``expectations.toml``), and the verdict of a cell.

Two kinds of entry, both keyed by case-id patterns:

* ``[[claim]]``: what a backend's own documentation says of a combination, with
  the page it says it on. It sets the expected status unless an observation
  overrides it, and reaches every record as ``documented``.
* ``[[expect]]``: an outcome known from runs or upstream reports, with the
  reason, the source, optionally the failing stage, an error signature and the
  package versions it holds for.

A cell with no entry is expected to pass.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from matrix.cell import RANK, Status
from matrix.tomlfile import load_toml

PATH = Path(__file__).with_name("expectations.toml")
STATUSES = {s.value for s in Status}
CLAIM_KEYS = {"cases", "status", "claim", "source"}
EXPECT_KEYS = {"cases", "status", "reason", "source", "stage", "error_type", "error_match", "versions"}


class ExpectationError(ValueError):
    pass


@dataclass(frozen=True)
class Entry:
    kind: str
    index: int
    cases: tuple[str, ...]
    status: str
    text: str
    source: str
    stage: str | None = None
    error_type: str | None = None
    error_match: re.Pattern | None = None
    versions: dict[str, SpecifierSet] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"[[{self.kind}]] #{self.index + 1} {list(self.cases)}"

    @functools.cached_property
    def _pattern(self) -> re.Pattern:
        """The entry's glob patterns as one regular expression (fnmatch's own translation)."""
        return re.compile("|".join(f"(?:{fnmatch.translate(pattern)})" for pattern in self.cases))

    def matches(self, case_id: str) -> bool:
        if self.kind == "claim" and not _claimable(case_id):
            return False
        return self._pattern.match(case_id) is not None

    def holds_here(self, installed: dict[str, str | None]) -> bool:
        for package, specifier in self.versions.items():
            version = installed.get(package)
            if version is None or Version(version) not in specifier:
                return False
        return True

    def as_dict(self) -> dict:
        found = {"status": self.status, "reason": self.text, "source": self.source}
        if self.stage:
            found["stage"] = self.stage
        if self.error_type:
            found["error_type"] = self.error_type
        return found


@dataclass(frozen=True)
class Expectation:
    status: str
    reason: str | None
    entry: Entry | None
    claim: Entry | None


class Expectations:
    def __init__(self, entries: list[Entry], path: Path = PATH):
        self.entries = entries
        self.path = path
        self._installed: dict[str, str | None] = {}

    @classmethod
    def load(cls, path: Path = PATH) -> Expectations:
        table = load_toml(path, ExpectationError)
        unknown = set(table) - {"claim", "expect"}
        if unknown:
            raise ExpectationError(f"{path}: unknown tables {sorted(unknown)} (valid: claim, expect)")
        entries = [_entry(path, "claim", i, raw) for i, raw in enumerate(table.get("claim", []))]
        entries += [_entry(path, "expect", i, raw) for i, raw in enumerate(table.get("expect", []))]
        return cls(entries, path)

    def _version(self, package: str) -> str | None:
        if package not in self._installed:
            try:
                self._installed[package] = metadata.version(package)
            except metadata.PackageNotFoundError:
                self._installed[package] = None
        return self._installed[package]

    def _first(self, kind: str, case_id: str) -> Entry | None:
        for entry in self.entries:
            if entry.kind == kind and entry.matches(case_id):
                installed = {p: self._version(p) for p in entry.versions}
                if entry.holds_here(installed):
                    return entry
        return None

    def lookup(self, case_id: str) -> Expectation:
        claim = self._first("claim", case_id)
        entry = self._first("expect", case_id) or claim
        if entry is None:
            return Expectation(Status.PASS.value, None, None, None)
        return Expectation(entry.status, entry.text, entry, claim)

    def stale(self, case_ids: Iterable[str]) -> list[Entry]:
        """Entries whose patterns match none of the given cases."""
        ids = list(case_ids)
        return [e for e in self.entries if not any(e.matches(i) for i in ids)]


# The backends a claim of PyTorch's quantization page speaks of: its own engines, with their
# default qconfigs. A claim matches only cells on these with the default qspec (a case id with
# four parts: model-mode-scheme-backend), whatever its patterns say.
CLAIM_BACKENDS = ("fbgemm", "x86", "qnnpack", "onednn")


def _claimable(case_id: str) -> bool:
    parts = case_id.split("-")
    return len(parts) == 4 and parts[3] in CLAIM_BACKENDS


def _entry(path: Path, kind: str, index: int, raw: object) -> Entry:
    where = f"{path}: [[{kind}]] #{index + 1}"
    if not isinstance(raw, dict):
        raise ExpectationError(f"{where}: must be a table")
    allowed = CLAIM_KEYS if kind == "claim" else EXPECT_KEYS
    unknown = set(raw) - allowed
    if unknown:
        raise ExpectationError(f"{where}: unknown keys {sorted(unknown)} (valid: {sorted(allowed)})")
    text_key = "claim" if kind == "claim" else "reason"
    for key in ("cases", "status", text_key, "source"):
        if not raw.get(key):
            raise ExpectationError(f"{where}: {key!r} is required")
    cases = raw["cases"]
    if isinstance(cases, str):
        cases = [cases]
    if not isinstance(cases, list) or not all(isinstance(c, str) for c in cases):
        raise ExpectationError(f"{where}: 'cases' must be a pattern or a list of patterns")
    if raw["status"] not in STATUSES:
        raise ExpectationError(f"{where}: unknown status {raw['status']!r} (valid: {sorted(STATUSES)})")
    try:
        pattern = re.compile(raw["error_match"]) if raw.get("error_match") else None
    except re.error as exc:
        raise ExpectationError(f"{where}: error_match is not a regular expression: {exc}") from exc
    try:
        versions = {p: SpecifierSet(s) for p, s in raw.get("versions", {}).items()}
    except (InvalidSpecifier, AttributeError) as exc:
        raise ExpectationError(f"{where}: bad versions: {exc}") from exc
    return Entry(
        kind=kind, index=index, cases=tuple(cases), status=raw["status"], text=raw[text_key],
        source=raw["source"], stage=raw.get("stage"), error_type=raw.get("error_type"),
        error_match=pattern, versions=versions,
    )


@dataclass(frozen=True)
class Verdict:
    """How an observed record compares with its expectation."""

    outcome: str  # "as_expected", "better", "worse", "unavailable", "broken"
    message: str


def verdict(record: dict, expected: Expectation) -> Verdict:
    observed = record["status"]
    if observed == Status.UNAVAILABLE.value:
        return Verdict("unavailable", record.get("reason") or "unavailable")
    if observed == Status.ERROR.value and expected.status != Status.ERROR.value:
        return Verdict("broken", f"case or harness error at {record.get('stage')}: "
                                 f"{record.get('error_type')}: {record.get('error_message')}")
    found = _describe(record)
    if observed == expected.status:
        mismatch = _signature_mismatch(record, expected.entry)
        if mismatch:
            return Verdict("worse", f"{found}; expected {mismatch}")
        return Verdict("as_expected", expected.reason or found)
    better = RANK.get(Status(observed), -1) > RANK.get(Status(expected.status), -1)
    return Verdict("better" if better else "worse", f"expected {expected.status}, observed {found}")


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
    return None
