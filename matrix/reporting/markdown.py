"""The report, the diff and the comparison of runs as Markdown. Text that comes from a record
(an error, a reason, a model's name) is escaped, so no markup of its own reaches the page."""

from __future__ import annotations

import re
from collections import Counter

import pandas as pd

from matrix.reporting import compare, tables
from matrix.reporting.compare import RunDiff
from matrix.reporting.values import Chip, Chips, Command, NoPath, Tally, reproduce, short
from matrix.runs import Run as RunFolder
from matrix.vocabulary import NOT_APPLICABLE, STATUSES, VERDICTS, Verdict

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
# The share of applicable cells that pass, in the mode-support table: all, at least half, fewer, none.
SHARE = ("🟩", "🟨", "🟧", "🟥")
RATE_LEGEND = ("In the mode-support table the square before a count tells the share of applicable cells that "
               "pass: 🟩 all, 🟨 at least half, 🟧 fewer than half, 🟥 none.")


# What can open raw HTML in Markdown (a tag, a closing tag, a comment or declaration) or an entity.
MARKUP = re.compile(r"<(?=[A-Za-z/!?])|&(?=[A-Za-z#])")


def escape(text: str) -> str:
    """Record text for a Markdown table or line: no HTML of its own (every ``<`` that could open a tag
    and every ``&`` that could open an entity is escaped; ``a < b`` stays as written), no pipe that
    splits a column, one line."""
    text = MARKUP.sub(lambda found: "&lt;" if found[0] == "<" else "&amp;", text)
    return text.replace("|", "\\|").replace("\n", " ")


def code(text: str) -> str:
    """A code span, which Markdown shows as written: fenced by more backticks than the text holds in a row,
    its pipes escaped (a table cell ends at a bare one)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    padded = f" {text} " if text.startswith("`") or text.endswith("`") else text
    return f"{fence}{padded.replace('|', chr(92) + '|').replace(chr(10), ' ')}{fence}"


def fenced(text: str) -> str:
    """A block of text shown as written: its fence is longer than any run of backticks in it."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return f"{fence}text\n{text}\n{fence}"


def tally(value: Tally) -> str:
    counts = value.counts
    if value.applicable == 0:
        return " ".join(f"{SYMBOLS[s]}{n}" for s, n in value.others(include_pass=True))
    others = " ".join(f"{SYMBOLS[s]}{n}" for s, n in value.others())
    text = f"{counts.get('pass', 0)}/{value.applicable}" + (f" ({others})" if others else "")
    if value.rated:
        share = value.passed / value.applicable
        square = SHARE[0] if share == 1 else SHARE[1] if share >= 0.5 else SHARE[2] if value.passed else SHARE[3]
        text = f"{square} {text}"
    return f"[{text}]({value.link})" if value.link else text


def chip(value: Chip) -> str:
    parts = [SYMBOLS.get(value.status, value.status)]
    if value.word:
        parts.append(value.status)
    if value.note:
        parts.append(escape(value.note))
    if value.pays:
        parts.append(f"({escape(value.pays)})")
    return " ".join(parts)


def cell(value: object) -> object:
    """One table cell as Markdown; numbers stay numbers (the table aligns them)."""
    if isinstance(value, Tally):
        return tally(value)
    if isinstance(value, Chip):
        return chip(value)
    if isinstance(value, Chips):
        return " ".join(chip(c) for c in value.chips) or "·"
    if isinstance(value, Command):
        return code(value.text)
    if isinstance(value, NoPath):
        return "·"
    if isinstance(value, str):
        return escape(value)
    return value


def table(df: pd.DataFrame, empty: str = "_none_", numparse: bool = True) -> str:
    if not len(df):
        return empty
    shown = df.apply(lambda column: column.map(cell)) if len(df.columns) else df
    shown.columns = [escape(str(c)) for c in df.columns]
    return unpadded(shown.to_markdown(index=False, disable_numparse=not numparse))


def unpadded(text: str) -> str:
    """A pipe table without the padding that lines its columns up in plain text (a renderer
    aligns them anyway): a column as wide as its widest cell pads every row of it, the bulk of a
    long table's bytes. A cell keeps one space on each side."""
    return "\n".join(DASHES.sub("---", line) if line.startswith("|:") or line.startswith("|-")
                     else PADDING.sub(" |", LEADING.sub("| ", line)) for line in text.splitlines())


PADDING, LEADING, DASHES = re.compile(r" {2,}\|"), re.compile(r"\| {2,}"), re.compile(r"-{3,}")


