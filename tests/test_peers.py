"""The peer comparison's reading of ExecuTorch's suite report and its agreement rule."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "peers.py"
SPEC = importlib.util.spec_from_file_location("peers", SCRIPT)
peers = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(peers)


def subtest(result: str, delegated: dict, snr: str = "inf") -> dict:
    return {"Result": result, "Delegated Ops": delegated, "Output 0 SNR": snr}


REPORT = {"tests": [
    {"nodeid": "backends/test/suite/operators/test_add.py::test_add_dtype[flow]", "outcome": "passed",
     "metadata": {"subtests": [subtest("Pass", {"quantized_decomposed::quantize_per_tensor": 3,
                                                "aten::add.Tensor": 1})]}},
    {"nodeid": "backends/test/suite/operators/test_relu.py::test_relu[flow]", "outcome": "passed",
     "metadata": {"subtests": [subtest("Pass", {"aten::relu.default": 1}, "143.5"), subtest("Skip", {}, "")]}},
]}


def record(status: str, reason: str | None = None) -> dict:
    return {"status": status, "expected": {"reason": reason} if reason else None, "op_counts": {}, "metrics": {}}


def test_the_peer_report_is_read_per_operator():
    found = peers.peer_summary(REPORT)
    assert found["add"]["qdq_delegated"] and not found["relu"]["qdq_delegated"]
    assert dict(found["relu"]["results"]) == {"Pass": 1, "Skip": 1}
    assert found["relu"]["snr"] == [143.5]
    assert peers.snr_range(found["add"]["snr"]) == "inf"


@pytest.mark.parametrize(("op", "ours", "verdict", "says"), [
    ("add", record("pass"), "agree", "on int8"),
    ("relu", record("not_quantized"), "agree", "in float"),
    ("add", record("not_quantized", "moves data"), "disagree", "moves data"),
    ("relu", record("pass"), "disagree", "took no Q/DQ"),
])
def test_agreement_is_on_what_ran_in_int8(op, ours, verdict, says):
    found, why = peers.agreement(peers.peer_summary(REPORT)[op], ours)
    assert found == verdict
    assert says in why


def test_a_side_that_did_not_run_is_missing_not_agreeing():
    assert peers.agreement(None, record("pass"))[0] == "missing"
    assert peers.agreement(peers.peer_summary(REPORT)["add"], None)[0] == "missing"
