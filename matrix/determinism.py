"""Run the same slice of the matrix twice and compare: every cell must get the same
status, and its metrics must agree within a tolerance.

    python -m matrix.determinism [pytest selection options...]

for example ``python -m matrix.determinism --models mlp,conv_bn_relu -n 2``.
Exits 1 when the two runs differ, 0 otherwise.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
from pathlib import Path

from matrix.records import SUITE, read_records

METRIC_TOLERANCE = 1e-3  # relative


def differences(first: list[dict], second: list[dict], tolerance: float = METRIC_TOLERANCE) -> list[str]:
    """Cell by cell: statuses that differ, metrics that moved, cells in one run only."""
    a = {r["case_id"]: r for r in first}
    b = {r["case_id"]: r for r in second}
    found = [f"{case}: only in the first run" for case in sorted(set(a) - set(b))]
    found += [f"{case}: only in the second run" for case in sorted(set(b) - set(a))]
    for case in sorted(set(a) & set(b)):
        if a[case]["status"] != b[case]["status"]:
            found.append(f"{case}: status {a[case]['status']} then {b[case]['status']}")
            continue
        for metric, value in (a[case].get("metrics") or {}).items():
            other = (b[case].get("metrics") or {}).get(metric)
            if not _close(value, other, tolerance):
                found.append(f"{case}: {metric} {value} then {other}")
    return found


def _close(x: object, y: object, tolerance: float) -> bool:
    if not isinstance(x, (int, float)) or not isinstance(y, (int, float)):
        return x == y
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return math.isclose(x, y, rel_tol=tolerance, abs_tol=tolerance)


def run_twice(pytest_args: list[str]) -> tuple[list[dict], list[dict]]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="qmatrix-determinism-") as folder:
        for label in ("first", "second"):
            reports = Path(folder) / label
            subprocess.run([sys.executable, "-m", "pytest", f"--rootdir={SUITE}", f"--reports-dir={reports}",
                            "-q", "-p", "no:cacheprovider", *pytest_args], cwd=SUITE, check=False)
            runs.append(read_records((reports / "latest").resolve()))
    return runs[0], runs[1]


def main(argv: list[str] | None = None) -> int:
    first, second = run_twice(list(sys.argv[1:] if argv is None else argv))
    found = differences(first, second)
    for line in found:
        print(line)
    print(f"{len(first)} cells, {len(found)} difference(s) between two runs")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
