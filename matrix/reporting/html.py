"""The report, the diff and the comparison of runs as self-contained HTML pages: inline CSS and JS,
the records embedded, no network at view time.

Records in, a page out, no pytest. The tables are plain HTML, so the page reads without its script;
the script adds filters on every axis and status, sorting by any column, and a panel that shows a
cell's whole record. Every text from a record is escaped.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import re
from collections import Counter
from html import escape
from pathlib import Path

import pandas as pd

from matrix.reporting import compare, tables
from matrix.reporting.compare import RunDiff
from matrix.reporting.tables import MEANINGS, VERDICT_TEXT, VERDICT_WORD
from matrix.reporting.values import Chip, Chips, Command, NoPath, Tally, db, missing, reproduce, short, speed
from matrix.runs import Run as RunFolder
from matrix.vocabulary import AXES, FIDELITIES, NOT_APPLICABLE, QUANTIZED, STATUSES, VERDICTS

ASSETS = Path(__file__).resolve().parent.parent / "html_assets"
# Symbols that common text fonts carry (the Markdown report's emoji need an emoji font).
SYMBOLS = {"pass": "✓", "inaccurate": "≈", "not_quantized": "○", "fail": "✗", "crash": "↯", "timeout": "◷",
           "unavailable": "⊘", "error": "⚙"}
FILTER_AXES = ("status", "verdict", "fidelity", *AXES)
SECTIONS = (("summary", "Summary"), ("mode-support", "Mode support"), ("operator-support", "Operators"),
            ("per-model", "Per model"), ("pays", "Does it pay"), ("documented", "Docs vs observed"),
            ("failures", "Failures"), ("error-split", "Error split"), ("fidelity", "Fidelity"),
            ("expectations", "Expectations"), ("cells", "All cells"), ("legend", "Legend"))


def _sym(status: str) -> str:
    return SYMBOLS.get(status, "")


def _e(value: object) -> str:
    return "" if missing(value) else escape(str(value))


def text(value: object) -> str:
    """Record text as HTML: escaped, its `code` spans and web addresses kept as such."""
    html = re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(value))
    return re.sub(r"https?://[^\s<)]+", _link, html)


def _link(found: re.Match) -> str:
    """A link whose text is the host and the part after ``#`` when the address is long."""
    url = found[0]
    shown = url if len(url) <= 48 else f"{url.split('/')[2]}/…" + (f"#{url.split('#', 1)[1]}" if "#" in url else "")
    return f'<a href="{url}" target="_blank" rel="noreferrer" title="{url}">{shown}</a>'


def rate_colour(passed: int, applicable: int) -> str:
    """Red (none passes) through yellow to green (all pass); the script computes the same."""
    return f"hsl({round(120 * passed / applicable)}, 65%, 82%)"


def tally_html(value: Tally) -> str:
    others = "".join(f'<span title="{n} {s}">{_sym(s)}{n}</span>' for s, n in value.others())
    rate = f"<b>{value.passed}/{value.applicable}</b>" if value.applicable else ""
    return f'{rate}<span class="others">{others}</span>'


def chip_html(value: Chip) -> str:
    parts = [_sym(value.status), _e(value.status) if value.word else "", text(value.note),
             f"({_e(value.pays)})" if value.pays else ""]
    return f'<span class="chip s-{_e(value.status)}">{" ".join(p for p in parts if p)}</span>'


def td(value: object) -> str:
    """One table cell: a tally coloured by its pass rate, outcomes by their status, text escaped."""
    if isinstance(value, Tally):
        if value.applicable:
            return f'<td class="count" style="background:{rate_colour(value.passed, value.applicable)}">' \
                   f"{tally_html(value)}</td>"
        return f"<td>{tally_html(value)}</td>"
    if isinstance(value, (Chip, Chips)):
        chips = value.chips if isinstance(value, Chips) else (value,)
        statuses = [c.status for c in chips]
        body = " ".join(chip_html(c) for c in chips)
        if len(set(statuses)) == 1:
            return f'<td class="symbols s-{_e(statuses[0])}" title="{_e(statuses[0])}">{body}</td>'
        applicable = [s for s in statuses if s not in NOT_APPLICABLE]
        style = f' style="background:{rate_colour(applicable.count("pass"), len(applicable))}"' if applicable else ""
        return f'<td class="symbols"{style} title="{_e(" ".join(statuses))}">{body}</td>'
    if isinstance(value, Command):
        return f'<td><code class="cmd">{_e(value.text)}</code></td>'
    if isinstance(value, NoPath):
        return '<td class="nopath" title="no code path: not a cell">·</td>'
    return f"<td>{text(value)}</td>"


