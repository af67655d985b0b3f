"""Sharding, and models brought from outside the suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from matrix.cases import Case, SelectionError, in_shard, parse_shard

SUITE = Path(__file__).resolve().parent.parent
CASES = [Case(f"m{i}", "model", mode, "ptq_static", "default", backend)
         for i in range(40) for mode in ("eager", "fx") for backend in ("fbgemm", "qnnpack")]


def test_parse_shard():
    assert parse_shard("2/3") == (2, 3)
    assert parse_shard(None) is None
    for bad in ("0/3", "4/3", "3", "a/b", "1/0", "-1/2"):
        with pytest.raises(SelectionError, match="expected i/n"):
            parse_shard(bad)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_partition_the_cases(count):
    shards = [[c for c in CASES if in_shard(c, (i, count))] for i in range(1, count + 1)]
    ids = [c.id for shard in shards for c in shard]
    assert sorted(ids) == sorted(c.id for c in CASES), "every case in exactly one shard"
    assert len(set(ids)) == len(ids)
    sizes = Counter(len(s) for s in shards)
    assert max(len(s) for s in shards) <= 2 * len(CASES) / count, sizes


def test_shard_membership_is_stable():
    first = [in_shard(c, (2, 3)) for c in CASES]
    assert first == [in_shard(c, (2, 3)) for c in CASES]
    # the same on another machine: a fixed id lands in a fixed shard
    assert in_shard(Case("mlp", "model", "fx", "ptq_static", "default", "fbgemm"), (2, 3)) is True


USER_MODELS = '''
import torch
from torch import nn
from models import ModelSpec, register, vectors

class Broken(nn.Module):
    def forward(self, x):
        raise RuntimeError("user model cannot run")

register(ModelSpec("user_mlp", lambda: nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4)),
                   "a user's model", sample=vectors(8), classifier=True))
register(ModelSpec("user_broken", Broken, "a user's broken model", sample=vectors(8)))
'''


def run_pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", f"--rootdir={SUITE}", f"--reports-dir={tmp_path / 'reports'}", "-q",
         *args], cwd=SUITE, capture_output=True, text=True, timeout=600, env={**os.environ},
    )


def records(tmp_path: Path) -> dict[str, dict]:
    run = (tmp_path / "reports" / "latest").resolve()
    lines = [line for f in run.glob("cells*.jsonl") for line in f.read_text().splitlines()]
    return {r["case_id"]: r for r in map(json.loads, lines)}


def test_models_from_a_file_join_the_matrix(tmp_path):
    source = tmp_path / "my_models.py"
    source.write_text(USER_MODELS)
    result = run_pytest(tmp_path, "--qspecs", "default", f"--models-from={source}", "--models", "user_mlp,user_broken",
                        "--modes", "fx", "--backends", "fbgemm", "--schemes", "ptq_static")
    found = records(tmp_path)
    assert found["user_mlp-fx-ptq_static-fbgemm"]["status"] == "pass"
    broken = found["user_broken-fx-ptq_static-fbgemm"]
    assert broken["status"] == "error" and broken["stage"] == "reference"
    assert "user_broken" in broken["error_message"] and str(source) in broken["error_message"]
    assert result.returncode == 1, "the broken model's cell fails its test"
    assert "1 passed" in result.stdout and "1 failed" in result.stdout


KNOWN_PROBLEMS = '''
import torch
from torch import nn
from models import ModelSpec, images, register, sequences

class PlainAddResidual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)) + x)

class GruTagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(6, 8, batch_first=True)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        return self.out(self.gru(x)[0])

register(ModelSpec("kp_plain_add", PlainAddResidual, "a residual written with +", sample=images(4, 8, 8)))
register(ModelSpec("kp_gru", GruTagger, "a GRU under a linear head", sample=sequences(5, 6)))
register(ModelSpec("kp_convs", lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1)),
                   "convolutions only", sample=images(3, 8, 8)))
'''


def test_a_users_model_of_known_problem_parts_is_explained_by_cause(tmp_path):
    """Models the expectations have never seen, each with a part whose cause they know (a plain +
    residual, a GRU, convolutions only): every cell that does not pass is known, with its reason."""
    source = tmp_path / "known_problems.py"
    source.write_text(KNOWN_PROBLEMS)
    result = run_pytest(tmp_path, "--qspecs", "default", f"--models-from={source}",
                        "--models", "kp_plain_add,kp_gru,kp_convs", "--modes", "eager", "--backends", "x86",
                        "--schemes", "ptq_static,ptq_dynamic,qat")
    found = records(tmp_path)
    assert len(found) == 9, result.stdout[-2000:]
    unexplained = {cid: (r["status"], r["verdict"]) for cid, r in found.items()
                   if r["status"] != "pass" and (r["verdict"] != "known" or not r["expected"].get("reason"))}
    assert not unexplained
    outcomes = {cid: (r["status"], r.get("stage")) for cid, r in found.items()}
    assert outcomes["kp_plain_add-eager-ptq_static-x86"] == ("fail", "run")
    assert outcomes["kp_gru-eager-ptq_static-x86"] == ("fail", "calibrate")
    assert outcomes["kp_gru-eager-qat-x86"] == ("fail", "train")
    assert outcomes["kp_convs-eager-ptq_dynamic-x86"] == ("not_quantized", None)
    assert result.returncode == 0, result.stdout[-2000:]
    report = (tmp_path / "reports" / "latest" / "report.md").read_text()
    yours = report.split("## Your models", 1)[1].split("\n## ", 1)[0]
    assert all(cid in yours for cid, r in found.items() if r["status"] != "pass")
    assert "kp_convs-eager-ptq_static-x86" not in yours and "| kp_gru " in yours and "1/3" in yours
    # The operator cells of its layers were not part of this run: the report says so, by name.
    assert found["kp_gru-eager-ptq_static-x86"]["operator_cells"]["GRU"] == "op_gru-eager-ptq_static-x86"
    assert "operator evidence not run: op_gru-eager-ptq_static-x86" in yours


@pytest.mark.parametrize(("content", "error"), [
    ("import no_such_package_here\n", "failed to import: ModuleNotFoundError"),
    ("def broken(:\n", "failed to import: SyntaxError"),
    ("from models import MODELS, register\nregister(MODELS['mlp'])\n",
     "failed to import: ValueError: model 'mlp' is registered twice"),
])
def test_a_model_file_that_cannot_be_loaded_is_a_usage_error_naming_it(tmp_path, content, error):
    source = tmp_path / "bad_models.py"
    source.write_text(content)
    result = run_pytest(tmp_path, "--qspecs", "default", f"--models-from={source}", "--models", "mlp", "--modes", "fx",
                        "--backends", "fbgemm", "--schemes", "ptq_static")
    assert result.returncode == 4, result.stdout[-2000:]
    assert f"--models-from: {source.resolve()}: {error}" in result.stderr + result.stdout
    assert not (tmp_path / "reports").exists() or not list((tmp_path / "reports").rglob("*.jsonl"))


def test_shard_runs_only_its_cells(tmp_path):
    args = ("--qspecs", "default", "--models", "mlp,conv_bn_relu", "--modes", "fx", "--backends", "fbgemm,qnnpack",
            "--collect-only")
    collected = []
    for index in (1, 2, 3):
        result = run_pytest(tmp_path, *args, f"--shard={index}/3")
        assert result.returncode in (0, 5), result.stderr
        collected.append({line.split("[")[1].rstrip("]") for line in result.stdout.splitlines() if "[" in line})
    everything = set().union(*collected)
    assert len(everything) == 12 and sum(map(len, collected)) == 12
    bad = run_pytest(tmp_path, "--shard=4/3")
    assert bad.returncode == 4 and "--shard '4/3'" in bad.stderr