def environment_section(env: dict, run: tables.Run) -> str:
    rows = dict(tables.environment_rows(env))
    lines = [
        f"- date: {escape(rows['date'])}; suite commit: {code(rows['suite commit'])}",
        f"- python {escape(rows['python'])} on {escape(rows['platform'])}; CPU: {escape(rows['CPU'])}; "
        f"quantized engines: {escape(rows['quantized engines'])}",
        f"- packages: {escape(rows['packages'])}",
        f"- not installed: {escape(rows['not installed'])}",
        f"- command: {code(rows['command'])}",
    ]
    lines += [f"- **{escape(error)}**" for error in env.get("model_source_errors") or []]
    counts = Counter(run.df["status"])
    applicable = sum(n for s, n in counts.items() if s not in NOT_APPLICABLE)
    rate = f"{counts.get('pass', 0) / applicable:.0%}" if applicable else "n/a"
    lines.append(
        f"- **{len(run.df)} cells**: " + ", ".join(f"{SYMBOLS[s]} {s} {counts[s]}" for s in STATUSES if counts.get(s))
        + f". Pass rate over the {applicable} applicable cells: **{rate}** "
        f"(unavailable {counts.get('unavailable', 0)} and error {counts.get('error', 0)} not counted)."
    )
    fidelity = tables.fidelity_counts(run)
    if fidelity["faithful"] or fidelity["departs"]:
        judged = ", ".join(f"{tables.VERDICT_TEXT.get(v, v)} {fidelity[f'departs {v}']}" for v in VERDICTS
                           if fidelity.get(f"departs {v}"))
        lines.append(f"- fidelity to the simulation, over the {fidelity['faithful'] + fidelity['departs']} quantized "
                     f"cells: faithful {fidelity['faithful']}, departs {fidelity['departs']} "
                     f"({fidelity['pass departs']} of the {counts.get('pass', 0)} passing cells)"
                     + (f"; the departures: {judged}" if judged else ""))
    verdicts = Counter(run.df["verdict"].fillna("none"))
    lines.append("- against expectations: " + ", ".join(
        f"{tables.VERDICT_TEXT.get(v, v)} {n}" for v, n in sorted(verdicts.items(), key=_verdict_order)))
    return "\n".join(lines)


def _verdict_order(item: tuple[str, int]) -> tuple[int, str]:
    return (VERDICTS.index(item[0]) if item[0] in VERDICTS else len(VERDICTS), item[0])


def legend() -> str:
    rows = [{"symbol": SYMBOLS[s], "status": s, "meaning": tables.MEANINGS[s]} for s in STATUSES]
    return (table(pd.DataFrame(rows)) + "\n\nIn the support tables `p/n` counts passing cells over applicable ones "
            "(unavailable and error excluded); `·` marks a combination with no code path. In the "
            "conversion-paths table (and report.html's per-model one) a number is the SQNR in dB of the "
            "deployed output against the float model (∞: identical outputs); a stage name "
            "is where the cell failed. `sim dB` is the SQNR of the mode's own fake-quant simulation "
            "(what the recipe costs); `lsb vs sim` is the deployed output's largest distance from that "
            "simulation in output quantization steps (what the backend adds).")


def operator_section(run: tables.Run, records: list[dict]) -> str:
    support = tables.operator_support(run)
    if not len(support):
        return "_no operator cells in this run_"
    parts = ["One single-operator model per row, one table per mode; a cell is the status symbol of that "
             "operator under the backend and scheme of its column (see the legend), and `passing` counts the "
             "row's passing cells over its applicable ones. Why a cell did not pass is under *Operator outcomes*."]
    for mode, rows in support.groupby("mode", sort=False):
        rows = rows.drop(columns="mode")
        kept = [c for c in rows.columns if not rows[c].map(lambda v: isinstance(v, NoPath)).all()]
        parts.append(f"### {escape(str(mode))}\n\n" + table(rows[kept]))
    parts.append("### Operator outcomes\n\nThe operator cells that did not pass, one row per cause: the outcome, "
                 "how many cells, the operators and where (mode, scheme: backends), the verdict against the "
                 "expectations, and the cause: the start of the known reason (in full under *Known outcomes*), "
                 "or the stage and error of a cell no entry explains. Each cell is in report.html.\n\n"
                 + table(tables.operator_outcomes_by_cause(run)))
    parts.append("### Fixed-qparams ops\n\nSigmoid, hardsigmoid, softmax and tanh have an output range known in "
                 "advance, and PyTorch fixes their output scale and zero point instead of calibrating them. Wherever "
                 "one of them ran on quantized tensors (inside other models too): the scale and zero point of its "
                 "quantized output, as the deployed model's run produced it, against the fixed ones.\n\n"
                 + table(tables.fixed_qparams(run, records)))
    return "\n\n".join(parts)


