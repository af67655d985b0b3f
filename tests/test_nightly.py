"""The nightly workflow's logic, run here by its local twin on a tiny slice."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import yaml

SUITE = Path(__file__).resolve().parent.parent
SLICE = ["--qspecs", "default", "--models", "mlp", "--modes", "fx", "--backends", "fbgemm",
         "--schemes", "ptq_static,ptq_dynamic"]


def tox_envs() -> list[str]:
    tox = configparser.ConfigParser()
    tox.read(SUITE / "tox.ini")
    return [env.strip() for env in tox["tox"]["env_list"].split(",")]


def test_workflow_runs_every_tox_env_in_shards_then_summarizes():
    workflow = yaml.safe_load((SUITE / ".github" / "workflows" / "nightly.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert "schedule" in triggers and "workflow_dispatch" in triggers
    shard = workflow["jobs"]["shard"]
    assert shard["strategy"]["matrix"]["env"] == tox_envs()
    assert shard["strategy"]["matrix"]["shard"] == [1, 2, 3]
    assert any(".ci/nightly.py run" in step.get("run", "") for step in shard["steps"])
    summarize = workflow["jobs"]["summarize"]
    assert summarize["needs"] == "shard"
    assert any(".ci/nightly.py summarize" in step.get("run", "") for step in summarize["steps"])


def night(tmp_path: Path, name: str, *extra: str, previous: Path | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SUITE / ".ci" / "nightly.py"), "local", "--envs", "torch213", "--shards", "2",
               "--out", str(tmp_path / name)]
    if previous is not None:
        command += ["--previous", str(previous)]
    return subprocess.run([*command, "--", *SLICE, *extra], cwd=SUITE, capture_output=True, text=True, timeout=600)


def test_local_twin_passes_a_quiet_night_and_fails_a_regression(tmp_path):
    first = night(tmp_path, "first")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    merged = tmp_path / "first" / "nightly" / "torch213"
    assert len([line for f in merged.glob("cells*.jsonl") for line in f.read_text().splitlines()]) == 2
    summary = (tmp_path / "first" / "nightly" / "summary.md").read_text()
    assert "| torch213 | 2 | 2 |" in summary and "no previous night" in summary

    quiet = night(tmp_path, "quiet", previous=tmp_path / "first" / "nightly")
    assert quiet.returncode == 0, quiet.stdout[-3000:]
    assert "no regression" in (tmp_path / "quiet" / "nightly" / "summary.md").read_text()

    regressed = night(tmp_path, "regressed", "--cell-timeout=0.001", previous=tmp_path / "first" / "nightly")
    assert regressed.returncode == 1, regressed.stdout[-3000:]
    summary = (tmp_path / "regressed" / "nightly" / "summary.md").read_text()
    assert "**regressed**" in summary
    assert "mlp-fx-ptq_static-fbgemm" in summary


def nightly_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("nightly", SUITE / ".ci" / "nightly.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_night(folder: Path, marker: str) -> Path:
    for name, page in (("torch213", "report.html"), ("compare", "compare.html"), ("diff-torch213", "diff.html")):
        (folder / name).mkdir(parents=True)
        (folder / name / page).write_text(f"<p>{marker} {name}</p>")
    (folder / "torch213" / "cells-merged.jsonl").write_text("{}\n")
    (folder / "summary.md").write_text(f"| torch213 | 3 | 5782 | {marker} |\n")
    return folder


def test_the_scoreboard_keeps_every_night_and_lists_them_newest_first(tmp_path):
    nightly = nightly_module()
    first = fake_night(tmp_path / "night1", "first<b>")
    assert nightly.site(first, tmp_path / "no-site-yet", tmp_path / "site1", "2026-12-07") == 0
    second = fake_night(tmp_path / "night2", "second")
    assert nightly.site(second, tmp_path / "site1", tmp_path / "site2", "2026-12-08") == 0
    site = tmp_path / "site2"
    assert (site / "2026-12-07" / "torch213" / "report.html").read_text() == "<p>first<b> torch213</p>"
    assert (site / "2026-12-08" / "diff-torch213" / "diff.html").is_file()
    assert not (site / "2026-12-08" / "torch213" / "cells-merged.jsonl").exists(), "pages only, not the records"
    index = (site / "index.html").read_text()
    assert index.index("2026-12-08") < index.index("2026-12-07"), "newest first"
    assert 'href="2026-12-08/torch213/report.html"' in index and 'href="2026-12-08/compare/compare.html"' in index
    assert "changes since the night before" in index and "first&lt;b&gt;" in index and "first<b>" not in index
    assert nightly.site(second, site, tmp_path / "site3", "8 Dec") == 2, "a date that is not YYYY-MM-DD"
    assert nightly.site(tmp_path / "nothing", site, tmp_path / "site3", "2026-12-09") == 2


def test_the_workflow_publishes_the_scoreboard_with_pages():
    workflow = yaml.safe_load((SUITE / ".github" / "workflows" / "nightly.yml").read_text())
    summarize = workflow["jobs"]["summarize"]
    assert any(".ci/nightly.py site" in step.get("run", "") for step in summarize["steps"])
    assert any(step.get("uses", "").startswith("actions/upload-pages-artifact") for step in summarize["steps"])
    scoreboard = workflow["jobs"]["scoreboard"]
    assert scoreboard["needs"] == "summarize" and scoreboard["permissions"]["pages"] == "write"
    assert scoreboard["steps"][0]["uses"].startswith("actions/deploy-pages")
