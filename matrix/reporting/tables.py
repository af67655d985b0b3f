"""The report's tables, built once as values from a run's records: axis names, counts, numbers,
and the :mod:`matrix.reporting.values` types; no glyph and no markup. The Markdown and HTML
renderers show the same tables."""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass

import pandas as pd

from matrix.reporting.values import (
    NO_PATH,
    Chip,
    Chips,
    Tally,
    db,
    kilobytes,
    missing,
    ordered,
    reproduce,
    short,
    size,
    speed,
)
from matrix.vocabulary import (
    AXES,
    FAILED,
    MATCHES_NO_CELL,
    NOT_APPLICABLE,
    QUANTIZED,
    SURPRISES,
    WHOLE_MODELS,
    Fidelity,
    Status,
    Verdict,
)

TEXT_COLUMNS = ("model", "kind", "mode", "scheme", "qspec", "backend", "stage", "error_type", "error_message",
                "reason", "verdict", "nodeid", "divergence", "fidelity", "fidelity_reason", "fidelity_verdict")
METRIC_COLUMNS = ("sqnr_db", "sqnr_sim_db", "lsb_err_vs_sim", "top1_agree", "accuracy", "float_accuracy")
DEFAULT_QSPEC = "default"
# The verdicts in words, for the tables that name them.
VERDICT_TEXT = {Verdict.AS_EXPECTED.value: "as expected", Verdict.KNOWN.value: "as expected (known)",
                Verdict.BETTER.value: "better than expected", Verdict.WORSE.value: "worse than expected",
                Verdict.BROKEN.value: "broken case or harness", Verdict.UNAVAILABLE.value: "unavailable",
                Verdict.UNCONFIRMED.value: "departs from a stand-in simulation (unconfirmed)"}
# The same in a word, for the table of all cells.
VERDICT_WORD = {Verdict.AS_EXPECTED.value: "as expected", Verdict.KNOWN.value: "known",
                Verdict.BETTER.value: "better", Verdict.WORSE.value: "worse", Verdict.BROKEN.value: "broken",
                Verdict.UNAVAILABLE.value: "unavailable", Verdict.UNCONFIRMED.value: "unconfirmed"}
MEANINGS = {
    "pass": "every stage ran, quantized ops in the deployed artifact, output within the accuracy thresholds "
            "against float (it may still depart from its simulation: see fidelity)",
    "inaccurate": "ran and quantized, but the output is too far from float (SQNR or accuracy drop)",
    "not_quantized": "ran end to end, but the deployed artifact holds no quantized compute op",
    "fail": "an exception at a named stage",
    "crash": "the process running the cell died",
    "timeout": "the cell ran past its time limit",
    "unavailable": "this environment lacks a package, version or API the cell needs",
    "error": "the case or the harness is broken; not a finding about the backend",
}
PAYS_TEXT = (
    "Per model and backend, the fastest cell that passes, with its latency and size against the float model "
    "deployed on the same backend, timed in the same process on one batch in interleaved pairs (speedup = the "
    "median of the pairs' float / quantized ratios; \"same speed\" when their spread, the 10th to 90th "
    "percentile, holds 1); where the quantized model's time went by kind of kernel (int8, quantize/dequantize, "
    "float, and everything else: elementwise and fused kernels, data movement, call overhead; from the "
    "backend's profiler, for PyTorch's engines, Inductor and ONNX Runtime); and how many timed cells there ran "
    "slower than float (their whole spread below 1). The reference models are toy-sized: their latencies are "
    "mostly call overhead, not arithmetic, so a speedup here says little of a full-sized model's.")
# Column order of the operator table within a backend; schemes not listed follow in order of appearance.
SCHEME_ORDER = ["float", "ptq_static", "ptq_dynamic", "qat", "weight_only", "fp16"]
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


@dataclass(frozen=True)
class Run:
    """A run's records as a frame, in case-id order, and the order of each axis's values."""

    df: pd.DataFrame
    order: dict[str, list[str]]

    def axis(self, axis: str, values: pd.Series | None = None) -> list[str]:
        """The values of ``axis`` present (in ``values``, default the whole run), in the run's order."""
        return ordered(self.df[axis] if values is None else values, self.order.get(axis))

    @functools.cached_property
    def evidence(self) -> dict[str, Evidence]:
        """The model cells' operator evidence (:func:`_evidence`), made once: several tables read it."""
        return _evidence(self)


def load(env: dict, records: list[dict]) -> Run:
    """The run's frame; axis values follow the registry order the run recorded in env.json
    (``axes``). A run written before runs recorded it takes the backend order of this checkout's
    registry (which imports torch, once), and every other axis the order its records name them in."""
    order = {axis: list(values) for axis, values in (env.get("axes") or {}).items()}
    if "backend" not in order:
        from matrix.backends import BACKENDS

        order["backend"] = list(BACKENDS)
    for axis in AXES:
        order.setdefault(axis, ordered(r.get(axis) for r in records))
    return Run(frame(records), order)