def _th(columns: list[str]) -> str:
    return "<thead><tr>" + "".join(f"<th>{_e(c)}</th>" for c in columns) + "</tr></thead>"


def _indices(rows: pd.DataFrame) -> str:
    return " ".join(str(i) for i in rows.index)


def header(env: dict, run: tables.Run) -> str:
    df = run.df
    counts = Counter(df["status"])
    applicable = sum(n for s, n in counts.items() if s not in NOT_APPLICABLE)
    passed = counts.get("pass", 0)
    rate = f"{passed / applicable:.0%}" if applicable else "n/a"
    bar = "".join(f'<a class="seg s-{s}" data-filter="status" data-value="{s}" style="flex:{counts[s]}" '
                  f'title="{counts[s]} {s}: {_e(MEANINGS[s])}">{_sym(s)} {counts[s]}</a>'
                  for s in STATUSES if counts.get(s))
    chips = " ".join(f'<a class="chip s-{s}" data-filter="status" data-value="{s}">{_sym(s)} {s} {counts[s]}</a>'
                     for s in STATUSES if counts.get(s))
    verdicts = Counter(df["verdict"].dropna())
    against = " · ".join(f'<a data-filter="verdict" data-value="{_e(v)}">{_e(VERDICT_TEXT.get(v, v))} {n}</a>'
                         for v, n in sorted(verdicts.items()))
    return f"""<header class="top" id="summary"><div class="headline">
<h1>qmatrix report: {_e(run_title(env))}</h1>
<p class="rate"><b>{rate}</b> of the {applicable} applicable cells pass
<span class="muted">({passed} pass; unavailable {counts.get('unavailable', 0)} and error
{counts.get('error', 0)} are not counted; {len(df)} cells in all)</span></p>
<div class="statusbar">{bar}</div><p>{chips}</p>
<p class="muted">Against expectations: {against or 'no verdicts recorded'}. Click a count to filter.</p>
{fidelity_line(run)}
</div>{environment(env)}</header>"""


def fidelity_line(run: tables.Run) -> str:
    """The quantized cells by fidelity to their simulation, each count a filter."""
    found = tables.fidelity_counts(run)
    if not found["faithful"] and not found["departs"]:
        return ""
    verdicts = "".join(f"; {_e(VERDICT_TEXT.get(v, v))} {found[f'departs {v}']}" for v in VERDICTS
                       if found.get(f"departs {v}"))
    return (f'<p class="muted">Fidelity to the simulation: <a data-filter="fidelity" data-value="faithful">faithful '
            f'{found["faithful"]}</a> · <a data-filter="fidelity" data-value="departs">departs {found["departs"]}</a>'
            f' ({found["pass departs"]} of them pass{verdicts}).</p>')


def run_title(env: dict) -> str:
    """The run's label, else its date as people write it."""
    if env.get("label"):
        return env["label"]
    date = env.get("date") or "run"
    return date.replace("T", " ").replace("+00:00", " UTC")


def environment(env: dict) -> str:
    rows = tables.environment_rows(env)
    rows += [("merged from", line) for line in tables.merge_sources(env)]
    rows += [("merge conflict", c) for c in env.get("merge_conflicts") or []]
    rows += [("model source", e) for e in env.get("model_source_errors") or []]
    body = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v) or '?'}</dd>" for k, v in rows)
    return f'<dl class="env">{body}</dl>'


