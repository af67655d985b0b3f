"""``qmatrix``: re-render, merge, diff and compare runs from their records, without running anything.

Exit status: 0 when done (``diff``: and nothing regressed), 1 when ``diff`` found a regression, 2 when an input
cannot be read (the message names the file and line; nothing is written).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from matrix.records import SUITE, RunError, TornRecord, newest_run
from matrix.reporting import RENDERERS, write_report

FORMATS = tuple(RENDERERS)
REGRESSED, UNREADABLE = 1, 2


def _formats(text: str) -> tuple[str, ...]:
    chosen = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown format {', '.join(unknown) or text!r} (valid: {','.join(FORMATS)})")
    return chosen


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(prog="qmatrix", description=__doc__,
                                          formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = main_parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="render a run folder's records as report.md and report.html")
    report.add_argument("runs", nargs="+", type=Path, metavar="RUN")
    report.add_argument("--format", type=_formats, default=("md", "html"),
                        help=f"comma-separated, of {','.join(FORMATS)} (default: md,html)")
    report.add_argument("-o", "--output", type=Path, default=None,
                        help="folder for the report files (default: each run folder; with several runs, "
                             "one subfolder per run)")
    merge = commands.add_parser("merge", help="join shards or partial runs of one environment into one run")
    merge.add_argument("runs", nargs="+", type=Path, metavar="RUN")
    merge.add_argument("-o", "--output", type=Path, required=True, help="a new or empty folder for the merged run")
    diff = commands.add_parser("diff", help="cell-level changes from BASE to NEW; exits 1 when something regressed")
    diff.add_argument("base", type=Path, metavar="BASE")
    diff.add_argument("new", type=Path, metavar="NEW")
    compare = commands.add_parser("compare", help="one table of several runs, one column each")
    compare.add_argument("runs", nargs="*", type=Path, metavar="RUN")
    compare.add_argument("--latest-of", nargs="+", default=[], metavar="LABEL",
                         help="also the newest run labelled LABEL under --reports-dir (one per tox environment)")
    compare.add_argument("--reports-dir", type=Path, default=SUITE / "reports",
                         help="where --latest-of looks (default: reports/ of the checkout)")
    for command in (diff, compare):
        command.add_argument("--tolerance", type=float, default=None, metavar="DB",
                             help="SQNR moves up to this many dB are not changes (default: 1)")
        command.add_argument("-o", "--output", type=Path, default=None,
                             help=f"also write {command.prog.split()[-1]}.md and .html to this folder")
    return main_parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = {"report": report, "merge": merge, "diff": diff, "compare": compare}[args.command]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TornRecord)
        try:
            return command(args)
        except RunError as exc:
            print(f"qmatrix: {exc}", file=sys.stderr)
            return UNREADABLE
        finally:
            for warning in caught:
                if issubclass(warning.category, TornRecord):
                    print(f"qmatrix: warning: {warning.message}", file=sys.stderr)
                else:
                    warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)


def report(args: argparse.Namespace) -> int:
    for run in args.runs:
        out = args.output / run.resolve().name if args.output and len(args.runs) > 1 else args.output
        written = write_report(run.resolve(), out, args.format)
        print(written)
    return 0


def merge(args: argparse.Namespace) -> int:
    from matrix.runs import load_run, merge_runs, write_merged

    merged = merge_runs([load_run(run.resolve()) for run in args.runs])
    out = args.output.resolve()
    command = "qmatrix merge " + " ".join(str(run) for run in args.runs) + f" -o {args.output}"
    write_merged(merged, out, out.name, command)
    write_report(out)
    for conflict in merged.conflicts:
        print(f"qmatrix: conflicting records for {conflict.describe()}", file=sys.stderr)
    print(f"{out}: {len(merged.records)} cells from {len(args.runs)} runs, {len(merged.conflicts)} conflicts")
    return 0


def diff(args: argparse.Namespace) -> int:
    from matrix.reporting.compare import SQNR_TOLERANCE_DB, diff_runs
    from matrix.reporting.html import render_diff_html
    from matrix.reporting.markdown import render_diff_markdown
    from matrix.runs import load_run

    tolerance = SQNR_TOLERANCE_DB if args.tolerance is None else args.tolerance
    found = diff_runs(load_run(args.base.resolve()), load_run(args.new.resolve()), tolerance)
    text = render_diff_markdown(found)
    if args.output:
        _write(args.output, {"diff.md": text, "diff.html": render_diff_html(found)})
    print(text, end="")
    return REGRESSED if found.regressed else 0


def compare(args: argparse.Namespace) -> int:
    from matrix.reporting.compare import SQNR_TOLERANCE_DB, compare_runs, status_differences
    from matrix.reporting.html import render_compare_html
    from matrix.reporting.markdown import render_compare_markdown
    from matrix.runs import load_run

    tolerance = SQNR_TOLERANCE_DB if args.tolerance is None else args.tolerance
    folders = [run.resolve() for run in args.runs]
    folders += [newest_run(args.reports_dir, label) for label in args.latest_of]
    runs = [load_run(folder) for folder in folders]
    if len(runs) < 2:
        print("qmatrix: compare needs at least two runs", file=sys.stderr)
        return UNREADABLE
    table, differences = compare_runs(runs, tolerance), status_differences(runs)
    text = render_compare_markdown(runs, table, differences, tolerance)
    if args.output:
        _write(args.output, {"compare.md": text,
                             "compare.html": render_compare_html(runs, table, differences, tolerance)})
    print(text, end="")
    return 0


def _write(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(folder / name)


if __name__ == "__main__":
    sys.exit(main())
