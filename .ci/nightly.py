"""The nightly job, runnable here: run shards of the matrix per environment, merge
them, render, compare the environments, diff each against the previous night,
write a Markdown summary, and exit 1 only when something regressed.

    python .ci/nightly.py run --env torch213 --shard 1/3 [--tox] [-- pytest options]
    python .ci/nightly.py summarize RUNS PREVIOUS OUT
    python .ci/nightly.py local --envs torch213 --shards 3 --out OUT [--previous DIR] [-- pytest options]

`run` writes reports/<date>-<env>-shard<i>; `summarize` reads every such folder
under RUNS (the artifacts of the shard jobs), writes OUT/<env> (merged run and
its report), OUT/compare.{md,html}, OUT/diff-<env>.{md,html} and OUT/summary.md.
PREVIOUS holds last night's OUT (or nothing). `local` does both, with pytest
in this environment instead of tox unless --tox is given. The GitHub workflow
.github/workflows/nightly.yml calls the same steps.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

SUITE = Path(__file__).resolve().parent.parent
SHARD_RUN = re.compile(r"^\d{8}-\d{6}-(?P<env>.+)-shard(?P<index>\d+)$")


def qmatrix(*args: str) -> int:
    return subprocess.run([sys.executable, "-m", "matrix.cli", *args], cwd=SUITE, check=False).returncode


def run(env: str, shard: str, reports: Path, use_tox: bool, pytest_args: list[str]) -> int:
    index = shard.split("/")[0]
    label = f"{env}-shard{index}"
    selection = [f"--shard={shard}", f"--run-label={label}", f"--reports-dir={reports}", *pytest_args]
    command = (["tox", "-e", env, "--", *selection] if use_tox
               else [sys.executable, "-m", "pytest", f"--rootdir={SUITE}", "-q", *selection])
    # A finding is not a job failure: regressions are judged by summarize.
    code = subprocess.run(command, cwd=SUITE, check=False).returncode
    return 0 if code in (0, 1) else code


def shard_runs(runs: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = defaultdict(list)
    for folder in sorted(runs.rglob("*")):
        match = SHARD_RUN.match(folder.name)
        if folder.is_dir() and match and any(folder.glob("cells*.jsonl")):
            found[match["env"]].append(folder)
    return dict(found)


def statuses(run: Path) -> Counter:
    counts: Counter = Counter()
    for path in run.glob("cells*.jsonl"):
        counts.update(json.loads(line)["status"] for line in path.read_text().splitlines() if line.strip())
    return counts


def summarize(runs: Path, previous: Path, out: Path) -> int:
    envs = shard_runs(runs)
    if not envs:
        print(f"nightly: no shard runs under {runs}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# qmatrix nightly", "", "| environment | shards | cells | statuses | against last night |",
             "|---|---|---|---|---|"]
    regressed = []
    for env, folders in sorted(envs.items()):
        merged = out / env
        if qmatrix("merge", *map(str, folders), "-o", str(merged)) != 0:
            return 2
        counts = statuses(merged)
        verdict = "no previous night"
        if (previous / env).is_dir():
            code = qmatrix("diff", str(previous / env), str(merged), "-o", str(out / f"diff-{env}"))
            verdict = {0: "no regression", 1: "**regressed**"}.get(code, f"diff failed ({code})")
            if code != 0:
                regressed.append(env)
        tally = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
        lines.append(f"| {env} | {len(folders)} | {sum(counts.values())} | {tally} | {verdict} |")
    if len(envs) > 1:
        qmatrix("compare", *(str(out / env) for env in sorted(envs)), "-o", str(out / "compare"))
        lines += ["", "Environments side by side: `compare/compare.md`."]
    for env in regressed:
        diff = out / f"diff-{env}" / "diff.md"
        lines += ["", f"## {env}: changes since last night", "", diff.read_text() if diff.exists() else "_no diff_"]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if regressed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    one = steps.add_parser("run")
    one.add_argument("--env", required=True)
    one.add_argument("--shard", required=True, help="i/n")
    one.add_argument("--reports", type=Path, default=SUITE / "reports")
    one.add_argument("--tox", action="store_true")
    summary = steps.add_parser("summarize")
    summary.add_argument("runs", type=Path)
    summary.add_argument("previous", type=Path)
    summary.add_argument("out", type=Path)
    local = steps.add_parser("local")
    local.add_argument("--envs", nargs="+", default=["torch213"])
    local.add_argument("--shards", type=int, default=3)
    local.add_argument("--out", type=Path, required=True)
    local.add_argument("--previous", type=Path, default=None)
    local.add_argument("--tox", action="store_true")
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    args, pytest_args = parser.parse_args(argv[:split]), argv[split + 1:]
    if args.step == "run":
        return run(args.env, args.shard, args.reports, args.tox, pytest_args)
    if args.step == "summarize":
        return summarize(args.runs, args.previous, args.out)
    runs = args.out / "runs"
    for env in args.envs:
        for index in range(1, args.shards + 1):
            code = run(env, f"{index}/{args.shards}", runs, args.tox, pytest_args)
            if code != 0:
                return code
    return summarize(runs, args.previous or args.out / "no-previous-night", args.out / "nightly")


if __name__ == "__main__":
    sys.exit(main())