def filter_bar(run: tables.Run, sections: str) -> str:
    """Links to the sections present in ``sections``, and a filter per axis, status and verdict."""
    links = " ".join(f'<a href="#{anchor}">{_e(name)}</a>' for anchor, name in SECTIONS if f'id="{anchor}"' in sections)
    selects = []
    for axis in FILTER_AXES:
        counts = Counter(run.df[axis].dropna())
        order = {"status": STATUSES, "verdict": VERDICTS, "fidelity": FIDELITIES}.get(axis) or run.order.get(axis) \
            or sorted(counts)
        values = [v for v in order if v in counts] + sorted(v for v in counts if v not in order)
        options = "".join(f'<option value="{_e(v)}">{_e(VERDICT_TEXT.get(v, v) if axis == "verdict" else v)} '
                          f"({counts[v]})</option>" for v in values)
        selects.append(f'<label>{axis}<select data-axis="{axis}"><option value="">all</option>{options}</select>'
                       "</label>")
    return f"""<nav class="bar" id="bar"><div class="links">{links}</div><div class="filters">{"".join(selects)}
<label>search<input id="search" type="search" placeholder="id, stage, error…"></label>
<button id="reset" type="button">reset</button><span id="shown" class="muted">{len(run.df)} cells</span></div></nav>"""


# A section's body longer than this waits in a template until the section is scrolled near or a
# filter is chosen: a browser lays out every table of the page before it shows it (the per-model,
# operator and error-split tables of the whole matrix took 1.4 of its 2.1 s to open, 2026-12-08).
LAZY_BYTES = 200_000


def _section(anchor: str, title: str, intro: str, body: str) -> str:
    if len(body) > LAZY_BYTES and anchor != "cells":  # the cell table keeps its rows in a template of its own
        body = f'<template class="lazy">{body}</template>'
    return (f'<section id="{anchor}"><h2>{_e(title)}</h2><p class="intro">{intro}</p>{body}'
            '<p class="none-shown" hidden>No cell here matches the filters.</p></section>')


def mode_support(run: tables.Run) -> str:
    """The mode-support table, each count a live tally of its cells (the filters recount it)."""
    support = tables.mode_support(run)
    rows = []
    for _, row in support.iterrows():
        mode, scheme = row["mode"], row["scheme"]
        tds = [td(value) if isinstance(value, NoPath) else
               f'<td class="tally" data-cells="{" ".join(map(str, value.cells))}" data-mode="{_e(mode)}" '
               f'data-scheme="{_e(scheme)}" data-backend="{_e(backend)}" title="list these cells">'
               f"{tally_html(value)}</td>" for backend, value in row.iloc[2:].items()]
        rows.append(f"<tr><td>{_e(mode)}</td><td>{_e(scheme)}</td>{''.join(tds)}</tr>")
    head = _th(list(support.columns))
    body = f'<table class="sortable support">{head}<tbody>{"".join(rows)}</tbody></table>'
    return _section("mode-support", "Mode support",
                    "Mode and scheme rows, backend columns. A count is passing cells over applicable ones "
                    "(unavailable and error left out), over every model that the filters let through; its colour "
                    "runs from red (none passes) to green (all pass). Click a count to list its cells.", body)


def summary_section(anchor: str, title: str, intro: str, table: pd.DataFrame) -> str:
    """A summary table of the report as a section of the page (empty when the run has no rows)."""
    if not len(table):
        return ""
    return _section(anchor, title, intro + " Filters do not apply here.", frame_table(table))


def frame_table(table: pd.DataFrame) -> str:
    body = "".join("<tr>" + "".join(td(value) for value in row) + "</tr>" for _, row in table.iterrows())
    head = "".join(f"<th>{_e(c).replace(' ', '<br>')}</th>" for c in table.columns)
    return f'<div class="wide"><table class="sortable summary"><thead><tr>{head}</tr></thead><tbody>{body}</tbody>' \
           "</table></div>"


