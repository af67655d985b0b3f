"""Crashes, hangs, kill -9 and determinism, on a real pytest run of misbehaving models."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from matrix.cell import stable_seed
from matrix.determinism import differences
from matrix.records import read_records

SUITE = Path(__file__).resolve().parent.parent

MISBEHAVING = '''
import ctypes
import signal
import time

from torch import nn

from models import ModelSpec, register, vectors

FLOAT_BATCHES = 4  # the float reference runs this many batches; later calls are the quantization's


class Misbehaving(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.calls = 0
        self.act = act

    def forward(self, x):
        self.calls += 1
        if self.calls > FLOAT_BATCHES:
            self.act()
        return self.fc(x)


def hang_in_native_code():
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(120)


register(ModelSpec("segfaulting", lambda: Misbehaving(lambda: ctypes.string_at(0)), "segfaults at calibration",
                   sample=vectors(4)))
register(ModelSpec("sleeping", lambda: Misbehaving(lambda: time.sleep(120)), "sleeps at calibration",
                   sample=vectors(4)))
register(ModelSpec("hanging", lambda: Misbehaving(hang_in_native_code), "hangs deaf to SIGALRM",
                   sample=vectors(4)))
'''


def run_pytest(tmp_path: Path, *args: str, wait: bool = True):
    source = tmp_path / "misbehaving.py"
    source.write_text(MISBEHAVING)
    command = [sys.executable, "-m", "pytest", f"--rootdir={SUITE}", f"--reports-dir={tmp_path / 'reports'}", "-q",
               f"--models-from={source}", "--modes", "eager", "--backends", "fbgemm", "--schemes", "ptq_static",
               *args]
    env = {**os.environ, "QMATRIX_TIMEOUT_GRACE": "2"}
    if not wait:
        return subprocess.Popen(command, cwd=SUITE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return subprocess.run(command, cwd=SUITE, env=env, capture_output=True, text=True, timeout=600)


def latest(tmp_path: Path) -> Path:
    return (tmp_path / "reports" / "latest").resolve()


def by_id(run: Path) -> dict[str, dict]:
    return {r["case_id"]: r for r in read_records(run)}


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["no -n", "-n 2"])
def test_crashes_and_hangs_are_recorded_and_the_run_goes_on(tmp_path, workers):
    result = run_pytest(tmp_path, "--qspecs", "default", "--models", "segfaulting,sleeping,hanging,mlp",
                        "--cell-timeout", "3", *workers)
    assert result.returncode == 1, result.stdout[-3000:]
    records = by_id(latest(tmp_path))
    assert records["mlp-eager-ptq_static-fbgemm"]["status"] == "pass"
    crash = records["segfaulting-eager-ptq_static-fbgemm"]
    assert crash["status"] == "crash"
    assert crash["signal"] == "SIGSEGV"
    assert crash["stage"] == "calibrate"
    assert "Segmentation fault" in crash["error_message"]
    sleep = records["sleeping-eager-ptq_static-fbgemm"]
    assert (sleep["status"], sleep["stage"], sleep["error_type"]) == ("timeout", "calibrate", "CellTimeout")
    hang = records["hanging-eager-ptq_static-fbgemm"]
    assert (hang["status"], hang["stage"]) == ("timeout", "calibrate")
    assert "its worker was ended" in hang["error_message"]
    assert all(r["verdict"] == "worse" for c, r in records.items() if not c.startswith("mlp"))
    assert "3 failed, 1 passed" in result.stdout
    assert (latest(tmp_path) / "report.md").exists()


def test_records_survive_kill_9_of_the_whole_run(tmp_path):
    process = run_pytest(tmp_path, "--qspecs", "default", "--models", "mlp,sleeping", "--cell-timeout", "100",
                         "-n", "1", wait=False)
    run = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        runs = [p for p in (tmp_path / "reports").glob("2*") if list(p.glob("cells*.jsonl"))]
        if runs:
            run = runs[0]
            break
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert run is not None, "no record was written before the deadline"
    records = by_id(run)
    assert records["mlp-eager-ptq_static-fbgemm"]["status"] == "pass"
    assert "sleeping-eager-ptq_static-fbgemm" not in records
    assert json.loads((run / "env.json").read_text())["versions"]["torch"]


def test_seeds_come_from_the_case_id():
    assert stable_seed("mlp-fx-ptq_static-fbgemm") == stable_seed("mlp-fx-ptq_static-fbgemm")
    assert stable_seed("mlp-fx-ptq_static-fbgemm") != stable_seed("mlp-fx-ptq_static-x86")
    assert stable_seed("mlp") == 3054697684, "a seed must not change across machines, runs or Python versions"


def test_determinism_differences():
    first = [{"case_id": "a", "status": "pass", "metrics": {"sqnr_db": 30.0}},
             {"case_id": "b", "status": "fail", "metrics": {}}]
    assert differences(first, first) == []
    moved = [{"case_id": "a", "status": "pass", "metrics": {"sqnr_db": 31.0}},
             {"case_id": "c", "status": "fail", "metrics": {}}]
    assert differences(first, moved) == ["b: only in the first run", "c: only in the second run",
                                         "a: sqnr_db 30.0 then 31.0"]
    changed = [{"case_id": "a", "status": "inaccurate", "metrics": {"sqnr_db": 30.0}}, first[1]]
    assert differences(first, changed) == ["a: status pass then inaccurate"]
