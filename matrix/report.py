"""Rendering a run's records as a Markdown report. Records in, text out: no pytest here."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from matrix.cell import SQNR_CEILING_DB
from matrix.records import read_environment, read_records
from matrix.thresholds import ThresholdError, Thresholds

SYMBOLS = {
    "pass": "✅",
    "inaccurate": "🟡",
    "not_quantized": "⬜",
    "fail": "❌",
    "crash": "💥",
    "timeout": "⏱",
    "unavailable": "➖",
    "error": "🛠",
}
MEANINGS = {
    "pass": "every stage ran, quantized ops in the deployed artifact, error within the thresholds",
    "inaccurate": "ran and quantized, but an error metric is over its threshold",
    "not_quantized": "ran end to end, but the deployed artifact holds no quantized compute op",
    "fail": "an exception at a named stage",
    "crash": "the process running the cell died",
    "timeout": "the cell ran past its time limit",
    "unavailable": "this environment lacks a package, version or API the cell needs",
    "error": "the case or the harness is broken; not a finding about the backend",
}
NOT_APPLICABLE = ("unavailable", "error")
VERDICTS = {"passed": "as expected", "xfailed": "as expected (known)", "xpassed": "better than expected",
            "failed": "worse than expected", "skipped": "skipped"}
# Column order of the support tables; backends not listed follow in order of appearance.
BACKEND_ORDER = ["fbgemm", "x86", "qnnpack", "onednn", "inductor", "onnxruntime", "litert", "executorch_xnnpack",
                 "openvino"]
ENV_PACKAGES = ("torch", "torchao", "onnx", "onnxruntime", "tensorflow", "litert-torch", "ai-edge-litert",
                "executorch", "openvino")

TEXT_COLUMNS = ("model", "kind", "mode", "scheme", "qspec", "backend", "stage", "error_type", "error_message",
                "reason", "verdict", "nodeid", "divergence")


DEFAULT_QSPEC = "default"
# Qspecs of the guide's "QAT model made deployable" paths shown with the conversion paths.
QAT_DEPLOY_PATHS = ("observed", "observed_bn_folded", "observed_torchscript", "observed_bn_folded_torchscript")


def frame(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        metrics = r.get("metrics") or {}
        rows.append({
            "case_id": r["case_id"], "model": r.get("model"), "kind": r.get("kind"), "mode": r.get("mode"),
            "scheme": r.get("scheme"), "qspec": r.get("qspec"), "backend": r.get("backend"),
            "status": r["status"], "stage": r.get("stage"), "error_type": r.get("error_type"),
            "error_message": r.get("error_message"), "reason": r.get("reason"),
            "verdict": r.get("verdict"), "nodeid": r.get("nodeid"),
            "divergence": divergence_summary(r.get("divergence")),
            "documented": r.get("documented"), "expected": r.get("expected"),
            "quantized_ops": r.get("quantized_ops"), "float_ops": r.get("float_ops"),
            "seconds": round(sum((r.get("timings") or {}).values()), 2),
            **{k: metrics.get(k) for k in ("sqnr_db", "sqnr_sim_db", "lsb_err_vs_sim", "top1_agree",
                                           "accuracy", "float_accuracy")},
        })
    df = pd.DataFrame(rows).sort_values("case_id", kind="stable").reset_index(drop=True)
    # pandas turns a missing text into NaN, which is truthy and prints as "nan": keep it None.
    text = [c for c in TEXT_COLUMNS if c in df]
    df[text] = df[text].astype(object).where(df[text].notna(), None)
    return df


def divergence_summary(divergence: dict | None) -> str | None:
    """One line on where a cell's quantized model first left the float model."""
    if not divergence:
        return None
    return divergence.get("summary") or f"not localized: {divergence.get('error')}"


def _ordered(values: pd.Series, order: list[str] | None = None) -> list[str]:
    present = list(dict.fromkeys(values.dropna()))
    if order:
        return [v for v in order if v in present] + [v for v in present if v not in order]
    return present