def _chip(value: Chip, run: tables.Run) -> str:
    """A cell's chip in the per-model table: its SQNR, ``float`` when nothing was quantized, or the stage."""
    row = run.df.loc[value.cell]
    status = value.status
    shown = "float" if status == "not_quantized" else f"{value.note} dB" if status in QUANTIZED and not \
        missing(row["sqnr_db"]) else value.note or status
    hint = f"{row['case_id']}: {status}" + (f" at {row['stage']}: {row['error_type']}" if row["stage"] else "")
    pays = f' <span class="pays">{_e(value.pays)}</span>' if value.pays else ""
    return f'<span class="chip s-{_e(status)}" data-i="{value.cell}" title="{_e(hint)}">{_sym(status)} ' \
           f"{_e(shown)}{pays}</span>"


def per_model(run: tables.Run) -> str:
    support = tables.per_model(run)
    rows = []
    for _, row in support.iterrows():
        cells = [c.cell for value in row.iloc[4:] if isinstance(value, Chips) for c in value.chips]
        tds = "".join(td(value) if isinstance(value, NoPath) else
                      f"<td>{' '.join(_chip(c, run) for c in value.chips)}</td>" for value in row.iloc[4:])
        rows.append(f'<tr data-cells="{" ".join(map(str, sorted(cells)))}">'
                    + "".join(f"<td>{_e(v)}</td>" for v in row.iloc[:4]) + f"{tds}</tr>")
    body = f'<table class="sortable filterable">{_th(list(support.columns))}<tbody>{"".join(rows)}</tbody></table>'
    return _section("per-model", "Per model",
                    "One row per model, mode and scheme; a chip per cell with the SQNR of the deployed output "
                    "against float (∞: identical outputs), <i>float</i> when nothing was quantized, or the stage "
                    "that failed, then (for a timed cell) its speed and size against the float model deployed on "
                    "the same backend. Click a chip for the cell's record.", body)


def keyed_table(table: pd.DataFrame, positions: dict[str, int]) -> str:
    """A report table whose ``cell`` (or ``cells``) column links each row to the records it is about."""
    body = []
    for _, row in table.iterrows():
        if "cell" in table.columns:
            key = f' data-i="{positions[row["cell"]]}"'
        else:
            key = f' data-cells="{" ".join(str(positions[c]) for c in str(row["cells"]).split(", "))}"'
        tds = "".join(f'<td class="id">{_e(v)}</td>' if c == "cell" else td(v) for c, v in row.items())
        body.append(f"<tr{key}>{tds}</tr>")
    return f'<table class="sortable filterable">{_th(list(table.columns))}<tbody>{"".join(body)}</tbody></table>'


def documented(run: tables.Run, positions: dict[str, int]) -> str:
    table = tables.documented_vs_observed(run)
    body = keyed_table(table, positions) if len(table) else "<p><i>none</i></p>"
    return _section("documented", "Documented versus observed",
                    "Every cell where the backend's own documentation claims one outcome and the run found "
                    "another.", body)


def failures(run: tables.Run) -> str:
    groups = tables.failure_groups(run)
    total = sum(len(g.cells) for g in groups)
    return _section("failures", "Failures by signature",
                    f"{total} failed cells (fail, crash, timeout, error) in {len(groups)} groups, largest first. "
                    "A signature is the stage, the exception type and the first line of the message with numbers "
                    "and addresses masked. Each cell's command reruns it alone.",
                    "".join(_failure_group(n, g) for n, g in enumerate(groups, 1)) or "<p><i>none</i></p>")


def _failure_group(number: int, group: tables.FailureGroup) -> str:
    rows = "".join(f'<tr data-i="{i}"><td class="id">{_e(r["case_id"])}</td>{td(Chip(r["status"], word=True))}'
                   f"{td(reproduce(r['nodeid']))}</tr>" for i, r in group.cells.iterrows())
    whole = f"<pre>{_e(group.message)}</pre>" if len(group.message) > 90 else ""
    return (f'<div class="group" data-cells="{_indices(group.cells)}"><h3>{number}. <span class="n">'
            f"{len(group.cells)}</span> × {_e(group.stage or '(no stage)')}: {_e(group.error_type)}: "
            f'<span class="gist">{text(short(group.message, 90))}</span></h3>{whole}<table class="filterable">'
            f"{_th(['cell', 'status', 'reproduce'])}<tbody>{rows}</tbody></table></div>")