# report.md is the summary a person reads: a table of cells shows this many, and says how many
# more report.html, report.csv and the records hold (everything per cell is there).
EXAMPLES = 5
PER_CELL = ("Everything per cell (the per-model chips, the error split of recipe and backend, every cell's "
            "details and the command that reruns it) is in report.html beside this file, report.csv "
            "(`qmatrix report RUN --format csv`) and the records (`cells-*.jsonl`).")


def examples(names: list[str]) -> str:
    """The first few of a list of cells, and how many more."""
    return tables.examples(names, EXAMPLES)


def failures(run: tables.Run) -> str:
    groups = tables.failure_groups(run)
    if not groups:
        return "_none_"
    parts = [f"{sum(len(g.cells) for g in groups)} failed cells in {len(groups)} groups, largest first. "
             "A signature is the stage, the exception type and the message with numbers and addresses masked."]
    for number, group in enumerate(groups, 1):
        shown = group.cells.head(EXAMPLES)
        cells = pd.DataFrame([{"cell": r["case_id"], "status": Chip(r["status"], word=True),
                               "reproduce": reproduce(r["nodeid"])} for _, r in shown.iterrows()])
        gist = escape(short(group.message, 90))
        whole = fenced(short(group.message, 600)) + "\n\n" if len(group.message) > 90 else ""
        more = len(group.cells) - len(shown)
        rest = f"\n\n_and {more} more: report.html, report.csv_" if more else ""
        parts.append(f"### {number}. {len(group.cells)} × {escape(group.stage or '(no stage)')}: "
                     f"{escape(group.error_type)}: {gist}\n\n{whole}" + table(cells) + rest)
    return "\n\n".join(parts)


def departures(run: tables.Run) -> str:
    """The departures not known to an entry (new, or from a stand-in) in full; the known ones counted."""
    found = tables.departures(run)
    if not len(found):
        return "_none_"
    known = found["verdict"] == tables.VERDICT_TEXT[Verdict.KNOWN.value]
    note = f"{int(known.sum())} known departures (each with its entry) are in report.html.\n\n" if known.any() else ""
    return note + table(found[~known])


def known_outcomes(run: tables.Run) -> str:
    found = tables.known_outcomes(run)
    if len(found):
        found["cells"] = found["cells"].map(examples)
    return table(found)


def merge_notes(env: dict) -> str:
    """Where a merged run came from, and the duplicate cells whose records disagreed."""
    lines = [f"- {escape(line)}" for line in tables.merge_sources(env)]
    lines += [f"- **conflict**: {escape(c)}" for c in env.get("merge_conflicts") or []]
    return "\n".join(lines)