def _tally(statuses: pd.Series) -> str:
    counts = Counter(statuses)
    applicable = sum(n for s, n in counts.items() if s not in NOT_APPLICABLE)
    if applicable == 0:
        return " ".join(f"{SYMBOLS[s]}{counts[s]}" for s in SYMBOLS if counts.get(s))
    others = " ".join(f"{SYMBOLS[s]}{counts[s]}" for s in SYMBOLS if s != "pass" and counts.get(s))
    return f"{counts.get('pass', 0)}/{applicable}" + (f" ({others})" if others else "")


def _cell(row: pd.Series) -> str:
    symbol = SYMBOLS.get(row["status"], row["status"])
    if row["status"] in ("pass", "inaccurate", "not_quantized") and pd.notna(row["sqnr_db"]):
        return f"{symbol} {_db(row['sqnr_db'])}"
    if row["stage"]:
        return f"{symbol} {row['stage']}"
    return symbol


def _db(value: float) -> str:
    """SQNR for people: the ceiling that stands for identical outputs reads as infinity."""
    return "∞" if value >= SQNR_CEILING_DB else f"{value:.1f}"


def mode_support(df: pd.DataFrame) -> pd.DataFrame:
    backends = _ordered(df["backend"], BACKEND_ORDER)
    rows = []
    for (mode, scheme), group in df.groupby(["mode", "scheme"], sort=False):
        row = {"mode": mode, "scheme": scheme}
        for backend in backends:
            cells = group[group["backend"] == backend]
            row[backend] = _rated(cells["status"]) if len(cells) else "·"
        rows.append(row)
    return pd.DataFrame(rows)


def qspec_support(df: pd.DataFrame) -> pd.DataFrame:
    """Knob rows (qspec and mode), backend columns: which knobs of a quantization config each
    backend takes. Only qspecs other than ``default``; the default row of each mode beside them
    as the baseline, over the same models."""
    varied = df[df["qspec"] != DEFAULT_QSPEC]
    if not len(varied):
        return pd.DataFrame()
    knob_models = set(varied["model"])
    scope = df[df["model"].isin(knob_models) & df["mode"].isin(set(varied["mode"]))]
    backends = _ordered(scope["backend"], BACKEND_ORDER)
    rows = []
    for (qspec, mode), group in scope.groupby(["qspec", "mode"], sort=False):
        if mode == "conversion":
            continue
        row = {"qspec": qspec, "mode": mode}
        for backend in backends:
            cells = group[group["backend"] == backend]
            row[backend] = _rated(cells["status"]) if len(cells) else "·"
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values(["qspec"], key=lambda c: c.map(lambda q: (q != DEFAULT_QSPEC, q)), kind="stable") \
        .reset_index(drop=True) if len(table) else table


def conversion_paths(df: pd.DataFrame) -> pd.DataFrame:
    """One row per conversion path (and the QAT deploy variants), scheme and backend; a column per
    reference model (operators left out) with the cell's status and SQNR, or the stage where the path broke."""
    picked = df[((df["mode"] == "conversion") | df["qspec"].isin(QAT_DEPLOY_PATHS)) & (df["kind"] == "model")]
    if not len(picked):
        return pd.DataFrame()
    models = _ordered(picked["model"])
    rows = []
    for (qspec, scheme, backend), group in picked.groupby(["qspec", "scheme", "backend"], sort=False):
        row = {"path": qspec, "scheme": scheme, "backend": backend}
        for model in models:
            cells = group[group["model"] == model]
            row[model] = " ".join(_cell(r) for _, r in cells.iterrows()) or "·"
        rows.append(row)
    return pd.DataFrame(rows)


def _rated(statuses: pd.Series) -> str:
    """A tally behind a coloured square: all applicable cells pass, at least half, fewer, or none."""
    applicable = [s for s in statuses if s not in NOT_APPLICABLE]
    passed = sum(s == "pass" for s in applicable)
    if not applicable:
        return _tally(statuses)
    share = passed / len(applicable)
    square = "🟩" if share == 1 else "🟨" if share >= 0.5 else "🟧" if passed else "🟥"
    return f"{square} {_tally(statuses)}"