def error_split(run: tables.Run) -> str:
    split = tables.error_split(run)
    rows = []
    for i, r in split.iterrows():
        over = r["over"]
        rows.append(
            f'<tr data-i="{i}"><td>{_e(r["case_id"])}</td><td data-v="{STATUSES.index(r["status"])}">'
            f"{chip_html(Chip(r['status'], word=True))}</td>{_number(r['sqnr_db'], db_=True)}"
            f'{_number(r["sqnr_sim_db"], db_=True, over="recipe" in over)}'
            f'{_number(r["lsb_err_vs_sim"], over="backend" in over)}<td>{_e(over)}</td></tr>')
    columns = ["cell", "status", "deployed dB", "recipe dB (sim)", "backend error (LSB vs sim)", "over threshold"]
    body = f'<table class="sortable filterable">{_th(columns)}<tbody>{"".join(rows)}</tbody></table>'
    return _section("error-split", "Error split: recipe versus backend",
                    "For each quantized cell: <i>recipe dB</i> is the SQNR of the mode's own fake-quant simulation "
                    "against float, what the quantization recipe costs; <i>backend error</i> is the deployed "
                    "output's largest distance from that simulation in output quantization steps, what the "
                    "backend's kernels add. A value over the limit the cell was judged by (kept in its record) is "
                    "red.", body)


def _number(value: object, db_: bool = False, over: bool = False) -> str:
    if missing(value):
        return '<td data-v=""></td>'
    shown = db(value) if db_ else f"{value:.2f}"
    return f'<td class="num{" over" if over else ""}" data-v="{value}">{shown}</td>'


def departures(run: tables.Run, positions: dict[str, int]) -> str:
    found = tables.departures(run)
    body = keyed_table(found, positions) if len(found) else "<p><i>none</i></p>"
    return _section("fidelity", "Fidelity to the simulation",
                    "Quantized cells more than <code>max_lsb_err_vs_sim</code> steps from the mode's own simulation, "
                    "whatever their accuracy against float: the kernels do not compute what the recipe simulates. "
                    "A departure from a stand-in simulation is unconfirmed until the stand-in is checked.", body)


def expectations(run: tables.Run, env: dict, positions: dict[str, int]) -> str:
    surprising, known = tables.surprises(run), tables.known_outcomes(run)
    if len(known):
        known["cells"] = known["cells"].map(", ".join)
    stale = tables.stale_expectations(env)
    stale_list = "".join(f"<li>{_e(line)}</li>" for line in stale)
    body = ("<h3>Surprises: worse than expected (pytest failed) or better (xpass)</h3>"
            + f"<p>{_e(tables.OPERATOR_EVIDENCE_TEXT).replace('*', '')} Surprising model cells with operator "
              f"evidence: {tables.explained_by_operators(run)}.</p>"
            + (keyed_table(surprising, positions) if len(surprising) else "<p><i>none</i></p>")
            + "<h3>Known outcomes: accepted non-pass outcomes with their reasons</h3>"
            + (keyed_table(known, positions) if len(known) else "<p><i>none</i></p>")
            + f"<h3>Stale expectations</h3>{f'<ul>{stale_list}</ul>' if stale else '<p><i>none</i></p>'}")
    return _section("expectations", "Expectations", "What the run found against what was expected of it.", body)


