"""``qmatrix``: re-render a run's report from its records."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from matrix.records import RunError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qmatrix", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="render report.md from a run folder's records")
    report.add_argument("runs", nargs="+", type=Path, metavar="RUN")
    report.add_argument("-o", "--output", type=Path, default=None,
                        help="folder for report.md (default: each run folder)")
    args = parser.parse_args(argv)
    from matrix.report import write_report

    for run in args.runs:
        try:
            print(write_report(run.resolve(), args.output))
        except RunError as exc:
            print(f"qmatrix: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
