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