def render_markdown(env: dict, records: list[dict]) -> str:
    run = tables.load(env, records)
    title = env.get("label") or env.get("date", "run")
    support = tables.mode_support(run)
    for backend in support.columns[2:]:
        support[backend] = [Tally(v.statuses, v.rated, "report.html#per-model") if isinstance(v, Tally) else v
                            for v in support[backend]]
    parts = [
        f"# qmatrix report: {escape(str(title))}",
        environment_section(env, run),
        "## Mode support\n\nMode and scheme rows, backend columns, over every model of the run; a count "
        "links to the per-model table of report.html.\n\n" + table(support),
        f"## Float parity\n\n{tables.FLOAT_PARITY_TEXT}\n\n" + table(tables.float_parity_table(run)),
        "## Model support\n\nWhole-model rows (kind `zoo`: real architectures built from transformers' code), "
        "backend columns, over every mode and scheme.\n\n" + table(tables.model_support(run)),
        "## Does it pay\n\n" + tables.PAYS_TEXT + "\n\n"
        + table(tables.pays_off(run).drop(columns="speedup", errors="ignore"))
        + "\n\nMedian speedup over float of the passing model cells, by backend and scheme:\n\n"
        + table(tables.speedup_by_backend(run)),
        "## Qspec support\n\nOne row per qspec (knob of a quantization config) and mode, backend columns, over "
        "the models the knobs are crossed with; `default` rows are the baseline.\n\n"
        + table(tables.qspec_support(run)),
        "## The guide's complete examples\n\nThe guide's table of complete examples, filled in: per backend, "
        "eager, FX and PT2E rows, PTQ static, PTQ dynamic and QAT columns (default qspec, whole models).\n\n"
        + table(tables.guide_examples(run)),
        "## Observer and fake-quantize classes\n\nThe guide's class tables: each class a knob qspec chooses, "
        "per mode, backend columns, over that knob's cells.\n\n" + table(tables.quantization_classes(run)),
        f"## Conversion paths\n\n{tables.CONVERSION_TEXT}\n\n" + table(tables.conversion_paths(run)),
        "## Operator support\n\n" + operator_section(run, records),
        "## Documented versus observed\n\nCells where the backend's own documentation claims one outcome "
        "and the run found another.\n\n" + table(tables.documented_vs_observed(run)),
        "## Failures by signature\n\n" + failures(run),
        "## Fidelity to the simulation\n\nQuantized cells whose output is more than `max_lsb_err_vs_sim` "
        "quantization steps from the mode's own simulation, whatever their accuracy against float: the kernels "
        "do not compute what the recipe simulates. A departure from a stand-in simulation (another tool's "
        "recipe re-implemented in PyTorch) is unconfirmed until the stand-in is checked.\n\n"
        + departures(run),
        "## Surprises\n\nCells worse than expected (pytest failed) or better (xpass). "
        + tables.OPERATOR_EVIDENCE_TEXT + f" Surprising model cells with operator evidence: "
        f"{tables.explained_by_operators(run)}.\n\n" + table(tables.surprises(run)),
        "## Known outcomes\n\nAccepted non-pass outcomes, each with its reason and source.\n\n"
        + known_outcomes(run),
        "## Stale expectations\n\n" + ("\n".join(f"- {escape(line)}" for line in tables.stale_expectations(env))
                                       or "_none_"),
        "## Legend\n\n" + legend() + "\n\n" + RATE_LEGEND,
        "## Per cell\n\n" + PER_CELL,
    ]
    yours = tables.your_models(run)
    if len(yours):
        parts.insert(2, "## Your models\n\n" + tables.YOUR_MODELS_TEXT + "\n\n" + table(yours))
    if env.get("merged_from"):
        parts.insert(2, "## Merged from\n\n" + merge_notes(env))
    return "\n\n".join(parts) + "\n"


def verdict_line(diff: RunDiff) -> str:
    headline, summary = compare.verdict(diff)
    return f"**{headline}** ({summary})" + ("; `qmatrix diff` exits 1." if diff.regressed else ".")


def render_diff_markdown(diff: RunDiff) -> str:
    lines = [f"# qmatrix diff: {escape(diff.base.name)} → {escape(diff.new.name)}", "", verdict_line(diff), "",
             "## Environments", "", table(compare.versions([diff.base, diff.new])), "",
             f"{len(diff.base.records)} cells in {escape(str(diff.base.path))}, {len(diff.new.records)} in "
             f"{escape(str(diff.new.path))}; {diff.unchanged} unchanged (same status, SQNR within "
             f"±{diff.tolerance:g} dB)."]
    for category, title in compare.CATEGORIES.items():
        changes = diff.of(category)
        suffix = f" beyond ±{diff.tolerance:g} dB" if category == "sqnr" else ""
        lines += ["", f"## {title}{suffix} ({len(changes)})", ""]
        lines.append(table(compare.change_table(changes)) if changes else "_none_")
    return "\n".join(lines) + "\n"


def render_compare_markdown(runs: list[RunFolder], found: pd.DataFrame, differences: pd.DataFrame,
                            tolerance: float = compare.SQNR_TOLERANCE_DB) -> str:
    """``found`` from compare.compare_runs, ``differences`` from compare.status_differences."""
    differing = int(found["differs"].sum()) if len(found) else 0
    shown = found.assign(differs=found["differs"].map({True: "≠", False: ""})) if len(found) else found
    return "\n".join([
        f"# qmatrix compare: {escape(', '.join(compare.column_names(runs)))}", "",
        table(compare.versions(runs)), "",
        "## Status differences by backend and signature", "",
        "Cells whose status is not the same in every run, grouped by backend, the status in each run and the "
        "signature of the runs that part from the first (stage, exception, masked message; or status and reason). "
        "`unexplained` counts cells some run judged worse, better or broken against its own versions' "
        "expectations.", "",
        table(differences, empty="_every cell has one status in every run_"), "",
        "## Every cell", "",
        f"{len(found)} cells; **{differing} differ** between the runs (marked ≠: another status or stage, "
        f"SQNR apart by more than {tolerance:g} dB, or absent from a run: ·).", "",
        table(shown, empty="_no cells_"),
    ]) + "\n"
