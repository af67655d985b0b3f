"""What changed between two runs, cell by cell, and one table across several runs: the logic,
as values; :mod:`matrix.reporting.markdown` and :mod:`matrix.reporting.html` render it."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from matrix.reporting.tables import failure_key
from matrix.reporting.values import Chip, db, reproduce, short
from matrix.runs import Run
from matrix.vocabulary import FAILED, QUANTIZED, RANK, SURPRISES, Fidelity, Status

SQNR_TOLERANCE_DB = 1.0
CATEGORIES = {
    "status": "Status changes",
    "not_quantized": "Newly not quantized",
    "fidelity": "Fidelity to the simulation",
    "sqnr": "SQNR moves",
    "added": "Cells added",
    "gone": "Cells gone",
}
DIRECTIONS = ("regressed", "improved", "changed")


@dataclass(frozen=True)
class Change:
    """One cell that differs between two runs.

    ``category`` is one of :data:`CATEGORIES`; ``direction`` is ``regressed``, ``improved`` or ``changed``
    (a move that has no rank: to or from ``unavailable`` or ``error``, or a failure moving stage).
    """

    case_id: str
    category: str
    direction: str
    base: dict | None
    new: dict | None

    @property
    def sqnr_delta(self) -> float | None:
        before, after = sqnr(self.base), sqnr(self.new)
        return None if before is None or after is None else after - before


@dataclass(frozen=True)
class RunDiff:
    base: Run
    new: Run
    changes: list[Change]
    unchanged: int
    tolerance: float

    @property
    def regressed(self) -> list[Change]:
        return [c for c in self.changes if c.direction == "regressed"]

    def of(self, category: str) -> list[Change]:
        return [c for c in self.changes if c.category == category]


def sqnr(record: dict | None) -> float | None:
    value = ((record or {}).get("metrics") or {}).get("sqnr_db")
    return float(value) if isinstance(value, (int, float)) else None


def outcome(record: dict | None) -> Chip | str:
    """A cell's outcome in a few words: its status, where it failed, or its SQNR; ``·`` when absent."""
    if record is None:
        return "·"
    status = record["status"]
    if record.get("stage"):
        return Chip(status, f"at {record['stage']}: {record.get('error_type') or '?'}", word=True)
    value = sqnr(record)
    notes = [f"{db(value)} dB"] if value is not None and status != "not_quantized" else []
    if record.get("fidelity") == Fidelity.DEPARTS.value:
        notes.append("departs from its simulation")
    return Chip(status, ", ".join(notes), word=True)


def classify(base: dict | None, new: dict | None, tolerance: float) -> Change | None:
    """The change of one cell between two records, or None when it is the same within ``tolerance`` dB."""
    case_id = (new or base)["case_id"]
    if base is None:
        return Change(case_id, "added", "changed", None, new)
    if new is None:
        return Change(case_id, "gone", "changed", base, None)
    before, after = base["status"], new["status"]
    if before != after:
        if before in QUANTIZED and after == "not_quantized":
            return Change(case_id, "not_quantized", "regressed", base, new)
        return Change(case_id, "status", _direction(RANK.get(before), RANK.get(after)), base, new)
    if after in FAILED and (base.get("stage"), base.get("error_type")) != (new.get("stage"), new.get("error_type")):
        return Change(case_id, "status", "changed", base, new)
    if base.get("fidelity") and new.get("fidelity") and base["fidelity"] != new["fidelity"]:
        departs = new["fidelity"] == Fidelity.DEPARTS.value
        return Change(case_id, "fidelity", "regressed" if departs else "improved", base, new)
    change = Change(case_id, "sqnr", "changed", base, new)
    delta = change.sqnr_delta
    if delta is None or abs(delta) <= tolerance:
        return None
    return Change(case_id, "sqnr", "regressed" if delta < 0 else "improved", base, new)


def _direction(before: int | None, after: int | None) -> str:
    if before is None or after is None or before == after:
        return "changed"
    return "regressed" if after < before else "improved"


def diff_runs(base: Run, new: Run, tolerance: float = SQNR_TOLERANCE_DB) -> RunDiff:
    old, current = base.by_case(), new.by_case()
    changes, unchanged = [], 0
    for case_id in sorted(set(old) | set(current)):
        change = classify(old.get(case_id), current.get(case_id), tolerance)
        if change is None:
            unchanged += 1
        else:
            changes.append(change)
    return RunDiff(base, new, changes, unchanged, tolerance)


def verdict(diff: RunDiff) -> tuple[str, str]:
    """The diff's verdict in two parts, for a renderer to emphasize the first: what regressed (or that
    nothing did), and the count of each direction."""
    counts = {d: sum(c.direction == d for c in diff.changes) for d in DIRECTIONS}
    summary = ", ".join(f"{n} {d}" for d, n in counts.items())
    regressed = counts["regressed"]
    return (f"{regressed} {'cell' if regressed == 1 else 'cells'} regressed" if regressed else "No regression",
            summary)


