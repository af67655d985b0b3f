"""Thresholds and time limits as data (``thresholds.toml``), and the judgement of a quantized cell."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from matrix.tomlfile import load_toml
from matrix.vocabulary import Violation

PATH = Path(__file__).with_name("thresholds.toml")
KEYS = {"min_sqnr_db", "max_lsb_err_vs_sim", "max_accuracy_drop", "max_cell_seconds", "latency_seconds",
        "max_recompiled_layers"}
SECTIONS = {"defaults", "schemes", "backends", "kinds", "models"}
LAYERS = ("schemes", "backends", "kinds", "models")
# The limits a cell's metrics are judged by, kept in its record so a report never reads today's file.
JUDGED = ("min_sqnr_db", "max_lsb_err_vs_sim", "max_accuracy_drop")


class ThresholdError(ValueError):
    pass


@dataclass(frozen=True)
class Thresholds:
    table: dict

    @classmethod
    def load(cls, path: Path = PATH) -> Thresholds:
        table = load_toml(path, ThresholdError)
        validate(table, path)
        return cls(table)

    def for_cell(self, scheme: str, model: str, backend: str | None = None,
                 kind: str | None = None) -> dict[str, float]:
        merged = dict(self.table.get("defaults", {}))
        for layer, name in zip(LAYERS, (scheme, backend, kind, model)):
            merged.update(self.table.get(layer, {}).get(name, {}))
        return merged


def judge(metrics: dict[str, float], limits: dict[str, float]) -> list[Violation]:
    """What keeps these metrics from a pass under ``limits`` (:meth:`Thresholds.for_cell`); empty when within."""
    found = []
    sqnr = metrics.get("sqnr_db")
    if not _finite(sqnr) or sqnr < limits["min_sqnr_db"]:
        found.append(Violation("sqnr_db", sqnr, limits["min_sqnr_db"], "<"))
    lsb = metrics.get("lsb_err_vs_sim")
    if not _finite(lsb) or lsb > limits["max_lsb_err_vs_sim"]:
        found.append(Violation("lsb_err_vs_sim", lsb, limits["max_lsb_err_vs_sim"], ">"))
    if "accuracy" in metrics:
        drop = metrics["float_accuracy"] - metrics["accuracy"]
        if drop > limits["max_accuracy_drop"]:
            found.append(Violation("accuracy_drop", drop, limits["max_accuracy_drop"], ">"))
    return found


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def validate(table: dict, path: Path) -> None:
    for section in table:
        if section not in SECTIONS:
            raise ThresholdError(f"{path}: unknown section [{section}] (valid: {sorted(SECTIONS)})")
    blocks = [("defaults", table.get("defaults", {}))]
    for group in LAYERS:
        blocks += [(f"{group}.{name}", block) for name, block in table.get(group, {}).items()]
    for where, block in blocks:
        if not isinstance(block, dict):
            raise ThresholdError(f"{path}: [{where}] must be a table")
        for key, value in block.items():
            if key not in KEYS:
                raise ThresholdError(f"{path}: [{where}] unknown key {key!r} (valid: {sorted(KEYS)})")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ThresholdError(f"{path}: [{where}] {key} must be a finite number, not {value!r}")
            if key in ("max_cell_seconds", "latency_seconds") and value <= 0:
                raise ThresholdError(f"{path}: [{where}] {key} must be positive, not {value!r}")
    missing = KEYS - set(table.get("defaults", {}))
    if missing:
        raise ThresholdError(f"{path}: [defaults] lacks {sorted(missing)}")
