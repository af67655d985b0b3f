"""Run folders as a whole: reading one, and merging shards or partial runs of one environment."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from matrix.records import RunError, read_environment, read_records, write_json_atomic

# Fields that say what a cell's outcome was; two records of one cell that differ in any are in conflict.
OUTCOME = ("status", "fidelity", "stage", "error_type")
# What must agree between runs for them to be one environment.
SAME_ENVIRONMENT = ("python", "versions")


@dataclass(frozen=True)
class Run:
    """One run folder's environment and records, each cell once."""

    path: Path
    env: dict
    records: list[dict]

    @property
    def name(self) -> str:
        return self.env.get("label") or self.path.name

    def by_case(self) -> dict[str, dict]:
        return {r["case_id"]: r for r in self.records}


@dataclass(frozen=True)
class Conflict:
    """Records of one cell that disagree on its outcome; ``kept`` is the one a merge keeps."""

    case_id: str
    kept: tuple[str, dict]
    dropped: list[tuple[str, dict]]

    def describe(self) -> str:
        def said(origin: tuple[str, dict]) -> str:
            run, record = origin
            stage = f" at {record['stage']}" if record.get("stage") else ""
            return f"{record['status']}{stage} in {run}"

        dropped = "; ".join(said(d) for d in self.dropped)
        return f"{self.case_id}: kept {said(self.kept)}, dropped {dropped}"


@dataclass
class Merged:
    env: dict
    records: list[dict]
    conflicts: list[Conflict] = field(default_factory=list)


def load_run(path: Path) -> Run:
    """Read a run folder; a cell recorded more than once keeps its last record."""
    records = read_records(path)
    env = read_environment(path)
    return Run(path, env, list({r["case_id"]: r for r in records}.values()))


def _outcome(record: dict) -> tuple:
    return tuple(record.get(key) for key in OUTCOME)


def _check_one_environment(runs: list[Run]) -> None:
    first = next((run for run in runs if run.env), None)
    if first is None:
        return
    for run in runs:
        if not run.env:
            continue
        for key in SAME_ENVIRONMENT:
            if run.env.get(key) != first.env.get(key):
                raise RunError(
                    f"{run.path / 'env.json'}: {key} differs from {first.path / 'env.json'}: merge joins shards "
                    "of one environment; use `qmatrix compare` for runs of different environments")


def merge_runs(runs: list[Run]) -> Merged:
    """One run from several of one environment.

    Where a cell was recorded more than once, the record of the newest run (by ``env.json`` date, then by
    position on the command line) is kept; duplicates that disagree on the outcome are returned as conflicts.
    """
    _check_one_environment(runs)
    order = sorted(range(len(runs)), key=lambda i: (runs[i].env.get("date") or "", i))
    seen: dict[str, list[tuple[str, dict]]] = {}
    for i in order:
        for record in runs[i].records:
            seen.setdefault(record["case_id"], []).append((str(runs[i].path), record))
    records, conflicts = [], []
    for case_id in sorted(seen):
        *older, kept = seen[case_id]
        records.append(kept[1])
        differing = [origin for origin in older if _outcome(origin[1]) != _outcome(kept[1])]
        if differing:
            conflicts.append(Conflict(case_id, kept, differing))
    return Merged(_merged_environment(runs, order, conflicts), records, conflicts)


def _merged_environment(runs: list[Run], order: list[int], conflicts: list[Conflict]) -> dict:
    env = dict(runs[order[-1]].env)
    env["merged_from"] = [{"run": str(run.path), "label": run.env.get("label"), "date": run.env.get("date"),
                           "cells": len(run.records)} for run in runs]
    env["merge_conflicts"] = [c.describe() for c in conflicts]
    env["stale_expectations"] = _common_stale(runs)
    env["model_source_errors"] = sorted({e for run in runs for e in run.env.get("model_source_errors") or []})
    return env


def _common_stale(runs: list[Run]) -> list[dict]:
    """An expectation is stale for the merged run only if every part found it stale."""
    lists = [run.env.get("stale_expectations") or [] for run in runs if run.env]
    if not lists:
        return []
    common = {json.dumps(s, sort_keys=True) for s in lists[0]}
    for stale in lists[1:]:
        common &= {json.dumps(s, sort_keys=True) for s in stale}
    return [json.loads(s) for s in sorted(common)]


def write_merged(merged: Merged, out: Path, label: str, command: str) -> Path:
    """Write the merged records and env.json to ``out``, which must not hold a run already."""
    if any(out.glob("cells*.jsonl")) or (out / "env.json").exists():
        raise RunError(f"{out}: already holds a run; merge into a new or empty folder (nothing was written)")
    out.mkdir(parents=True, exist_ok=True)
    target = out / "cells-merged.jsonl"
    tmp = out / f".cells-merged.jsonl.{os.getpid()}.tmp"
    tmp.write_text("".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in merged.records))
    os.replace(tmp, target)
    write_json_atomic(out / "env.json", {**merged.env, "label": label, "command": command})
    return out