def per_model(df: pd.DataFrame) -> pd.DataFrame:
    backends = _ordered(df["backend"], BACKEND_ORDER)
    rows = []
    for (model, mode, scheme), group in df.groupby(["model", "mode", "scheme"], sort=False):
        row = {"model": model, "mode": mode, "scheme": scheme}
        for backend in backends:
            cells = group[group["backend"] == backend]
            row[backend] = " ".join(_cell(r) for _, r in cells.iterrows()) if len(cells) else "·"
        rows.append(row)
    return pd.DataFrame(rows)


def documented_vs_observed(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in df.iterrows():
        claim = r["documented"]
        if isinstance(claim, dict) and claim.get("status") != r["status"] and r["status"] not in NOT_APPLICABLE:
            rows.append({"cell": r["case_id"], "docs say": f"{claim['status']}: {claim['claim']}",
                         "observed": _observed(r), "source": claim["source"]})
    return pd.DataFrame(rows)


def _observed(r: pd.Series) -> str:
    text = f"{SYMBOLS.get(r['status'], '')} {r['status']}"
    if r["stage"]:
        text += f" at {r['stage']}: {r['error_type']}: {_short(r['error_message'])}"
    elif r["reason"]:
        text += f" ({_short(r['reason'])})"
    return text


def _short(text: object, limit: int = 160) -> str:
    text = "" if text is None or (isinstance(text, float) and pd.isna(text)) else str(text)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def known_outcomes(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in df.iterrows():
        expected = r["expected"] if isinstance(r["expected"], dict) else {}
        if expected.get("status", "pass") != "pass":
            rows.append({"expected": expected["status"], "reason": _short(expected.get("reason"), 400),
                         "source": expected.get("source"), "cell": r["case_id"], "observed": r["status"]})
    if not rows:
        return pd.DataFrame(rows)
    table = pd.DataFrame(rows)
    grouped = table.groupby(["expected", "reason", "source"], sort=False).agg(
        cells=("cell", lambda c: ", ".join(c)), observed=("observed", lambda s: _tally(s)))
    return grouped.reset_index()[["expected", "observed", "reason", "source", "cells"]]


def surprises(df: pd.DataFrame) -> pd.DataFrame:
    picked = df[df["verdict"].isin(["failed", "xpassed"])]
    rows = [{"cell": r["case_id"], "verdict": VERDICTS[r["verdict"]],
             "expected": (r["expected"] or {}).get("status", "pass"), "observed": _observed(r),
             "reproduce": f"`pytest '{r['nodeid']}'`" if r["nodeid"] else ""} for _, r in picked.iterrows()]
    return pd.DataFrame(rows)


def details(df: pd.DataFrame) -> pd.DataFrame:
    def number(value: object, digits: int = 2) -> str:
        return "" if value is None or pd.isna(value) else f"{value:.{digits}f}"

    rows = []
    for _, r in df.iterrows():
        failed = r["status"] in ("fail", "crash", "timeout", "error")
        rows.append({
            "cell": r["case_id"], "status": f"{SYMBOLS.get(r['status'], '')} {r['status']}",
            "stage": r["stage"] or "", "error / reason": _short(
                f"{r['error_type']}: {r['error_message']}" if r["error_type"] else r["reason"]),
            "sqnr dB": "" if pd.isna(r["sqnr_db"]) else _db(r["sqnr_db"]),
            "sim dB": "" if pd.isna(r["sqnr_sim_db"]) else _db(r["sqnr_sim_db"]),
            "lsb vs sim": number(r["lsb_err_vs_sim"]), "top1": number(r["top1_agree"]),
            "acc": number(r["accuracy"], 3), "q ops": "" if pd.isna(r["quantized_ops"]) else int(r["quantized_ops"]),
            "float ops": "" if pd.isna(r["float_ops"]) else int(r["float_ops"]), "s": r["seconds"],
            "first divergence": r["divergence"] or "",
            "reproduce": f"`pytest '{r['nodeid']}'`" if failed and r["nodeid"] else "",
        })
    return pd.DataFrame(rows)


def _table(df: pd.DataFrame, empty: str = "_none_") -> str:
    return df.to_markdown(index=False) if len(df) else empty


def environment_section(env: dict, df: pd.DataFrame) -> str:
    versions = env.get("versions", {})
    lines = [
        f"- date: {env.get('date', '?')}; suite commit: `{env.get('suite_commit') or '?'}`",
        f"- python {env.get('python', '?')} on {env.get('platform', '?')}; CPU: {env.get('cpu', '?')} "
        f"({env.get('cores', '?')} cores); quantized engines: {', '.join(env.get('quantized_engines', []))}",
        "- packages: " + ", ".join(f"{p} {versions[p]}" for p in ENV_PACKAGES if versions.get(p)),
        "- not installed: " + (", ".join(p for p in ENV_PACKAGES if not versions.get(p)) or "none"),
        f"- command: `{env.get('command', '?')}`",
    ]
    lines += [f"- **{error}**" for error in env.get("model_source_errors") or []]
    counts = Counter(df["status"])
    applicable = sum(n for s, n in counts.items() if s not in NOT_APPLICABLE)
    rate = f"{counts.get('pass', 0) / applicable:.0%}" if applicable else "n/a"
    lines.append(
        f"- **{len(df)} cells**: " + ", ".join(f"{SYMBOLS[s]} {s} {counts[s]}" for s in SYMBOLS if counts.get(s))
        + f". Pass rate over the {applicable} applicable cells: **{rate}** "
        f"(unavailable {counts.get('unavailable', 0)} and error {counts.get('error', 0)} not counted)."
    )
    verdicts = Counter(df["verdict"].fillna("none"))
    lines.append("- against expectations: " + ", ".join(
        f"{VERDICTS.get(v, v)} {n}" for v, n in sorted(verdicts.items())))
    return "\n".join(lines)


def legend() -> str:
    rows = [{"symbol": SYMBOLS[s], "status": s, "meaning": MEANINGS[s]} for s in SYMBOLS]
    return (_table(pd.DataFrame(rows)) + "\n\nIn the support tables `p/n` counts passing cells over applicable ones "
            "(unavailable and error excluded); `·` marks a combination with no code path. In the per-model "
            "table a number is the SQNR in dB of the deployed output against the float model (∞: identical "
            "outputs); a stage name "
            "is where the cell failed. `sim dB` is the SQNR of the mode's own fake-quant simulation "
            "(what the recipe costs); `lsb vs sim` is the deployed output's largest distance from that "
            "simulation in output quantization steps (what the backend adds).")


# Column order of the operator table within a backend; schemes not listed follow in order of appearance.
SCHEME_ORDER = ["ptq_static", "ptq_dynamic", "qat", "weight_only", "fp16"]
# The output scale and zero point PyTorch fixes for the fixed-qparams ops, by op and output dtype:
# default_fixed_qparams_range_0to1_observer and default_fixed_qparams_range_neg1to1_observer
# (torch/ao/quantization/observer.py), mapped to the ops by _FIXED_QPARAMS_OP_TO_OBSERVER
# (torch/ao/quantization/qconfig_mapping.py); the qint8 forms are the quantized kernels' own.
FIXED_OUTPUT_QPARAMS = {
    ("sigmoid", "quint8"): (1 / 256, 0), ("hardsigmoid", "quint8"): (1 / 256, 0),
    ("softmax", "quint8"): (1 / 256, 0), ("_softmax", "quint8"): (1 / 256, 0), ("tanh", "quint8"): (2 / 256, 128),
    ("sigmoid", "qint8"): (1 / 256, -128), ("hardsigmoid", "qint8"): (1 / 256, -128),
    ("softmax", "qint8"): (1 / 256, -128), ("_softmax", "qint8"): (1 / 256, -128), ("tanh", "qint8"): (2 / 256, 0),
}


def operator_support(df: pd.DataFrame) -> pd.DataFrame:
    """PyTorch's operator support table, generated from the run: operator rows grouped by mode, backend ×
    scheme columns, each cell the status symbol (one per qspec); ``·`` where no code path exists.
    ``passing`` counts the row's passing cells over its applicable ones. Only operator cells."""
    operators = df[df["kind"] == "operator"]
    if not len(operators):
        return pd.DataFrame()
    schemes = _ordered(operators["scheme"], SCHEME_ORDER)
    columns = [(backend, scheme) for backend in _ordered(operators["backend"], BACKEND_ORDER) for scheme in schemes
               if ((operators["backend"] == backend) & (operators["scheme"] == scheme)).any()]
    rows = []
    for (mode, operator), group in operators.groupby(["mode", "model"], sort=False):
        row = {"mode": mode, "operator": operator}
        for backend, scheme in columns:
            statuses = group[(group["backend"] == backend) & (group["scheme"] == scheme)]["status"]
            row[f"{backend} {scheme}"] = " ".join(SYMBOLS.get(s, s) for s in statuses) or "·"
        row["passing"] = _tally(group["status"])
        rows.append(row)
    modes = _ordered(operators["mode"])
    return pd.DataFrame(rows).sort_values("mode", key=lambda m: m.map(modes.index), kind="stable")


def operator_outcomes(df: pd.DataFrame) -> pd.DataFrame:
    """Operator cells that did not pass, with the stage and error (or the reason) and whether that was
    expected; backends whose cells ended the same way share a row."""
    picked = df[(df["kind"] == "operator") & (df["status"] != "pass")]
    rows = []
    for _, r in picked.iterrows():
        said = f"{r['error_type']}: {r['error_message']}" if r["error_type"] else r["reason"]
        rows.append({"operator": r["model"], "mode": r["mode"], "scheme": r["scheme"],
                     "outcome": f"{SYMBOLS.get(r['status'], '')} {r['status']}", "backend": r["backend"],
                     "stage": r["stage"] or "", "error / reason": _short(said),
                     "verdict": VERDICTS.get(r["verdict"], r["verdict"] or ""), "known because": _known_reason(r)})
    if not rows:
        return pd.DataFrame(rows)
    keys = ["operator", "mode", "scheme", "outcome", "stage", "error / reason", "verdict", "known because"]
    table = pd.DataFrame(rows).groupby(keys, sort=False)["backend"].agg(
        lambda backends: ", ".join(_ordered(backends, BACKEND_ORDER))).reset_index()
    return table[["operator", "mode", "scheme", "outcome", "backend", "stage", "error / reason", "verdict",
                  "known because"]]


def _known_reason(r: pd.Series) -> str:
    """The reason of the expectation a cell met, shortened; empty for a cell that did not meet one."""
    expected = r["expected"] if isinstance(r["expected"], dict) else {}
    met = expected.get("status") == r["status"] and r["verdict"] == "xfailed"
    return _short(expected.get("reason"), 200) if met else ""


def fixed_qparams(records: list[dict]) -> pd.DataFrame:
    """The output scale and zero point that fixed-qparams ops (sigmoid, hardsigmoid, softmax, tanh) ran
    with, as each cell's inspection recorded them, against the values PyTorch fixes for them. Cells of one
    model that saw the same op with the same qparams share a row."""
    groups: dict[tuple, list[dict]] = {}
    for record in sorted(records, key=lambda r: r["case_id"]):
        observed = (record.get("inspection_notes") or {}).get("output_qparams") or {}
        for op, qparams in observed.items():
            for scale, zero_point, dtype in qparams:
                if (op.split(".")[-1], dtype) in FIXED_OUTPUT_QPARAMS:
                    groups.setdefault((record["model"], op, dtype, scale, zero_point), []).append(record)
    rows = []
    for (model, op, dtype, scale, zero_point), cells in groups.items():
        fixed = FIXED_OUTPUT_QPARAMS[(op.split(".")[-1], dtype)]
        agrees = abs(scale - fixed[0]) <= 1e-6 * fixed[0] and zero_point == fixed[1]
        rows.append({"model": model, "op": op, "dtype": dtype, "output scale": f"{scale:.8g}",
                     "zero point": zero_point, "fixed": f"{fixed[0]:.8g}, {fixed[1]}",
                     "check": "✅ fixed" if agrees else "❌ differs", "cells": _cells_by_mode(cells)})
    return pd.DataFrame(rows)


def _cells_by_mode(records: list[dict]) -> str:
    """``eager ptq_static: fbgemm, x86; fx qat: onednn`` for a list of cell records."""
    backends: dict[str, list[str]] = {}
    for record in records:
        backends.setdefault(f"{record['mode']} {record['scheme']}", []).append(record["backend"])
    return "; ".join(f"{where}: {', '.join(_ordered(pd.Series(names), BACKEND_ORDER))}"
                     for where, names in backends.items())


def operator_section(df: pd.DataFrame, records: list[dict]) -> str:
    table = operator_support(df)
    if not len(table):
        return "_no operator cells in this run_"
    parts = ["One single-operator model per row, one table per mode; a cell is the status symbol of that "
             "operator under the backend and scheme of its column (see the legend), and `passing` counts the "
             "row's passing cells over its applicable ones. Why a cell did not pass is under *Operator outcomes*."]
    for mode, rows in table.groupby("mode", sort=False):
        rows = rows.drop(columns="mode")
        parts.append(f"### {mode}\n\n" + _table(rows.loc[:, (rows != "·").any()]))
    parts.append("### Operator outcomes\n\nEvery operator cell that did not pass: the stage and error, or the "
                 "reason, the verdict against the expectations, and for a known outcome the start of its reason "
                 "(in full under *Known outcomes*). Backends that ended the same way share a row.\n\n"
                 + _table(operator_outcomes(df)))
    parts.append("### Fixed-qparams ops\n\nSigmoid, hardsigmoid, softmax and tanh have an output range known in "
                 "advance, and PyTorch fixes their output scale and zero point instead of calibrating them. Wherever "
                 "one of them ran on quantized tensors (inside other models too): the scale and zero point of its "
                 "quantized output, as the deployed model's run produced it, against the fixed ones.\n\n"
                 + _table(fixed_qparams(records)))
    return "\n\n".join(parts)


def render_markdown(env: dict, records: list[dict]) -> str:
    df = frame(records)
    title = env.get("label") or env.get("date", "run")
    stale = env.get("stale_expectations") or []
    parts = [
        f"# qmatrix report: {title}",
        environment_section(env, df),
        "## Mode support\n\nMode and scheme rows, backend columns, over every model of the run; a count "
        "links to the per-model table.\n\n" + _table(_linked(mode_support(df), "#per-model")),
        "## Per model\n\n" + _table(per_model(df)),
        "## Qspec support\n\nOne row per qspec (knob of a quantization config) and mode, backend columns, over "
        "the models the knobs are crossed with; `default` rows are the baseline.\n\n" + _table(qspec_support(df)),
        "## Conversion paths\n\nA model carried between representations (FX to PT2E, eager to FX) and the QAT "
        "model exported without convert (batch-norm folded or not); per model the outcome, or the stage where "
        "the path breaks.\n\n" + _table(conversion_paths(df)),
        "## Operator support\n\n" + operator_section(df, records),
        "## Documented versus observed\n\nCells where the backend's own documentation claims one outcome "
        "and the run found another.\n\n" + _table(documented_vs_observed(df)),
        "## Failures by signature\n\n" + failures_markdown(df),
        "## Error split: recipe versus backend\n\n" + error_split_markdown(df),
        "## Surprises\n\nCells worse than expected (pytest failed) or better (xpass).\n\n" + _table(surprises(df)),
        "## Known outcomes\n\nAccepted non-pass outcomes, each with its reason and source.\n\n"
        + _table(known_outcomes(df)),
        "## Stale expectations\n\n" + ("\n".join(f"- {s['entry']} (expects {s['status']}) matches no cell"
                                        for s in stale) or "_none_"),
        "## Legend\n\n" + legend() + "\n\n" + RATE_LEGEND,
        "## Details\n\n" + _table(details(df)),
    ]
    if env.get("merged_from"):
        parts.insert(2, "## Merged from\n\n" + merge_notes(env))
    return "\n\n".join(parts) + "\n"


FAILED = ("fail", "crash", "timeout", "error")
QUANTIZED = ("pass", "inaccurate")


def reproduce(nodeid: object) -> str:
    """The command that reruns one cell alone."""
    return f"pytest '{nodeid}'" if isinstance(nodeid, str) and nodeid else ""


def normalize_message(message: object, limit: int = 500) -> str:
    """An error's first line with addresses and numbers masked, so cells that fail the same way group together."""
    text = "" if message is None or (isinstance(message, float) and pd.isna(message)) else str(message)
    text = text.strip().splitlines()[0] if text.strip() else ""
    text = re.sub(r"0x[0-9a-fA-F]+", "0x…", text)
    text = re.sub(r"(?<![\w.])-?\d+(\.\d+)?(e-?\d+)?(?![\w])", "N", text)
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class FailureGroup:
    """Failed cells that share a signature: stage, exception type and normalized message."""

    stage: str
    error_type: str
    message: str
    cells: pd.DataFrame

    @property
    def signature(self) -> str:
        return f"{self.stage}: {self.error_type}: {self.message}"


def failure_groups(df: pd.DataFrame) -> list[FailureGroup]:
    """Every failed cell (fail, crash, timeout, error) in groups by signature, largest group first."""
    failed = df[df["status"].isin(FAILED)]
    keys = failed.apply(lambda r: (r["stage"] or "", r["error_type"] or r["status"],
                                   normalize_message(r["error_message"] or r["reason"])), axis=1)
    groups = [FailureGroup(*key, failed[keys == key]) for key in dict.fromkeys(keys)] if len(failed) else []
    return sorted(groups, key=lambda g: (-len(g.cells), g.signature))


def failures_markdown(df: pd.DataFrame) -> str:
    groups = failure_groups(df)
    if not groups:
        return "_none_"
    parts = [f"{sum(len(g.cells) for g in groups)} failed cells in {len(groups)} groups, largest first. "
             "A signature is the stage, the exception type and the message with numbers and addresses masked."]
    for number, group in enumerate(groups, 1):
        cells = pd.DataFrame([{"cell": r["case_id"], "status": f"{SYMBOLS.get(r['status'], '')} {r['status']}",
                               "reproduce": f"`{reproduce(r['nodeid'])}`" if r["nodeid"] else ""}
                              for _, r in group.cells.iterrows()])
        gist = _short(group.message, 90).replace("<", "&lt;")
        whole = f"```text\n{group.message}\n```\n\n" if len(group.message) > 90 else ""
        parts.append(f"### {number}. {len(group.cells)} × {group.stage or '(no stage)'}: {group.error_type}: {gist}"
                     f"\n\n{whole}" + _table(cells))
    return "\n\n".join(parts)


def error_split(df: pd.DataFrame, limits: Callable[[pd.Series], dict] | None = None) -> pd.DataFrame:
    """Quantized cells with the recipe's own error beside the backend's: what each side costs.

    ``sqnr_sim_db`` is the mode's fake-quant simulation against float (the recipe); ``lsb_err_vs_sim`` is the
    deployed output's largest distance from that simulation in output quantization steps (the backend).
    ``limits`` gives a cell's thresholds; ``over`` then names the side that is over its threshold.
    """
    quantized = df[df["status"].isin(QUANTIZED) & df["sqnr_sim_db"].notna()]
    table = quantized[["case_id", "status", "sqnr_db", "sqnr_sim_db", "lsb_err_vs_sim", "nodeid"]].copy()
    table["over"] = [_over(r, limits(r)) if limits else "" for _, r in quantized.iterrows()]
    return table


def _over(row: pd.Series, limit: dict) -> str:
    sides = []
    if pd.notna(row["sqnr_sim_db"]) and row["sqnr_sim_db"] < limit.get("min_sqnr_db", float("-inf")):
        sides.append("recipe")
    if pd.notna(row["lsb_err_vs_sim"]) and row["lsb_err_vs_sim"] > limit.get("max_lsb_err_vs_sim", float("inf")):
        sides.append("backend")
    return " and ".join(sides)


def threshold_lookup() -> Callable[[pd.Series], dict] | None:
    """Thresholds of this checkout for a row of :func:`frame`, or None when they cannot be read."""
    try:
        thresholds = Thresholds.load()
    except (ThresholdError, OSError):
        return None
    return lambda r: thresholds.for_cell(r["scheme"], r["model"], r["backend"])


def error_split_markdown(df: pd.DataFrame) -> str:
    table = error_split(df, threshold_lookup())
    if not len(table):
        return "_none_"
    rows = pd.DataFrame({
        "cell": table["case_id"], "status": [f"{SYMBOLS[s]} {s}" for s in table["status"]],
        "deployed dB": [_db(v) for v in table["sqnr_db"]],
        "recipe dB (sim)": [_db(v) for v in table["sqnr_sim_db"]],
        "backend error (LSB vs sim)": [f"{v:.2f}" if pd.notna(v) else "" for v in table["lsb_err_vs_sim"]],
        "over threshold": table["over"],
    })
    return ("For each quantized cell: `recipe dB` is the SQNR of the mode's own fake-quant simulation against "
            "float (what the quantization recipe costs); `backend error` is the deployed output's largest "
            "distance from that simulation in output quantization steps (what the backend's kernels add). "
            "`over threshold` names the side over its limit in matrix/thresholds.toml.\n\n"
            + rows.to_markdown(index=False, disable_numparse=True))


def merge_notes(env: dict) -> str:
    """Where a merged run came from, and the duplicate cells whose records disagreed."""
    sources = env.get("merged_from") or []
    lines = [f"- {s['run']} ({s.get('label') or s.get('date') or '?'}): {s['cells']} cells" for s in sources]
    lines += [f"- **conflict**: {c}" for c in env.get("merge_conflicts") or []]
    return "\n".join(lines)


RATE_LEGEND = ("In the mode-support table the square before a count tells the share of applicable cells that "
               "pass: 🟩 all, 🟨 at least half, 🟧 fewer than half, 🟥 none.")


def _linked(table: pd.DataFrame, anchor: str) -> pd.DataFrame:
    """Tallies of a support table as Markdown links to ``anchor``; axis columns and ``·`` stay plain."""
    linked = table.copy()
    for column in linked.columns[2:]:
        linked[column] = [v if v == "·" else f"[{v}]({anchor})" for v in linked[column]]
    return linked


def render_csv(env: dict, records: list[dict]) -> str:
    """One row per cell, the columns of :func:`frame`; nested fields as JSON."""
    table = frame(records)
    for column in ("documented", "expected"):
        table[column] = [json.dumps(v, sort_keys=True) if isinstance(v, dict) else "" for v in table[column]]
    return table.to_csv(index=False)


def render_json(env: dict, records: list[dict]) -> str:
    return json.dumps({"environment": env, "cells": records}, indent=1, sort_keys=True, default=str) + "\n"


def renderers() -> dict[str, tuple[str, Callable[[dict, list[dict]], str]]]:
    """Report format → (file name, renderer)."""
    from matrix.html import render_html

    return {"md": ("report.md", render_markdown), "html": ("report.html", render_html),
            "csv": ("report.csv", render_csv), "json": ("report.json", render_json)}


def write_report(run: Path, out: Path | None = None, formats: tuple[str, ...] = ("md", "html")) -> Path:
    """Render ``run``'s records as report.md and report.html (or ``formats``) in ``out`` (default: the run).

    Everything is rendered before anything is written, so unreadable records leave earlier reports as they
    were. Returns the path of the first format's file.
    """
    records = read_records(run)
    env = read_environment(run)
    available = renderers()
    rendered = {available[f][0]: available[f][1](env, records) for f in formats}
    folder = out or run
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(folder / name)
    return folder / available[formats[0]][0]
