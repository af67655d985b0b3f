"""The nightly job, runnable here: run shards of the matrix per environment, merge
them, render, compare the environments, diff each against the previous night,
write a Markdown summary, and exit 1 only when something regressed.

    python .ci/nightly.py run --env torch213 --shard 1/3 [--tox] [-- pytest options]
    python .ci/nightly.py summarize RUNS PREVIOUS OUT
    python .ci/nightly.py local --envs torch213 --shards 3 --out OUT [--previous DIR] [-- pytest options]
    python .ci/nightly.py site NIGHT PREVIOUS_SITE OUT --date YYYY-MM-DD

`run` writes reports/<date>-<env>-shard<i>; `summarize` reads every such folder
under RUNS (the artifacts of the shard jobs), writes OUT/<env> (merged run and
its report), OUT/compare.{md,html}, OUT/diff-<env>.{md,html} and OUT/summary.md.
PREVIOUS holds last night's OUT (or nothing). `site` adds tonight's OUT to last
night's static site (the scoreboard the workflow publishes with GitHub Pages): a
folder per night and an index of them. `local` does run and summarize, with pytest
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


SITE_PAGES = ("report.html", "report.md")
NIGHT = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def site(night: Path, previous_site: Path, out: Path, date: str) -> int:
    """The scoreboard: a static site of every night kept so far (``previous_site``, last night's
    site, or nothing) and tonight's (``night``, what summarize wrote), written to ``out``:
    ``<date>/`` holds each environment's merged report, the environments side by side and the
    diff against the night before; ``index.html`` lists the nights, newest first, each with its
    summary table. A reader needs no checkout."""
    import shutil

    if not NIGHT.match(date):
        print(f"nightly: --date {date!r} is not YYYY-MM-DD", file=sys.stderr)
        return 2
    if not (night / "summary.md").is_file():
        print(f"nightly: {night} holds no summary.md (run summarize first)", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    if previous_site.is_dir() and previous_site.resolve() != out.resolve():
        for kept in previous_site.iterdir():
            if kept.is_dir() and NIGHT.match(kept.name) and kept.name != date:
                shutil.copytree(kept, out / kept.name, dirs_exist_ok=True)
    tonight = out / date
    if tonight.exists():
        shutil.rmtree(tonight)
    tonight.mkdir()
    shutil.copy2(night / "summary.md", tonight / "summary.md")
    for folder in sorted(p for p in night.iterdir() if p.is_dir()):
        pages = [page for page in SITE_PAGES + ("compare.html", "compare.md", "diff.html", "diff.md")
                 if (folder / page).is_file()]
        if pages:
            (tonight / folder.name).mkdir()
            for page in pages:
                shutil.copy2(folder / page, tonight / folder.name / page)
    (out / "index.html").write_text(site_index(out))
    print(f"nightly: site with {len(nights(out))} night(s) in {out}")
    return 0


def nights(site_folder: Path) -> list[Path]:
    return sorted((p for p in site_folder.iterdir() if p.is_dir() and NIGHT.match(p.name)), reverse=True)


def site_index(site_folder: Path) -> str:
    """The scoreboard's index: one section per night, newest first, with its links and summary."""
    from html import escape

    sections = []
    for folder in nights(site_folder):
        links = []
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            for page in ("report.html", "compare.html", "diff.html"):
                if (sub / page).is_file():
                    what = {"report.html": f"{sub.name}: report", "compare.html": "environments side by side",
                            "diff.html": f"{sub.name.removeprefix('diff-')}: changes since the night before"}[page]
                    href = f"{escape(folder.name)}/{escape(sub.name)}/{page}"
                    links.append(f'<li><a href="{href}">{escape(what)}</a></li>')
        summary = (folder / "summary.md").read_text() if (folder / "summary.md").is_file() else ""
        sections.append(f'<section><h2 id="{escape(folder.name)}">{escape(folder.name)}</h2><ul>{"".join(links)}</ul>'
                        f"<pre>{escape(summary)}</pre></section>")
    return ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>qmatrix nightly</title>'
            "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}pre{overflow-x:auto}</style></head>"
            "<body><h1>qmatrix nightly</h1><p>Every night's merged report per torch environment, the "
            "environments side by side, and what changed since the night before, newest first.</p>"
            + "".join(sections) + "</body></html>\n")


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
    pages = steps.add_parser("site")
    pages.add_argument("night", type=Path, help="what summarize wrote tonight")
    pages.add_argument("previous_site", type=Path, help="last night's site (or a folder that does not exist)")
    pages.add_argument("out", type=Path)
    pages.add_argument("--date", required=True, help="tonight, YYYY-MM-DD")
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
    if args.step == "site":
        return site(args.night, args.previous_site, args.out, args.date)
    runs = args.out / "runs"
    for env in args.envs:
        for index in range(1, args.shards + 1):
            code = run(env, f"{index}/{args.shards}", runs, args.tox, pytest_args)
            if code != 0:
                return code
    return summarize(runs, args.previous or args.out / "no-previous-night", args.out / "nightly")


if __name__ == "__main__":
    sys.exit(main())
