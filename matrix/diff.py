"""What changed between two runs, cell by cell, and one table across several runs. Records in, no pytest."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from matrix.cell import RANK, Status
from matrix.report import ENV_PACKAGES, SYMBOLS, _db, _short, reproduce
from matrix.runs import Run

SQNR_TOLERANCE_DB = 1.0
QUANTIZED = ("pass", "inaccurate")
FAILED = ("fail", "crash", "timeout", "error")
CATEGORIES = {
    "status": "Status changes",
    "not_quantized": "Newly not quantized",
    "sqnr": "SQNR moves",
    "added": "Cells added",
    "gone": "Cells gone",
}


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


def outcome(record: dict | None) -> str:
    """A cell's outcome in a few words: symbol, status, where it failed, or its SQNR."""
    if record is None:
        return "·"
    status = record["status"]
    text = f"{SYMBOLS.get(status, '')} {status}"
    if record.get("stage"):
        return f"{text} at {record['stage']}: {record.get('error_type') or '?'}"
    value = sqnr(record)
    return f"{text} {_db(value)} dB" if value is not None and status != "not_quantized" else text


def _rank(status: str) -> int | None:
    try:
        return RANK.get(Status(status))
    except ValueError:
        return None


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
        return Change(case_id, "status", _direction(_rank(before), _rank(after)), base, new)
    if after in FAILED and (base.get("stage"), base.get("error_type")) != (new.get("stage"), new.get("error_type")):
        return Change(case_id, "status", "changed", base, new)
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


def versions(runs: list[Run]) -> pd.DataFrame:
    """Environment rows (label, date, commit, python, packages), one column per run."""
    fields = {
        "label": lambda e: e.get("label"), "date": lambda e: e.get("date"),
        "suite commit": lambda e: (e.get("suite_commit") or "")[:12] or None,
        "python": lambda e: e.get("python"), "platform": lambda e: e.get("platform"), "cpu": lambda e: e.get("cpu"),
    }
    fields.update({p: (lambda e, p=p: (e.get("versions") or {}).get(p)) for p in ENV_PACKAGES})
    rows = []
    for name, read in fields.items():
        values = [read(run.env) or "" for run in runs]
        if any(values):
            rows.append({"": name, **{_column(runs, i): v for i, v in enumerate(values)}})
    return pd.DataFrame(rows)


def _column(runs: list[Run], i: int) -> str:
    names = [run.name for run in runs]
    name = names[i]
    return name if names.count(name) == 1 else f"{name} [{i + 1}]"


def _change_row(change: Change) -> dict:
    row = {"cell": change.case_id, "direction": change.direction, "base": outcome(change.base),
           "new": outcome(change.new)}
    error = (change.new or {}).get("error_message")
    if change.category == "status" and error:
        row["new error"] = _short(error, 120)
    if change.category == "sqnr":
        row["change dB"] = f"{change.sqnr_delta:+.1f}"
    if change.direction == "regressed":
        row["reproduce"] = f"`{reproduce((change.new or {}).get('nodeid'))}`"
    return row


def change_table(changes: list[Change]) -> pd.DataFrame:
    return pd.DataFrame([_change_row(c) for c in changes]).fillna("")


def render_diff_markdown(diff: RunDiff) -> str:
    lines = [f"# qmatrix diff: {diff.base.name} → {diff.new.name}", "", verdict_line(diff), "",
             "## Environments", "", versions([diff.base, diff.new]).to_markdown(index=False), "",
             f"{len(diff.base.records)} cells in {diff.base.path}, {len(diff.new.records)} in {diff.new.path}; "
             f"{diff.unchanged} unchanged (same status, SQNR within ±{diff.tolerance:g} dB)."]
    for category, title in CATEGORIES.items():
        changes = diff.of(category)
        suffix = f" beyond ±{diff.tolerance:g} dB" if category == "sqnr" else ""
        lines += ["", f"## {title}{suffix} ({len(changes)})", ""]
        lines.append(change_table(changes).to_markdown(index=False) if changes else "_none_")
    return "\n".join(lines) + "\n"


def verdict_line(diff: RunDiff) -> str:
    counts = {d: sum(c.direction == d for c in diff.changes) for d in ("regressed", "improved", "changed")}
    summary = ", ".join(f"{n} {d}" for d, n in counts.items())
    if counts["regressed"]:
        cells = "cell" if counts["regressed"] == 1 else "cells"
        return f"**{counts['regressed']} {cells} regressed** ({summary}); `qmatrix diff` exits 1."
    return f"**No regression** ({summary})."


def compare_runs(runs: list[Run], tolerance: float = SQNR_TOLERANCE_DB) -> pd.DataFrame:
    """One row per cell, one column per run; ``differs`` marks the rows where the runs disagree."""
    tables = [run.by_case() for run in runs]
    rows = []
    for case_id in sorted(set().union(*tables)):
        records = [table.get(case_id) for table in tables]
        row = {"differs": _differs(records, tolerance), "cell": case_id}
        row.update({_column(runs, i): outcome(r) for i, r in enumerate(records)})
        rows.append(row)
    return pd.DataFrame(rows)


def _differs(records: list[dict | None], tolerance: float) -> bool:
    first = records[0]
    return any((first is None) != (other is None) or (first is not None and classify(first, other, tolerance))
               for other in records[1:])


def render_compare_markdown(runs: list[Run], table: pd.DataFrame, tolerance: float = SQNR_TOLERANCE_DB) -> str:
    differing = int(table["differs"].sum()) if len(table) else 0
    shown = table.assign(differs=table["differs"].map({True: "≠", False: ""})) if len(table) else table
    return "\n".join([
        f"# qmatrix compare: {', '.join(_column(runs, i) for i in range(len(runs)))}", "",
        versions(runs).to_markdown(index=False), "",
        f"{len(table)} cells; **{differing} differ** between the runs (marked ≠: another status or stage, "
        f"SQNR apart by more than {tolerance:g} dB, or absent from a run: ·).", "",
        shown.to_markdown(index=False) if len(table) else "_no cells_",
    ]) + "\n"