def cells(run: tables.Run) -> str:
    df = run.df
    axes = [a for a in AXES if a not in ("kind", "qspec") or df[a].nunique() > 1]
    rows = []
    for i, r in df.iterrows():
        error = tables.error_or_reason(r)
        parity = r["float_parity"]
        rows.append(
            f'<tr data-i="{i}">' + "".join(f"<td>{_e(r[a])}</td>" for a in axes)
            + f'<td data-v="{STATUSES.index(r["status"]) if r["status"] in STATUSES else 99}">'
            f"{chip_html(Chip(r['status'], word=True))}</td>"
            f"<td class=\"verdict\">{_e(VERDICT_WORD.get(r['verdict'], r['verdict']))}</td>"
            f"<td>{_e(parity or '')}</td>"
            f'<td>{_e(r["stage"])}</td><td class="text" title="{_e(error)}">{_e(error)}</td>'
            f"{_number(r['sqnr_db'], db_=True)}{_number(r['sqnr_sim_db'], db_=True)}{_number(r['lsb_err_vs_sim'])}"
            f"<td>{_e(r['fidelity'] or '')}</td>"
            f"{_count(r['quantized_ops'])}{_speedup(r)}{_number(r['compression'])}{_share(r['time_split'])}"
            f'{_count(r["size_bytes"])}<td class="num" data-v="{r["seconds"]}">{r["seconds"]:.2f}</td></tr>')
    columns = [*axes, "status", "verdict", "float parity", "stage", "error / reason", "SQNR dB", "sim dB", "LSB vs sim",
               "fidelity", "q ops", "speedup", "compression", "int8 time", "bytes", "s"]
    # The rows wait in a template until the table is scrolled near or filtered: a browser lays out a
    # table of thousands of rows before it shows the page, and most readers never reach it.
    body = (f'<table class="sortable filterable" id="cell-table">{_th(columns)}<tbody></tbody></table>'
            f'<template id="cell-rows">{"".join(rows)}</template>')
    return _section("cells", "All cells",
                    "Every cell of the run. Click a column to sort, a row for its whole record (stage, error, "
                    "metrics, timings, the command that reruns it).", body)


def _speedup(r: pd.Series) -> str:
    """A cell's speedup over float on its backend, its spread and words in the tooltip; a cell
    slower than float is marked."""
    if missing(r["speedup"]):
        return f'<td data-v="" title="{_e(r["latency_error"] or "not timed")}"></td>'
    hint = f"{speed(r['speedup'], r['speedup_low'], r['speedup_high'])}: spread " \
           f"{r['speedup_low']:.2f} to {r['speedup_high']:.2f}; {r['quantized_ms']:.3f} ms, " \
           f"float {r['float_ms']:.3f} ms"
    marked = " over" if tables.slower(r) else ""
    return f'<td class="num{marked}" data-v="{r["speedup"]}" title="{_e(hint)}">{r["speedup"]:.2f}</td>'


def _share(split: object) -> str:
    """The share of a cell's time in int8 kernels, the whole split in the tooltip."""
    if not isinstance(split, dict):
        return '<td data-v=""></td>'
    return f'<td class="num" data-v="{split.get("quantized", 0.0)}" title="{_e(tables.time_split(split))}">' \
           f"{tables.int8_share(split)}</td>"


def _count(value: object) -> str:
    if missing(value):
        return '<td data-v=""></td>'
    return f'<td class="num" data-v="{int(value)}">{int(value)}</td>'


def legend() -> str:
    statuses = "".join(f"<tr><td>{chip_html(Chip(s, word=True))}</td><td>{_e(MEANINGS[s])}</td></tr>"
                       for s in STATUSES)
    scale = "".join(f'<span style="background:{rate_colour(p, 4)}">{p}/4</span>' for p in range(5))
    verdicts = "".join(f"<tr><td>{_e(VERDICT_WORD[v])}</td><td>{_e(VERDICT_TEXT[v])}</td></tr>" for v in VERDICTS)
    body = f"""<table><tbody>{statuses}</tbody></table>
<p>Support counts: <span class="scale">{scale}</span> passing over applicable cells, coloured by that share;
symbols after a count say how many cells ended in each other status.
<span class="chip s-unavailable">{_sym("unavailable")}1</span> alone: nothing applicable.
<span class="nopath">·</span>: no code path, not a cell.</p>
<p>Chips: a number is the SQNR in dB of the deployed output against the float model (∞: identical outputs);
<i>float</i>: nothing was quantized; a stage name: where the cell failed. A faded chip is filtered out.</p>
<p>Verdicts (the observed status against the expected one):</p>
<table><tbody>{verdicts}</tbody></table>"""
    return _section("legend", "Legend", "Every symbol and colour of this page.", body)


