"""The plugin end to end on a tiny real slice: records, env.json, report, latest, verdicts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SUITE = Path(__file__).resolve().parent.parent


def run_pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", f"--rootdir={SUITE}", f"--reports-dir={tmp_path}", "-q", *args],
        cwd=SUITE, capture_output=True, text=True, timeout=600,
        env={**os.environ, "QMATRIX_RUN_LABEL": "selftest"},
    )


def test_a_small_slice_writes_records_env_and_report(tmp_path):
    result = run_pytest(tmp_path, "--qspecs", "default", "--models", "mlp,conv_bn_relu", "--modes", "fx",
                        "--backends", "fbgemm",
                        "--schemes", "ptq_static,ptq_dynamic")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    latest = tmp_path / "latest"
    assert latest.is_symlink()
    run = latest.resolve()
    assert run.name.endswith("-selftest")
    records = [json.loads(line) for f in run.glob("cells*.jsonl") for line in f.read_text().splitlines()]
    by_id = {r["case_id"]: r for r in records}
    assert set(by_id) == {"mlp-fx-ptq_static-fbgemm", "mlp-fx-ptq_dynamic-fbgemm",
                          "conv_bn_relu-fx-ptq_static-fbgemm", "conv_bn_relu-fx-ptq_dynamic-fbgemm"}
    passed = by_id["mlp-fx-ptq_static-fbgemm"]
    assert passed["status"] == "pass"
    assert passed["quantized_ops"] > 0
    assert passed["verdict"] == "as_expected"
    assert passed["limits"]["min_sqnr_db"] > 0 and passed["violations"] == []
    assert {"model", "kind", "mode", "scheme", "qspec", "backend"} <= set(passed)
    assert passed["metrics"]["sqnr_db"] > 15
    dynamic_conv = by_id["conv_bn_relu-fx-ptq_dynamic-fbgemm"]
    assert dynamic_conv["status"] == "not_quantized"
    assert dynamic_conv["verdict"] == "known"
    assert dynamic_conv["documented"]["source"].startswith("https://")
    env = json.loads((run / "env.json").read_text())
    assert env["versions"]["torch"].startswith("2.")
    assert env["label"] == "selftest"
    assert env["command"]
    assert env["axes"]["backend"][:4] == ["fbgemm", "x86", "qnnpack", "onednn"], "the registry order, recorded"
    assert "onnxruntime" in env["versions"], "each backend's packages are recorded"
    assert env["threads_per_worker"] == os.cpu_count()  # one worker (no -n) has every core
    report = (run / "report.md").read_text()
    assert "## Mode support" in report
    assert "conv_bn_relu-fx-ptq_dynamic-fbgemm" in report


def test_selection_by_marker(tmp_path):
    result = run_pytest(tmp_path, "--collect-only", "-m",
                        "backend_qnnpack and scheme_qat and model_mlp and qspec_default")
    assert result.returncode == 0, result.stderr
    assert "2 tests collected" in result.stdout or "2/" in result.stdout
    assert "mlp-eager-qat-qnnpack" in result.stdout
    assert "mlp-fx-qat-qnnpack" in result.stdout
    assert not list(tmp_path.iterdir()), "collecting alone writes no run"


def test_keep_artifacts_keeps_the_exported_models_only_when_asked(tmp_path):
    selection = ("--qspecs", "default", "--models", "mlp", "--modes", "pt2e", "--backends", "onnxruntime",
                 "--schemes", "ptq_static")
    kept = run_pytest(tmp_path / "kept", *selection, "--keep-artifacts")
    assert kept.returncode == 0, kept.stdout[-3000:]
    folder = (tmp_path / "kept" / "latest").resolve() / "artifacts" / "mlp-pt2e-ptq_static-onnxruntime"
    assert (folder / "model.onnx").stat().st_size > 0
    assert (folder / "model.optimized.onnx").stat().st_size > 0
    plain = run_pytest(tmp_path / "plain", *selection)
    assert plain.returncode == 0, plain.stdout[-3000:]
    assert not ((tmp_path / "plain" / "latest").resolve() / "artifacts").exists()


def test_workers_share_the_cores(monkeypatch):
    from types import SimpleNamespace

    from matrix.plugin import threads_per_worker

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    config = SimpleNamespace(option=SimpleNamespace(numprocesses=2))
    assert threads_per_worker(config) == 4
    config.option.numprocesses = 16
    assert threads_per_worker(config) == 1
    config.option.numprocesses = None
    assert threads_per_worker(config) == 8
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_per_worker(config) == 3


def test_crashed_workers_are_replaced_however_many_crash():
    """xdist's own limit (4 restarts per worker) would leave the cells after it unrun; a matrix run
    replaces every crashed worker, with -n given or not, unless the user sets the limit."""
    from types import SimpleNamespace

    from matrix.plugin import pytest_cmdline_main

    def configured(numprocesses, limit=None, args=("cases",)):
        option = SimpleNamespace(numprocesses=numprocesses, maxworkerrestart=limit, usepdb=False, collectonly=False)
        config = SimpleNamespace(option=option, args=list(args))
        pytest_cmdline_main(config)
        return option

    assert configured(2).maxworkerrestart == 10_000
    assert configured(None).maxworkerrestart == 10_000 and configured(None).numprocesses == 1
    assert configured(2, limit=3).maxworkerrestart == 3, "the user's own limit stands"
    assert configured(2, args=("tests",)).maxworkerrestart is None, "the suite's own tests are left alone"