def versions(runs: list[Run]) -> pd.DataFrame:
    """Environment rows (label, date, commit, python, packages), one column per run; every package any
    of the runs recorded."""
    fields = {
        "label": lambda e: e.get("label"), "date": lambda e: e.get("date"),
        "suite commit": lambda e: (e.get("suite_commit") or "")[:12] or None,
        "python": lambda e: e.get("python"), "platform": lambda e: e.get("platform"), "cpu": lambda e: e.get("cpu"),
        # the instruction sets that decide which int8 kernels run: runs on different CPUs differ by them
        "cpu flags": lambda e: " ".join(e.get("cpu_flags") or []),
    }
    packages = dict.fromkeys(p for run in runs for p in (run.env.get("versions") or {}))
    fields.update({p: (lambda e, p=p: (e.get("versions") or {}).get(p)) for p in packages})
    names = column_names(runs)
    rows = []
    for name, read in fields.items():
        values = [read(run.env) or "" for run in runs]
        if any(values):
            rows.append({"": name, **dict(zip(names, values))})
    return pd.DataFrame(rows)


def column_names(runs: list[Run]) -> list[str]:
    """A column name per run: its name, numbered where two runs share one."""
    names = [run.name for run in runs]
    return [name if names.count(name) == 1 else f"{name} [{i + 1}]" for i, name in enumerate(names)]


def _change_row(change: Change) -> dict:
    row = {"cell": change.case_id, "direction": change.direction, "base": outcome(change.base),
           "new": outcome(change.new)}
    error = (change.new or {}).get("error_message")
    if change.category == "status" and error:
        row["new error"] = short(error, 120)
    if change.category == "sqnr":
        row["change dB"] = f"{change.sqnr_delta:+.1f}"
    if change.direction == "regressed":
        row["reproduce"] = reproduce((change.new or {}).get("nodeid"))
    return row


def change_table(changes: list[Change]) -> pd.DataFrame:
    return pd.DataFrame([_change_row(c) for c in changes]).fillna("")


def compare_runs(runs: list[Run], tolerance: float = SQNR_TOLERANCE_DB) -> pd.DataFrame:
    """One row per cell, one column per run; ``differs`` marks the rows where the runs disagree."""
    found = [run.by_case() for run in runs]
    names = column_names(runs)
    rows = []
    for case_id in sorted(set().union(*found)):
        records = [table.get(case_id) for table in found]
        row = {"differs": _differs(records, tolerance), "cell": case_id}
        row.update({names[i]: outcome(r) for i, r in enumerate(records)})
        rows.append(row)
    return pd.DataFrame(rows)


def _differs(records: list[dict | None], tolerance: float) -> bool:
    first = records[0]
    return any((first is None) != (other is None) or (first is not None and classify(first, other, tolerance))
               for other in records[1:])


def signature(record: dict | None) -> str:
    """What a cell that did not pass ran into: the stage, the exception type and the masked message,
    or the status and its reason; empty for a pass or an absent cell."""
    if record is None or record["status"] == Status.PASS.value:
        return ""
    return ": ".join(w for w in failure_key(record, limit=200) if w)


def status_differences(runs: list[Run]) -> pd.DataFrame:
    """The cells whose status is not the same in every run, in groups of one backend, one status per run
    and one signature: what the runs that part from the first one ran into (or, where those passed, what
    the first one did). ``unexplained`` counts the group's cells that some run judged worse, better or
    broken against the expectations of its own versions; ``entry`` is the reason of the entry that explains
    the status of one of them (a cell of a run that parts from the first, where there is one)."""
    found = [run.by_case() for run in runs]
    names = column_names(runs)
    groups: dict[tuple, list[tuple[str, list[dict]]]] = {}  # key -> (cell, its records in the runs that have it)
    for case_id in sorted(set().union(*found)):
        records = [table.get(case_id) for table in found]
        statuses = tuple(r["status"] if r else "·" for r in records)
        if len(set(statuses)) == 1:
            continue
        parting = [r for r, s in zip(records, statuses) if s != statuses[0]]
        sig = " / ".join(dict.fromkeys(x for x in map(signature, parting) if x)) or signature(records[0])
        present = [r for r in records if r]
        groups.setdefault((present[0]["backend"], statuses, sig), []).append((case_id, present, parting))
    rows = []
    for (backend, statuses, sig), members in groups.items():
        cells = [case_id for case_id, _, _ in members]
        records = [r for _, present, _ in members for r in present]
        # The entry that explains a status, where one does ("known"), those of the runs that part first.
        ordered = [r for _, _, parting in members for r in parting if r] + records
        reasons = [(r.get("expected") or {}).get("reason") for r in ordered if r.get("verdict") == "known"]
        shown = {name: Chip(s, "", word=True) if s != "·" else s for name, s in zip(names, statuses)}
        rows.append({"backend": backend, **shown, "signature": sig, "cells": len(cells),
                     "unexplained": len({r["case_id"] for r in records if r.get("verdict") in SURPRISES}),
                     "examples": ", ".join(cells[:3]) + (f" (+{len(cells) - 3})" if len(cells) > 3 else ""),
                     "entry": short(next((x for x in reasons if x), ""), 200)})
    columns = ["backend", *names, "signature", "cells", "unexplained", "examples", "entry"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["backend", "cells"], ascending=[True, False], kind="stable").reset_index(drop=True)