def render_html(env: dict, records: list[dict]) -> str:
    """The whole report as one HTML page."""
    records = sorted(records, key=lambda r: r["case_id"])
    run = tables.load(env, records)
    positions = {case_id: i for i, case_id in reversed(list(enumerate(run.df["case_id"])))}
    operators = tables.operator_support(run)
    sections = "".join([
        summary_section("your-models", "Your models", _e(tables.YOUR_MODELS_TEXT).replace("`", ""),
                        tables.your_models(run)),
        mode_support(run),
        summary_section("float-parity", "Float parity", _e(tables.FLOAT_PARITY_TEXT), tables.float_parity_table(run)),
        summary_section("operator-support", "Operator support", "Operator rows, backend and scheme columns, like "
                        "PyTorch's operator support table; colours as in mode support.", operators),
        summary_section("model-support", "Model support", "Whole-model rows (kind <code>zoo</code>: real "
                        "architectures built from transformers' code), backend columns, over every mode and scheme; "
                        "counts and colours as in mode support.", tables.model_support(run)),
        per_model(run),
        summary_section("pays", "Does it pay", _e(tables.PAYS_TEXT), tables.pays_off(run)),
        summary_section("speedup", "Speedup by backend", "Median speedup over float of the passing model cells, "
                        "by backend and scheme.", tables.speedup_by_backend(run)),
        summary_section("qspec-support", "Qspec support", "One row per qspec (a knob of a quantization config) "
                        "and mode, backend columns, over the models the knobs are crossed with; <code>default"
                        "</code> rows are the baseline.", tables.qspec_support(run)),
        summary_section("guide-examples", "The guide's complete examples", "The guide's table of complete "
                        "examples, filled in: per backend, eager, FX and PT2E rows, PTQ static, PTQ dynamic and QAT "
                        "columns (default qspec, whole models).", tables.guide_examples(run)),
        summary_section("quantization-classes", "Observer and fake-quantize classes", "The guide's class tables: "
                        "each class a knob qspec chooses, per mode, backend columns, over that knob's cells.",
                        tables.quantization_classes(run)),
        summary_section("conversion-paths", "Conversion paths", tables.CONVERSION_TEXT, tables.conversion_paths(run)),
        documented(run, positions), failures(run),
        error_split(run), departures(run, positions), expectations(run, env, positions), cells(run), legend(),
    ])
    top = header(env, run)
    body = f'{top}{filter_bar(run, top + sections)}<main>{sections}</main><aside id="record" hidden></aside>'
    return page(f"qmatrix report: {run_title(env)}", body, records)


