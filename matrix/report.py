"""Rendering a run's records as a Markdown report. Records in, text out: no pytest here."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from matrix.cell import SQNR_CEILING_DB
from matrix.records import read_environment, read_records

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
            "documented": r.get("documented"), "expected": r.get("expected"),
            "quantized_ops": r.get("quantized_ops"), "float_ops": r.get("float_ops"),
            "seconds": round(sum((r.get("timings") or {}).values()), 2),
            **{k: metrics.get(k) for k in ("sqnr_db", "sqnr_sim_db", "lsb_err_vs_sim", "top1_agree",
                                           "accuracy", "float_accuracy")},
        })
    return pd.DataFrame(rows).sort_values("case_id", kind="stable").reset_index(drop=True)


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
            row[backend] = _tally(cells["status"]) if len(cells) else "·"
        rows.append(row)
    return pd.DataFrame(rows)


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


def render_markdown(env: dict, records: list[dict]) -> str:
    df = frame(records)
    title = env.get("label") or env.get("date", "run")
    stale = env.get("stale_expectations") or []
    parts = [
        f"# qmatrix report: {title}",
        environment_section(env, df),
        "## Mode support\n\nMode and scheme rows, backend columns, over every model of the run.\n\n"
        + _table(mode_support(df)),
        "## Per model\n\n" + _table(per_model(df)),
        "## Documented versus observed\n\nCells where the backend's own documentation claims one outcome "
        "and the run found another.\n\n" + _table(documented_vs_observed(df)),
        "## Surprises\n\nCells worse than expected (pytest failed) or better (xpass).\n\n" + _table(surprises(df)),
        "## Known outcomes\n\nAccepted non-pass outcomes, each with its reason and source.\n\n"
        + _table(known_outcomes(df)),
        "## Stale expectations\n\n" + ("\n".join(f"- {s['entry']} (expects {s['status']}) matches no cell"
                                        for s in stale) or "_none_"),
        "## Legend\n\n" + legend(),
        "## Details\n\n" + _table(details(df)),
    ]
    return "\n\n".join(parts) + "\n"


def write_report(run: Path, out: Path | None = None) -> Path:
    """Render ``run``'s records to ``report.md`` in ``out`` (default: the run folder)."""
    records = read_records(run)
    env = read_environment(run)
    target = (out or run) / "report.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(".report.md.tmp")
    tmp.write_text(render_markdown(env, records))
    tmp.replace(target)
    return target