def frame(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        metrics = r.get("metrics") or {}
        rows.append({
            "case_id": r["case_id"], **{axis: r.get(axis) for axis in AXES},
            "status": r["status"], "stage": r.get("stage"), "error_type": r.get("error_type"),
            "error_message": r.get("error_message"), "reason": r.get("reason"),
            "verdict": r.get("verdict"), "nodeid": r.get("nodeid"),
            "fidelity": r.get("fidelity"), "fidelity_reason": r.get("fidelity_reason"),
            "fidelity_verdict": r.get("fidelity_verdict"), "stand_in": bool(r.get("simulation_stand_in")),
            "expected_fidelity": r.get("expected_fidelity"),
            "divergence": divergence_summary(r.get("divergence")), "model_source": r.get("model_source"),
            "documented": r.get("documented"), "expected": r.get("expected"),
            "limits": r.get("limits"),
            "quantized_ops": r.get("quantized_ops"), "float_ops": r.get("float_ops"),
            "layers": r.get("layers") or {}, "operator_cells": r.get("operator_cells") or {},
            "seconds": round(sum((r.get("timings") or {}).values()), 2),
            **{k: metrics.get(k) for k in METRIC_COLUMNS},
            **payoff_columns(r),
        })
    columns = ["case_id", *AXES, "status", "stage", "error_type", "error_message", "reason", "verdict", "nodeid",
               "fidelity", "fidelity_reason", "fidelity_verdict", "stand_in", "expected_fidelity",
               "divergence", "model_source", "documented", "expected", "limits", "quantized_ops", "float_ops",
               "layers", "operator_cells", "seconds",
               *METRIC_COLUMNS, *PAYOFF_COLUMNS]
    df = pd.DataFrame(rows, columns=columns).sort_values("case_id", kind="stable").reset_index(drop=True)
    # pandas turns a missing text into NaN, which is truthy and prints as "nan": keep it None.
    text = [c for c in TEXT_COLUMNS if c in df]
    df[text] = df[text].astype(object).where(df[text].notna(), None)
    df["float_parity"] = pd.Series(float_parity(df), index=df.index, dtype=object)
    return df


FLOAT_SCHEME = "float"


FAITHFUL = Fidelity.FAITHFUL.value


def parity_of(status: str, fidelity: str | None) -> str:
    """A float cell's outcome as float parity: ``faithful`` or ``departs`` when it ran (its status is
    ``not_quantized``: no quantizer), else its status (the export failed, crashed, ...)."""
    return (fidelity or FAITHFUL) if status == Status.NOT_QUANTIZED.value else status


def float_parity(df: pd.DataFrame) -> list[str | None]:
    """Each cell's float parity: the outcome of the ``export`` mode's float cell of its model on its
    backend (the float model deployed there with no quantizer, :func:`parity_of`); None where the run
    has none (a float cell itself; PyTorch's engines and eager PyTorch run the float model itself)."""
    floats = {(r.model, r.backend): parity_of(r.status, r.fidelity)
              for r in df[(df["scheme"] == FLOAT_SCHEME) & (df["mode"] == "export")].itertuples()}
    return [None if scheme == FLOAT_SCHEME else floats.get((model, backend))
            for model, backend, scheme in zip(df["model"], df["backend"], df["scheme"])]


PARITY_FAILED = "float parity on this backend: {parity} (the float model deployed with no quantizer): the " \
                "export is not faithful, so the quantization is not to blame alone"


def parity_note(row: pd.Series) -> str:
    """What a quantized cell's reader needs to know of its backend's float parity: nothing when it
    is faithful, or when the cell passed."""
    parity = row.get("float_parity")
    if parity in (None, FAITHFUL) or row["status"] == Status.PASS.value:
        return ""
    return PARITY_FAILED.format(parity=parity)


def error_or_reason(row: pd.Series) -> str:
    """A cell's error (or the reason for its status), with its backend's float parity when that
    is not faithful (:func:`parity_note`)."""
    said = f"{row['error_type']}: {row['error_message']}" if row["error_type"] else row["reason"]
    note = parity_note(row)
    return " ".join(filter(None, (said, note and f"({note})")))


FLOAT_PARITY_TEXT = ("The float model deployed with no quantizer (the float scheme's cells), against PyTorch's "
                     "float output by the float thresholds (thresholds.toml [schemes.float]): faithful cells over "
                     "those of each mode and kind; PyTorch's engines run the float model itself.")


def float_parity_table(run: Run) -> pd.DataFrame:
    """Mode and kind rows, backend columns: how many float cells are faithful, and how the others ended."""
    df = run.df[run.df["scheme"] == FLOAT_SCHEME]

    def cell(cells: pd.DataFrame) -> str:
        outcomes = Counter(parity_of(s, f) for s, f in zip(cells["status"], cells["fidelity"]))
        faithful = outcomes.pop(FAITHFUL, 0)
        others = ", ".join(f"{n} {outcome}" for outcome, n in outcomes.most_common())
        return f"{faithful}/{len(cells)} faithful" + (f" ({others})" if others else "")

    return _by_backend(run, df, ["mode", "kind"], cell) if len(df) else pd.DataFrame()


PAYOFF_COLUMNS = ("speedup", "speedup_low", "speedup_high", "float_ms", "quantized_ms", "latency_error",
                  "size_bytes", "float_bytes", "compression", "time_split")


def payoff_columns(record: dict) -> dict:
    """A record's speed and size against float on its backend (:mod:`matrix.payoff`), flat."""
    latency, sized = record.get("latency") or {}, record.get("size") or {}
    # Records older than the spread kept only the interquartile range.
    low, high = latency.get("speedup_spread") or latency.get("speedup_iqr") or (None, None)
    return {"speedup": latency.get("speedup"), "speedup_low": low, "speedup_high": high,
            "float_ms": latency.get("float_ms"), "quantized_ms": latency.get("quantized_ms"),
            "latency_error": latency.get("error"), "size_bytes": sized.get("bytes"),
            "float_bytes": sized.get("float_bytes"), "compression": sized.get("compression"),
            "time_split": latency.get("time_split")}


def int8_share(split: object) -> str:
    """The share of a cell's time in int8 kernels, from its backend's profiler ("" when not profiled)."""
    return f"{split.get('quantized', 0.0):.0%}" if isinstance(split, dict) else ""


def time_split(split: object) -> str:
    """Where a cell's time went, from its backend's profiler, in words ("" when not profiled)."""
    if not isinstance(split, dict):
        return ""
    return ", ".join(f"{split.get(key, 0.0):.0%} {word}" for key, word in
                     (("quantized", "int8"), ("qdq", "q/dq"), ("float", "float"), ("other", "other")))


def pays(row: pd.Series) -> str:
    """A cell's speed and size against float on its backend, in words ("" when not measured)."""
    return ", ".join(part for part in (speed(row["speedup"], row["speedup_low"], row["speedup_high"]),
                                       size(row["compression"])) if part)


def slower(row: pd.Series) -> bool:
    """Slower than float on its backend: the whole spread of its timed pairs' ratios below 1."""
    return not missing(row["speedup_high"]) and row["speedup_high"] < 1.0


def divergence_summary(divergence: dict | None) -> str | None:
    """One line on where a cell's quantized model first left the float model."""
    if not divergence:
        return None
    return divergence.get("summary") or f"not localized: {divergence.get('error')}"


def chip(row: pd.Series, cell: int | None = None, with_pays: bool = False) -> Chip:
    """A cell's outcome in a support table: its SQNR when it ran, else the stage where it failed;
    ``with_pays`` adds its speed and size against float on its backend."""
    extra = pays(row) if with_pays else ""
    if row["status"] in (*QUANTIZED, "not_quantized") and not missing(row["sqnr_db"]):
        return Chip(row["status"], db(row["sqnr_db"]), cell=cell, pays=extra)
    return Chip(row["status"], row["stage"] or "", cell=cell, pays=extra)


def observed(row: pd.Series) -> Chip:
    """A cell's status by name, with where and how it failed, or why it did not pass, and its
    departure from its simulation."""
    if row["stage"]:
        return Chip(row["status"], f"at {row['stage']}: {row['error_type']}: {short(row['error_message'])}", True)
    notes = [f"({short(row['reason'])})"] if row["reason"] else []
    if row["fidelity"] == Fidelity.DEPARTS.value:
        notes.append(f"departs from its {'stand-in ' if row['stand_in'] else ''}simulation: {row['fidelity_reason']}")
    return Chip(row["status"], "; ".join(notes), True)


def departures(run: Run) -> pd.DataFrame:
    """Quantized cells whose output leaves the mode's own simulation: the steps against the limit,
    the first layer where it leaves, and whether that is known (with its reason), new, or from a
    stand-in simulation (unconfirmed)."""
    picked = run.df[run.df["fidelity"] == Fidelity.DEPARTS.value]
    rows = []
    for _, r in picked.iterrows():
        expected = r["expected_fidelity"] if isinstance(r["expected_fidelity"], dict) else {}
        rows.append({"cell": r["case_id"], "status": Chip(r["status"], word=True),
                     "departure": r["fidelity_reason"] or "", "first divergence": r["divergence"] or "",
                     "verdict": VERDICT_TEXT.get(r["fidelity_verdict"], r["fidelity_verdict"] or ""),
                     "simulation": "stand-in" if r["stand_in"] else "the mode's own",
                     "reason": short(expected.get("reason"), 300) if expected.get("fidelity") == "departs" else ""})
    return pd.DataFrame(rows)


def fidelity_counts(run: Run) -> dict[str, int]:
    """Quantized cells by fidelity, and the departures by verdict."""
    quantized = run.df[run.df["fidelity"].notna()]
    departs = quantized[quantized["fidelity"] == Fidelity.DEPARTS.value]
    counts = {"faithful": int((quantized["fidelity"] == Fidelity.FAITHFUL.value).sum()), "departs": len(departs)}
    counts.update({f"departs {v}": n for v, n in Counter(departs["fidelity_verdict"].dropna()).items()})
    counts["pass departs"] = int((departs["status"] == "pass").sum())
    return counts


def _by_backend(run: Run, df: pd.DataFrame, keys: list[str], cell) -> pd.DataFrame:
    """One row per group of ``keys``, one column per backend present in ``df``: ``cell(cells)`` or NO_PATH."""
    backends = run.axis("backend", df["backend"])
    rows = []
    for values, group in df.groupby(keys, sort=False):
        row = dict(zip(keys, values if isinstance(values, tuple) else (values,)))
        for backend in backends:
            cells = group[group["backend"] == backend]
            row[backend] = cell(cells) if len(cells) else NO_PATH
        rows.append(row)
    return pd.DataFrame(rows, columns=[*keys, *backends])


def mode_support(run: Run) -> pd.DataFrame:
    """Mode and scheme rows, backend columns: rated tallies over every model of the run (the float
    scheme's cells are the float parity table's)."""
    return _by_backend(run, run.df[run.df["scheme"] != FLOAT_SCHEME], ["mode", "scheme"],
                       lambda cells: Tally.of(cells["status"], rated=True, cells=cells.index))


def model_support(run: Run) -> pd.DataFrame:
    """Whole-model rows (reference models and the zoo's real architectures), backend columns: rated
    tallies over every mode and scheme, so what works on each architecture reads in one row."""
    df = run.df[run.df["kind"].isin(WHOLE_MODELS)]
    return _by_backend(run, df, ["model", "kind"], lambda cells: Tally.of(cells["status"], rated=True))


def qspec_support(run: Run) -> pd.DataFrame:
    """Knob rows (qspec and mode), backend columns: which knobs of a quantization config each
    backend takes. Only qspecs other than ``default``; the default row of each mode beside them
    as the baseline, over the same models."""
    df = run.df
    varied = df[df["qspec"] != DEFAULT_QSPEC]
    if not len(varied):
        return pd.DataFrame()
    scope = df[df["model"].isin(set(varied["model"])) & df["mode"].isin(set(varied["mode"]))]
    scope = scope[scope["mode"] != "conversion"]
    table = _by_backend(run, scope, ["qspec", "mode"], lambda cells: Tally.of(cells["status"], rated=True))
    if not len(table):
        return table
    return table.sort_values(["qspec"], key=lambda c: c.map(lambda q: (q != DEFAULT_QSPEC, q)), kind="stable") \
        .reset_index(drop=True)


# The guide's "complete examples" layout: its model modes, and its three columns.
GUIDE_MODES = ("eager", "fx", "pt2e")
GUIDE_SCHEMES = ("ptq_static", "ptq_dynamic", "qat")


def guide_examples(run: Run) -> pd.DataFrame:
    """The guide's "Quantization complete examples" table, one per backend: backend and mode rows
    (eager, FX, PT2E), a column per scheme (PTQ static, PTQ dynamic, QAT); the default qspec
    over the reference and zoo models, rated tallies."""
    df = run.df[run.df["mode"].isin(GUIDE_MODES) & (run.df["qspec"] == DEFAULT_QSPEC)
                & run.df["kind"].isin(WHOLE_MODELS)]
    rows = []
    for backend in run.axis("backend", df["backend"]):
        for mode in run.axis("mode", df["mode"]):
            cells = df[(df["backend"] == backend) & (df["mode"] == mode)]
            if not len(cells):
                continue
            row = {"backend": backend, "mode": mode}
            for scheme in GUIDE_SCHEMES:
                picked = cells[cells["scheme"] == scheme]
                row[scheme] = Tally.of(picked["status"], rated=True) if len(picked) else NO_PATH
            rows.append(row)
    return pd.DataFrame(rows, columns=["backend", "mode", *GUIDE_SCHEMES])


def quantization_classes(run: Run) -> pd.DataFrame:
    """The guide's observer and fake-quantize class tables: a row per class a knob qspec chooses
    (its role: activation observer, weight observer, fake-quant) and mode, backend columns,
    rated tallies over that knob's cells."""
    from matrix.qspecs import CLASS_KNOBS, QSPECS

    roles = {"activation_observer": "activation observer", "weight_observer": "weight observer",
             "fake_quant": "fake-quant"}
    chosen = {}
    for name, qspec in QSPECS.items():
        for knob, classes in CLASS_KNOBS.items():
            if knob in qspec.knobs:
                chosen[name] = (roles[knob], classes[qspec.knobs[knob]])
    df = run.df[run.df["qspec"].isin(chosen)].copy()
    if not len(df):
        return pd.DataFrame()
    df["role"] = df["qspec"].map(lambda q: chosen[q][0])
    df["class"] = df["qspec"].map(lambda q: chosen[q][1])
    order = {name: i for i, name in enumerate(chosen)}
    df = df.sort_values("qspec", key=lambda c: c.map(order), kind="stable")
    return _by_backend(run, df, ["role", "class", "mode"], lambda cells: Tally.of(cells["status"], rated=True))


CONVERSION_TEXT = ("A model carried between representations (FX to PT2E, eager to FX), the QAT model exported "
                   "without convert (batch-norm folded or not), and the float conversions (PyTorch float to each "
                   "backend's format with no quantizer, ONNX float to TFLite through onnx2tf); per model the "
                   "outcome, or the stage where the path breaks.")


def conversion_paths(run: Run) -> pd.DataFrame:
    """One row per conversion path (and the QAT deploy variants), scheme and backend; a column per
    reference model (operators left out) with the cell's status and SQNR, or the stage where the path broke."""
    from matrix.backends import BACKENDS
    from matrix.qspecs import CONVERSION_PATH, EXPORT_ROUTE, QSPECS

    df = run.df
    paths = [q.name for q in QSPECS.values() if q.kind in (CONVERSION_PATH, EXPORT_ROUTE)]
    # The fx mode on a backend without a quantized engine goes through the transplant too, with
    # the backend's own FX BackendConfig: its row sits beside the conversion mode's.
    transplanted = [name for name, b in BACKENDS.items() if b.fx_target is not None and b.engine is None]
    floats = (df["mode"] == "export") & (df["scheme"] == FLOAT_SCHEME)
    picked = df[((df["mode"] == "conversion") | df["qspec"].isin(paths) | floats | (df["mode"] == "onnx2tf")
                 | ((df["mode"] == "fx") & df["backend"].isin(transplanted)))
                & df["kind"].isin(WHOLE_MODELS)].copy()
    if not len(picked):
        return pd.DataFrame()
    fx_rows = picked["mode"] == "fx"
    picked.loc[fx_rows, "qspec"] = picked.loc[fx_rows, "scheme"].map(
        lambda scheme: f"fx_{'qat' if scheme == 'qat' else 'ptq'}_to_pt2e_transplant (the backend's BackendConfig)")
    # The guide's float conversions: PyTorch float to each backend's format, and ONNX to TFLite.
    picked.loc[picked["mode"] == "export", "qspec"] = "pytorch_float (the backend's own export, no quantizer)"
    picked.loc[picked["mode"] == "onnx2tf", "qspec"] = picked.loc[picked["mode"] == "onnx2tf", "qspec"].map(
        lambda qspec: "onnx_float_to_tflite (onnx2tf, then TFLiteConverter)"
        + ("" if qspec == DEFAULT_QSPEC else f", {qspec}"))
    picked = picked.sort_values(["qspec"], kind="stable")
    models = ordered(picked["model"])
    rows = []
    for (qspec, scheme, backend), group in picked.groupby(["qspec", "scheme", "backend"], sort=False):
        row = {"path": qspec, "scheme": scheme, "backend": backend}
        for model in models:
            cells = group[group["model"] == model]
            row[model] = Chips(tuple(chip(r) for _, r in cells.iterrows())) if len(cells) else NO_PATH
        rows.append(row)
    return pd.DataFrame(rows)


def per_model(run: Run) -> pd.DataFrame:
    """Model, kind, mode and scheme rows, backend columns: each cell's outcome, with its row in the frame."""
    return _by_backend(run, run.df, ["model", "kind", "mode", "scheme"],
                       lambda cells: Chips(tuple(chip(r, i, with_pays=True) for i, r in cells.iterrows())))


def pays_off(run: Run) -> pd.DataFrame:
    """One row per model and backend (models only, timed cells): the fastest cell that passes,
    its speed and size against float on that backend, and how many timed cells ran slower than
    float there. Rows of a model run fastest first."""
    df = run.df[run.df["kind"].isin(WHOLE_MODELS) & run.df["speedup"].notna()]
    rows = []
    for (model, backend), group in df.groupby(["model", "backend"], sort=False):
        passing = group[group["status"] == "pass"]
        best = passing.loc[passing["speedup"].idxmax()] if len(passing) else None
        row = {"model": model, "backend": backend, "fastest passing cell": "none passes", "speedup": None,
               "speed": "", "ms: quantized (float)": "", "size: quantized (float)": "",
               "sqnr dB": "", "time by kernel": ""}
        if best is not None:
            row.update({
                "fastest passing cell": " ".join(p for p in (best["mode"], best["scheme"], best["qspec"])
                                                 if p != DEFAULT_QSPEC),
                "speedup": round(float(best["speedup"]), 2),
                "speed": speed(best["speedup"], best["speedup_low"], best["speedup_high"]),
                "ms: quantized (float)": f"{best['quantized_ms']:.3f} ({best['float_ms']:.3f})",
                "size: quantized (float)": f"{kilobytes(best['size_bytes'])} ({kilobytes(best['float_bytes'])})",
                "sqnr dB": db(best["sqnr_db"]), "time by kernel": time_split(best["time_split"])})
        row.update({"passing of timed": f"{len(passing)}/{len(group)}",
                    "slower than float": int(group.apply(slower, axis=1).sum())})
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    table["_model"] = table["model"].map({m: i for i, m in enumerate(run.axis("model"))})
    table = table.sort_values(["_model", "speedup"], ascending=[True, False], na_position="last", kind="stable")
    return table.drop(columns="_model").reset_index(drop=True)


def speedup_by_backend(run: Run) -> pd.DataFrame:
    """Backend rows, scheme columns: the median speedup over float of the passing model cells,
    with how many there are and how many of them ran slower than float."""
    df = run.df[run.df["kind"].isin(WHOLE_MODELS) & run.df["speedup"].notna() & (run.df["status"] == "pass")]
    if not len(df):
        return pd.DataFrame()
    schemes = ordered(df["scheme"], SCHEME_ORDER)
    rows = []
    for backend in run.axis("backend", df["backend"]):
        row = {"backend": backend}
        for scheme in schemes:
            cells = df[(df["backend"] == backend) & (df["scheme"] == scheme)]
            row[scheme] = "" if not len(cells) else (
                f"{cells['speedup'].median():.2f}× ({len(cells)} cells, {int(cells.apply(slower, axis=1).sum())} "
                "slower)")
        rows.append(row)
    return pd.DataFrame(rows)


def documented_vs_observed(run: Run) -> pd.DataFrame:
    """Every cell where the backend docs' claim and the observed status disagree."""
    rows = []
    for _, r in run.df.iterrows():
        claim = r["documented"]
        if isinstance(claim, dict) and claim.get("status") != r["status"] and r["status"] not in NOT_APPLICABLE:
            rows.append({"cell": r["case_id"], "docs say": f"{claim['status']}: {claim['claim']}",
                         "observed": observed(r), "source": claim["source"]})
    return pd.DataFrame(rows)


def known_outcomes(run: Run) -> pd.DataFrame:
    """Accepted non-pass outcomes grouped by their expectation: the cells and what they showed."""
    rows = []
    for _, r in run.df.iterrows():
        expected = r["expected"] if isinstance(r["expected"], dict) else {}
        if expected.get("status", "pass") != "pass":
            rows.append({"expected": expected["status"], "reason": short(expected.get("reason"), 400),
                         "source": expected.get("source"), "cell": r["case_id"], "observed": r["status"]})
    if not rows:
        return pd.DataFrame(rows)
    table = pd.DataFrame(rows)
    grouped = table.groupby(["expected", "reason", "source"], sort=False).agg(
        cells=("cell", list), observed=("observed", lambda s: Tally.of(s)))
    return grouped.reset_index()[["expected", "observed", "reason", "source", "cells"]]


def surprises(run: Run) -> pd.DataFrame:
    """Cells worse or better than expected, and broken cases, with the operator evidence of a
    model cell (:func:`operator_evidence`) and the command that reruns each."""
    picked = run.df[run.df["verdict"].isin(SURPRISES)]
    evidence = operator_evidence(run)
    rows = [{"cell": r["case_id"], "verdict": VERDICT_TEXT[r["verdict"]],
             "expected": (r["expected"] or {}).get("status", "pass"), "observed": observed(r),
             "operator evidence": evidence.get(r["case_id"], ""), "float parity": parity_note(r),
             "reproduce": reproduce(r["nodeid"])} for _, r in picked.iterrows()]
    table = pd.DataFrame(rows)
    if len(table) and not table["float parity"].any():
        table = table.drop(columns="float parity")
    return table


OPERATOR_EVIDENCE_TEXT = (
    "A model cell that did not pass, beside it the operator cells of the run of the same mode, scheme, "
    "backend and qspec, one per layer class the model holds, that did not pass either (*operator evidence*): "
    "the layers, the operator cell, its outcome and why. An operator cell the run did not hold is named as "
    "not run.")


@dataclass(frozen=True)
class Evidence:
    """A model cell's operator evidence: the outcome of each operator cell of its layers that did
    not pass either, and the operator cells the run did not hold."""

    struck: tuple[str, ...]
    not_run: tuple[str, ...]

    def __str__(self) -> str:
        return "; ".join(self.struck + ((f"operator evidence not run: {', '.join(self.not_run)}",)
                                        if self.not_run else ()))


def _evidence(run: Run) -> dict[str, Evidence]:
    """For each whole-model cell that ran and did not pass: per layer class it holds, the outcome of
    that class's operator cell of the same mode, scheme, backend and qspec (the record's
    ``operator_cells``) where that cell did not pass either, with its expectation's reason or its
    error; and the operator cells the run did not hold. Keyed by case id; a cell with none is absent.
    Read it as ``run.evidence``."""
    df = run.df
    operators = df[df["kind"] == "operator"]
    by_id = {r["case_id"]: r for _, r in operators.iterrows()}
    ran = df["kind"].isin(WHOLE_MODELS) & ~df["status"].isin([Status.PASS.value, *NOT_APPLICABLE])
    found: dict[str, Evidence] = {}
    for _, r in df[ran].iterrows():
        struck, not_run = [], []
        for layer, cell in (r["operator_cells"] or {}).items():
            op = by_id.get(cell)
            if op is None:
                not_run.append(cell)
            elif op["status"] != Status.PASS.value:
                held = r["layers"].get(layer, {"count": 0, "names": []})
                names = ", ".join(held["names"]) + (", ..." if held["count"] > len(held["names"]) else "")
                why = _known_reason(op) or short(op["error_message"] or op["reason"], 160)
                outcome = f"{held['count']} {layer} ({names}): {cell}: {op['status']}"
                struck.append(outcome + (f" ({why})" if why else ""))
        if struck or not_run:
            found[r["case_id"]] = Evidence(tuple(struck), tuple(not_run))
    return found


def operator_evidence(run: Run) -> dict[str, str]:
    """Each model cell's operator evidence (:class:`Evidence`) in words, by case id."""
    return {cid: str(evidence) for cid, evidence in run.evidence.items()}


def explained_by_operators(run: Run) -> int:
    """The surprising model cells (worse than expected, broken) beside which an operator cell of
    theirs did not pass either."""
    evidence = run.evidence
    picked = run.df[run.df["verdict"].isin([Verdict.WORSE.value, Verdict.BROKEN.value])]
    return sum(1 for cid in picked["case_id"] if cid in evidence and evidence[cid].struck)


def stale_expectations(env: dict) -> list[str]:
    """The run's stale expectation entries, a line each: the entry, what it expects, and why (a run
    written before runs recorded why listed only the entries that matched no cell)."""
    return [f"{s['entry']} (expects {s['status']}) {s.get('why', MATCHES_NO_CELL)}"
            for s in env.get("stale_expectations") or []]


YOUR_MODELS_TEXT = ("Models brought with `--models-from` or an entry point, one row per cell that did not "
                    "pass: first what nothing explains (worse than expected, broken), then what an expectation "
                    "by cause explains, with the start of its reason, and the operator cells of its layers that "
                    "did not pass either; `passed` counts the model's passing cells.")
UNEXPLAINED_FIRST = {Verdict.WORSE.value: 0, Verdict.BROKEN.value: 0, Verdict.UNCONFIRMED.value: 1,
                     Verdict.BETTER.value: 2, Verdict.KNOWN.value: 3, Verdict.UNAVAILABLE.value: 4}


def your_models(run: Run) -> pd.DataFrame:
    """The cells of the run's models that come from outside the suite and did not pass, the
    unexplained first, each with the explanation the expectations give it."""
    df = run.df[run.df["model_source"].notna()]
    evidence = operator_evidence(run)
    rows = []
    for model, cells in df.groupby("model", sort=False):
        passed = int((cells["status"] == Status.PASS.value).sum())
        for _, r in cells[cells["status"] != Status.PASS.value].iterrows():
            explained = r["verdict"] == Verdict.KNOWN.value
            rows.append({"model": model, "passed": f"{passed}/{len(cells)}", "cell": r["case_id"],
                         "observed": observed(r), "verdict": VERDICT_TEXT.get(r["verdict"], r["verdict"] or ""),
                         "explanation": _known_reason(r) if explained else "",
                         "operator evidence": evidence.get(r["case_id"], ""),
                         "order": UNEXPLAINED_FIRST.get(r["verdict"], 0)})
    if not rows:
        return pd.DataFrame(rows)
    table = pd.DataFrame(rows).sort_values(["model", "order"], kind="stable")
    return table.drop(columns="order").reset_index(drop=True)


def details(run: Run) -> pd.DataFrame:
    """Every cell: status, stage, error, metrics, op counts, seconds, first divergence."""
    def number(value: object, digits: int = 2) -> str:
        return "" if missing(value) else f"{value:.{digits}f}"

    rows = []
    for _, r in run.df.iterrows():
        rows.append({
            "cell": r["case_id"], "status": Chip(r["status"], word=True),
            "float parity": r["float_parity"] or "",
            "stage": r["stage"] or "", "error / reason": short(error_or_reason(r)),
            "sqnr dB": "" if missing(r["sqnr_db"]) else db(r["sqnr_db"]),
            "sim dB": "" if missing(r["sqnr_sim_db"]) else db(r["sqnr_sim_db"]),
            "lsb vs sim": number(r["lsb_err_vs_sim"]), "fidelity": r["fidelity"] or "",
            "top1": number(r["top1_agree"]),
            "acc": number(r["accuracy"], 3), "q ops": "" if missing(r["quantized_ops"]) else int(r["quantized_ops"]),
            "float ops": "" if missing(r["float_ops"]) else int(r["float_ops"]),
            "speedup": "" if missing(r["speedup"]) else f"{r['speedup']:.2f}",
            "size": kilobytes(r["size_bytes"]), "compression": number(r["compression"]),
            "int8 time": int8_share(r["time_split"]), "s": r["seconds"],
            "first divergence": r["divergence"] or "",
            "reproduce": reproduce(r["nodeid"]) if r["status"] in FAILED else "",
        })
    return pd.DataFrame(rows)


def operator_support(run: Run) -> pd.DataFrame:
    """PyTorch's operator support table, generated from the run: operator rows grouped by mode, backend ×
    scheme columns, each cell the statuses of its cells (one per qspec); ``NO_PATH`` where no code path
    exists. ``passing`` counts the row's passing cells over its applicable ones. Only operator cells."""
    df = run.df
    operators = df[df["kind"] == "operator"]
    if not len(operators):
        return pd.DataFrame()
    schemes = ordered(operators["scheme"], SCHEME_ORDER)
    columns = [(backend, scheme) for backend in run.axis("backend", operators["backend"]) for scheme in schemes
               if ((operators["backend"] == backend) & (operators["scheme"] == scheme)).any()]
    rows = []
    for (mode, operator), group in operators.groupby(["mode", "model"], sort=False):
        row = {"mode": mode, "operator": operator}
        for backend, scheme in columns:
            statuses = group[(group["backend"] == backend) & (group["scheme"] == scheme)]["status"]
            row[f"{backend} {scheme}"] = Chips(tuple(Chip(s) for s in statuses)) if len(statuses) else NO_PATH
        row["passing"] = Tally.of(group["status"])
        rows.append(row)
    modes = ordered(operators["mode"])
    return pd.DataFrame(rows).sort_values("mode", key=lambda m: m.map(modes.index), kind="stable")


def operator_outcomes(run: Run) -> pd.DataFrame:
    """Operator cells that did not pass, with the stage and error (or the reason) and whether that was
    expected; backends whose cells ended the same way share a row."""
    df = run.df
    picked = df[(df["kind"] == "operator") & (df["status"] != "pass")]
    rows = []
    for _, r in picked.iterrows():
        said = f"{r['error_type']}: {r['error_message']}" if r["error_type"] else r["reason"]
        rows.append({"operator": r["model"], "mode": r["mode"], "scheme": r["scheme"], "outcome": r["status"],
                     "backend": r["backend"], "stage": r["stage"] or "", "error / reason": short(said),
                     "verdict": VERDICT_TEXT.get(r["verdict"], r["verdict"] or ""),
                     "known because": _known_reason(r)})
    if not rows:
        return pd.DataFrame(rows)
    keys = ["operator", "mode", "scheme", "outcome", "stage", "error / reason", "verdict", "known because"]
    table = pd.DataFrame(rows).groupby(keys, sort=False)["backend"].agg(
        lambda backends: ", ".join(run.axis("backend", backends))).reset_index()
    table["outcome"] = [Chip(s, word=True) for s in table["outcome"]]
    return table[["operator", "mode", "scheme", "outcome", "backend", "stage", "error / reason", "verdict",
                  "known because"]]


def operator_outcomes_by_cause(run: Run) -> pd.DataFrame:
    """The operator outcomes one row per cause: the outcome, the verdict, and the cause (the known
    reason, or the stage and error of a cell no entry explains), with the operators it struck and
    where (mode, scheme and backends, the first few). What a reader of the summary needs from it
    is the causes; each cell is in report.html."""
    table = operator_outcomes(run)
    if not len(table):
        return table
    table = table.assign(cause=[known or (f"{stage}: {said}" if stage else said) for known, stage, said
                                in zip(table["known because"], table["stage"], table["error / reason"])],
                         where=table["mode"] + " " + table["scheme"] + ": " + table["backend"])
    merged = table.groupby(["outcome", "verdict", "cause"], sort=False).agg(
        operators=("operator", lambda names: ", ".join(dict.fromkeys(names))),
        cells=("backend", lambda backends: sum(len(b.split(", ")) for b in backends)),
        where=("where", lambda places: examples(list(dict.fromkeys(places)), WHERE_SHOWN)))
    return merged.reset_index()[["outcome", "cells", "operators", "where", "verdict", "cause"]]


# How many places (mode, scheme: backends) a row of operator outcomes names before "and N more".
WHERE_SHOWN = 4


def examples(names: list[str], shown: int) -> str:
    """The first ``shown`` of ``names``, and how many more."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def _known_reason(r: pd.Series) -> str:
    """The reason of the expectation a cell met, shortened; empty for a cell that did not meet one."""
    expected = r["expected"] if isinstance(r["expected"], dict) else {}
    met = expected.get("status") == r["status"] and r["verdict"] == Verdict.KNOWN.value
    return short(expected.get("reason"), 200) if met else ""


def fixed_qparams(run: Run, records: list[dict]) -> pd.DataFrame:
    """The output scale and zero point that fixed-qparams ops (sigmoid, hardsigmoid, softmax, tanh) ran
    with, as each cell's inspection recorded them, against the values PyTorch fixes for them. Cells of one
    model that saw the same op with the same qparams share a row."""
    groups: dict[tuple, list[dict]] = {}
    for record in sorted(records, key=lambda r: r["case_id"]):
        seen = (record.get("inspection_notes") or {}).get("output_qparams") or {}
        for op, qparams in seen.items():
            for scale, zero_point, dtype in qparams:
                if (op.split(".")[-1], dtype) in FIXED_OUTPUT_QPARAMS:
                    groups.setdefault((record["model"], op, dtype, scale, zero_point), []).append(record)
    rows = []
    for (model, op, dtype, scale, zero_point), cells in groups.items():
        fixed = FIXED_OUTPUT_QPARAMS[(op.split(".")[-1], dtype)]
        agrees = abs(scale - fixed[0]) <= 1e-6 * fixed[0] and zero_point == fixed[1]
        rows.append({"model": model, "op": op, "dtype": dtype, "output scale": f"{scale:.8g}",
                     "zero point": zero_point, "fixed": f"{fixed[0]:.8g}, {fixed[1]}",
                     "check": Chip("pass", "fixed") if agrees else Chip("fail", "differs"),
                     "cells": _cells_by_mode(run, cells)})
    return pd.DataFrame(rows)


def _cells_by_mode(run: Run, records: list[dict]) -> str:
    """``eager ptq_static: fbgemm, x86; fx qat: onednn`` for a list of cell records."""
    backends: dict[str, list[str]] = {}
    for record in records:
        backends.setdefault(f"{record['mode']} {record['scheme']}", []).append(record["backend"])
    return "; ".join(f"{where}: {', '.join(run.axis('backend', pd.Series(names)))}"
                     for where, names in backends.items())


def normalize_message(message: object, limit: int = 500) -> str:
    """An error's first line with addresses and numbers masked, so cells that fail the same way group together."""
    text = "" if missing(message) else str(message)
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


def failure_key(record, limit: int = 500) -> tuple[str, str, str]:
    """A record's (a dict's or a row's) signature parts: its stage, its exception type (or status) and
    its masked message (or reason)."""
    return (record["stage"] or "", record["error_type"] or record["status"],
            normalize_message(record["error_message"] or record["reason"], limit))


def failure_groups(run: Run) -> list[FailureGroup]:
    """Every failed cell (fail, crash, timeout, error) in groups by signature, largest first."""
    failed = run.df[run.df["status"].isin(FAILED)]
    keys = failed.apply(failure_key, axis=1)
    groups = [FailureGroup(*key, failed[keys == key]) for key in dict.fromkeys(keys)] if len(failed) else []
    return sorted(groups, key=lambda g: (-len(g.cells), g.signature))


def error_split(run: Run) -> pd.DataFrame:
    """Quantized cells with the recipe's own error beside the backend's: what each side costs.

    ``sqnr_sim_db`` is the mode's fake-quant simulation against float (the recipe); ``lsb_err_vs_sim`` is the
    deployed output's largest distance from that simulation in output quantization steps (the backend).
    ``over`` names the side over the limits the cell was judged by (kept in its record).
    """
    df = run.df
    quantized = df[df["status"].isin(QUANTIZED) & df["sqnr_sim_db"].notna()]
    table = quantized[["case_id", "status", "sqnr_db", "sqnr_sim_db", "lsb_err_vs_sim", "nodeid"]].copy()
    table["over"] = [_over(r, r["limits"]) for _, r in quantized.iterrows()]
    return table


def _over(row: pd.Series, limit: object) -> str:
    if not isinstance(limit, dict):
        return ""
    sides = []
    if not missing(row["sqnr_sim_db"]) and row["sqnr_sim_db"] < limit.get("min_sqnr_db", float("-inf")):
        sides.append("recipe")
    if not missing(row["lsb_err_vs_sim"]) and row["lsb_err_vs_sim"] > limit.get("max_lsb_err_vs_sim", float("inf")):
        sides.append("backend")
    return " and ".join(sides)


def environment_rows(env: dict) -> list[tuple[str, str]]:
    """The run's environment as (field, text) pairs, packages as recorded in its env.json."""
    versions = env.get("versions") or {}
    return [
        ("date", env.get("date") or "?"), ("suite commit", env.get("suite_commit") or "?"),
        ("python", env.get("python") or "?"), ("platform", env.get("platform") or "?"),
        ("CPU", f"{env.get('cpu', '?')} ({env.get('cores', '?')} cores"
                + (f"; {' '.join(env['cpu_flags'])})" if env.get("cpu_flags") else ")")),
        ("quantized engines", ", ".join(env.get("quantized_engines") or [])),
        ("packages", ", ".join(f"{p} {v}" for p, v in versions.items() if v)),
        ("not installed", ", ".join(p for p, v in versions.items() if not v) or "none"),
        ("command", env.get("command") or "?"),
    ]


def merge_sources(env: dict) -> list[str]:
    """Where a merged run came from, one line each."""
    return [f"{s['run']} ({s.get('label') or s.get('date') or '?'}): {s['cells']} cells"
            for s in env.get("merged_from") or []]