def browser_json(value: object) -> object:
    """``value`` with every NaN or infinite float as the string a reader would write ("NaN",
    "Infinity"): JSON.parse in the browser rejects the bare NaN that Python's json writes."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: browser_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [browser_json(v) for v in value]
    return value


# What the filters, the search and the tallies read of each record, kept plain in the page; the
# whole records (for the record panel) are gzip-compressed and read when a panel first opens.
INDEX_FIELDS = ("case_id", *AXES, "status", "verdict", "fidelity", "stage", "error_type", "error_message", "reason")


def embedded_json(value: object) -> str:
    return json.dumps(browser_json(value), sort_keys=True, default=str, allow_nan=False).replace("<", "\\u003c")


def compressed_records(records: list[dict]) -> str:
    """The records as JSON, gzip-compressed (the same bytes for the same records), base64."""
    return base64.b64encode(gzip.compress(embedded_json(records).encode(), mtime=0)).decode()


def page(title: str, body: str, records: list[dict] | None = None) -> str:
    records = records or []
    index = embedded_json([{key: r.get(key) for key in INDEX_FIELDS} for r in records])
    config = json.dumps({"symbols": SYMBOLS, "verdicts": VERDICT_TEXT})
    script = (ASSETS / "report.js").read_text()
    style = (ASSETS / "report.css").read_text()
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_e(title)}</title>'
            f"<style>{style}</style></head><body>{body}"
            f'<script type="application/json" id="index">{index}</script>'
            f'<script type="application/octet-stream" id="records" data-encoding="gzip+base64">'
            f"{compressed_records(records)}</script>"
            f'<script type="application/json" id="config">{config}</script><script>{script}</script></body></html>\n')


def verdict_line(diff: RunDiff) -> str:
    headline, summary = compare.verdict(diff)
    return f"<b>{headline}</b> ({summary})" + ("; <code>qmatrix diff</code> exits 1." if diff.regressed else ".")


def render_diff_html(diff: RunDiff) -> str:
    parts = [f'<header class="top"><div class="headline"><h1>qmatrix diff: {_e(diff.base.name)} → '
             f'{_e(diff.new.name)}</h1><p class="verdict {"bad" if diff.regressed else "good"}">'
             f"{verdict_line(diff)}</p>"
             f"<p class=\"muted\">{len(diff.base.records)} cells in {_e(diff.base.path)}, {len(diff.new.records)} "
             f"in {_e(diff.new.path)}; {diff.unchanged} unchanged (same status, SQNR within "
             f"±{diff.tolerance:g} dB).</p></div>{environments_table([diff.base, diff.new])}</header><main>"]
    for category, title in compare.CATEGORIES.items():
        changes = diff.of(category)
        suffix = f" beyond ±{diff.tolerance:g} dB" if category == "sqnr" else ""
        table = compare.change_table(changes)
        body = (_plain_table(table, lambda row: f' class="{row["direction"]}"') if len(table)
                else "<p><i>none</i></p>")
        parts.append(f'<section id="{category}"><h2>{_e(title)}{suffix} ({len(changes)})</h2>{body}</section>')
    parts.append("</main>")
    return page(f"qmatrix diff: {diff.base.name} → {diff.new.name}", "".join(parts))


def environments_table(runs: list[RunFolder]) -> str:
    table = compare.versions(runs)

    def differing(row: pd.Series) -> str:
        return ' class="differs"' if len(set(row.iloc[1:])) > 1 else ""

    return '<div class="env">' + _plain_table(table, differing) + "</div>"


def _plain_table(table: pd.DataFrame, row_attrs=lambda row: "") -> str:
    body = "".join(f"<tr{row_attrs(row)}>" + "".join(td(v) for v in row) + "</tr>" for _, row in table.iterrows())
    return f'<table class="sortable">{_th(list(table.columns))}<tbody>{body}</tbody></table>'


def render_compare_html(runs: list[RunFolder], table: pd.DataFrame, differences: pd.DataFrame,
                        tolerance: float) -> str:
    differing = int(table["differs"].sum()) if len(table) else 0
    rows = []
    for _, row in table.iterrows():
        outcomes = "".join(td(v) if isinstance(v, Chip) else '<td class="s-none">·</td>' for v in row.iloc[2:])
        rows.append(f'<tr class="{"differs" if row["differs"] else "same"}"><td>{"≠" if row["differs"] else ""}'
                    f"</td><td>{_e(row['cell'])}</td>{outcomes}</tr>")
    columns = ["≠", "cell", *table.columns[2:]]
    names = ", ".join(str(c) for c in table.columns[2:])
    body = (f'<header class="top"><div class="headline"><h1>qmatrix compare: {_e(names)}</h1>'
            f"<p>{len(table)} cells; <b>{differing} differ</b> between the runs (≠: another status or stage, SQNR "
            f"apart by more than {tolerance:g} dB, or absent from a run: ·).</p>"
            '<p class="controls"><label><input type="checkbox" id="only-differing"> only the cells that differ'
            '</label><label>search <input id="search" type="search" placeholder="cell id…"></label></p></div>'
            f"{environments_table(runs)}</header><main>"
            + _section("status-differences", "Status differences by backend and signature",
                       "Cells whose status is not the same in every run, grouped by backend, the status in each run "
                       "and the signature of the runs that part from the first. <i>unexplained</i> counts cells some "
                       "run judged worse, better or broken against its own versions' expectations.",
                       frame_table(differences) if len(differences) else "<p>Every cell has one status in every "
                       "run.</p>")
            + f'<h2>Every cell</h2><table class="sortable compare">{_th(columns)}<tbody>{"".join(rows)}</tbody>'
            "</table></main>")
    return page(f"qmatrix compare: {names}", body)
