"""Does it pay: timing against float, the float deployment cache, artifact sizes, and the tables
that show them (stand-in runs and fixed records; no heavy backend)."""

from __future__ import annotations

import time

import pytest
import torch
from cells import cell
from torch import nn

import matrix.payoff as payoff
import matrix.runner as runner
from matrix.backends import Backend
from matrix.cases import Case
from matrix.contract import Deployed, Inspection, Quantized
from matrix.formats.pytorch import serialized_bytes
from matrix.modes import Mode
from matrix.reporting import tables
from matrix.reporting.html import render_html
from matrix.reporting.markdown import render_markdown
from matrix.reporting.values import size, speed
from matrix.thresholds import ThresholdError, Thresholds
from matrix.vocabulary import Stage
from models import ModelSpec, vectors


def busy(seconds: float):
    def run(*inputs):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
        return inputs[0]
    return run


class FakeClock:
    """``time`` as payoff reads it, advanced only by the runs it times: a timing test that the
    machine's load cannot move."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def costing(self, *seconds: float):
        """A run that takes each of ``seconds`` in turn."""
        calls = iter(range(10**9))

        def run(*inputs):
            self.now += seconds[next(calls) % len(seconds)]
            return inputs[0]
        return run


def test_a_kernel_twice_as_fast_times_as_a_speedup_of_about_two(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(payoff, "time", clock)
    found = payoff.time_pairs(clock.costing(0.002, 0.0021, 0.0019), clock.costing(0.001, 0.00105, 0.00098),
                              (torch.zeros(1),), budget=0.1)
    assert 1.8 < found["speedup"] < 2.2
    low, high = found["speedup_iqr"]
    assert low <= found["speedup"] <= high and high < 3
    wide_low, wide_high = found["speedup_spread"]  # the 10th to 90th percentile holds the quartiles
    assert wide_low <= low and high <= wide_high
    assert found["pairs"] >= payoff.MIN_PAIRS
    assert found["float_ms"] > found["quantized_ms"]


def test_timing_stops_at_its_budget_but_not_before_its_minimum_pairs():
    started = time.perf_counter()
    found = payoff.time_pairs(busy(0.02), busy(0.02), (torch.zeros(1),), budget=0.01)
    assert found["pairs"] == payoff.MIN_PAIRS
    assert time.perf_counter() - started < 1.0
    low, high = found["speedup_iqr"]
    assert speed(found["speedup"], low, high) == "same speed" or 0.8 < found["speedup"] < 1.25


def test_the_float_deployment_is_made_once_and_a_failure_is_kept_as_the_reason():
    floats = payoff.FloatDeployments(limit=2)
    made = []

    def make(name):
        def build():
            made.append(name)
            if name == "broken":
                raise RuntimeError("no float lowering")
            return name
        return build

    assert floats.get(("a",), make("a")) == "a"
    assert floats.get(("a",), make("a")) == "a"
    failure = floats.get(("b",), make("broken"))
    assert isinstance(failure, RuntimeError)
    floats.get(("c",), make("c"))  # pushes out the oldest, "a"
    floats.get(("a",), make("a"))
    assert made == ["a", "broken", "c", "a"]


def test_latency_choices_pick_cells_by_kind_and_refuse_a_typo():
    assert payoff.timed("models", "model") and not payoff.timed("models", "operator")
    assert payoff.timed("all", "operator") and not payoff.timed("off", "model")
    with pytest.raises(ValueError, match="'sometimes'"):
        payoff.timed("sometimes", "model")


def test_a_latency_budget_that_is_not_positive_is_refused(tmp_path):
    path = tmp_path / "thresholds.toml"
    path.write_text("[defaults]\nmin_sqnr_db = 15.0\nmax_lsb_err_vs_sim = 8.0\nmax_accuracy_drop = 0.02\n"
                    "max_cell_seconds = 60.0\nlatency_seconds = 0\nmax_recompiled_layers = 1000\n")
    with pytest.raises(ThresholdError, match="latency_seconds must be positive"):
        Thresholds.load(path)


def test_a_pt2e_graph_counts_the_int8_weights_it_reads_not_the_float_ones_left_registered():
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 8)).eval()
    example = (torch.randn(4, 64),)
    graph = torch.export.export(model, example).module()
    prepared = prepare_pt2e(graph, XNNPACKQuantizer().set_global(get_symmetric_quantization_config()))
    prepared(*example)
    converted = convert_pt2e(prepared)
    float_bytes, int8_bytes = serialized_bytes(model), serialized_bytes(converted)
    assert any(p.dtype == torch.float32 and p.numel() == 64 * 128 for p in converted.state_dict().values())
    assert 2.5 < float_bytes / int8_bytes < 4.5  # int8 weights, float biases and qparams


# A stand-in cell: the "quantized" model is the float one, deployed with a fixed delay.
def stand_in_backend(delay: float, float_fails: bool = False):
    def deploy(ctx, model):
        quantized = ctx.handoff.get("quantized") is model
        if float_fails and not quantized:
            raise NotImplementedError("this backend lowers no float model")
        run = busy(delay if quantized else 2 * delay)

        def forward(x):
            run(x)
            return model(x)
        return Deployed(forward, Inspection(quantized={"QLinear": 1}), size_bytes=100 if quantized else 400)
    return Backend("stand_in", "test", "", deploy=deploy)


def quantize(ctx):
    with ctx.clock.stage(Stage.CONVERT):
        ctx.handoff["quantized"] = ctx.float_model
        return Quantized(ctx.float_model, ctx.float_model, "identity")


def run_stand_in(monkeypatch, backend, kind="model", latency="models"):
    spec = ModelSpec("tiny", lambda: nn.Linear(4, 2), "a stand-in", sample=vectors(4), kind=kind)
    monkeypatch.setitem(runner.MODELS, spec.name, spec)
    monkeypatch.setitem(runner.MODES, "stand_in", Mode("stand_in", "", reaches=lambda b: True,
                                                       schemes=("ptq_static",), quantize=quantize))
    monkeypatch.setitem(runner.BACKENDS, "stand_in", backend)
    case = Case(spec.name, kind, "stand_in", "ptq_static", "default", "stand_in")
    return runner.run_cell(case, Thresholds.load(), latency=latency)


def test_a_timed_cell_records_its_speedup_and_compression_against_float_on_its_backend(monkeypatch):
    record = run_stand_in(monkeypatch, stand_in_backend(0.001))
    assert record["status"] == "pass"
    assert 1.5 < record["latency"]["speedup"] < 2.6
    assert record["size"] == {"bytes": 100, "float_bytes": 400, "compression": 4.0}
    assert "measure" in record["timings"]


def test_an_operator_cell_is_not_timed_by_default_but_has_its_size(monkeypatch):
    record = run_stand_in(monkeypatch, stand_in_backend(0.0), kind="operator")
    assert "latency" not in record and "measure" not in record["timings"]
    assert record["size"] == {"bytes": 100}


def test_a_float_model_that_does_not_deploy_leaves_the_reason_and_the_status_alone(monkeypatch):
    record = run_stand_in(monkeypatch, stand_in_backend(0.0, float_fails=True))
    assert record["status"] == "pass"
    assert "NotImplementedError: this backend lowers no float model" in record["latency"]["error"]
    assert "speedup" not in record["latency"]


def test_speed_and_size_in_words():
    assert speed(1.5, 1.2, 1.8) == "1.50× faster"
    assert speed(0.5, 0.4, 0.6) == "2.00× slower"
    assert speed(1.1, 0.9, 1.3) == "same speed"
    assert size(4.0) == "4.00× smaller" and size(0.5) == "2.00× larger" and size(1.001) == "same size"
    assert speed(None) == "" and size(None) == ""


def timed_cell(backend, qspec, status, speedup, iqr, compression=3.9):
    return cell("mlp", "fx", "ptq_static", backend, status, qspec=qspec, quantized_ops=2,
                case_id=f"mlp-fx-ptq_static-{backend}-{qspec}",
                metrics={"sqnr_db": 30.0, "sqnr_sim_db": 30.0, "lsb_err_vs_sim": 0.5},
                latency={"speedup": speedup, "speedup_iqr": iqr, "float_ms": 1.0, "quantized_ms": 1.0 / speedup},
                size={"bytes": 1000, "float_bytes": 1000 * compression, "compression": compression})


def test_the_pays_off_table_picks_the_fastest_passing_cell_and_counts_the_slower_ones():
    records = [timed_cell("fbgemm", "default", "pass", 1.3, [1.2, 1.4]),
               timed_cell("fbgemm", "w_per_tensor", "pass", 1.6, [1.5, 1.7]),
               timed_cell("fbgemm", "a_uint8", "inaccurate", 2.5, [2.4, 2.6]),
               timed_cell("onnxruntime", "default", "pass", 0.5, [0.45, 0.55]),
               timed_cell("onnxruntime", "w_per_tensor", "pass", 0.9, [0.7, 1.1])]
    run = tables.load({}, records)
    found = tables.pays_off(run).set_index("backend")
    assert found.loc["fbgemm", "fastest passing cell"] == "fx ptq_static w_per_tensor"  # not the inaccurate one
    assert found.loc["fbgemm", "speed"] == "1.60× faster"
    assert found.loc["fbgemm", "slower than float"] == 0
    assert found.loc["onnxruntime", "speed"] == "same speed"
    assert found.loc["onnxruntime", "slower than float"] == 1
    by_backend = tables.speedup_by_backend(run).set_index("backend")
    assert by_backend.loc["onnxruntime", "ptq_static"] == "0.70× (2 cells, 1 slower)"
    text = render_markdown({}, records)
    assert "## Does it pay" in text and "1.60× faster" in text
    assert "1.60× faster, 3.90× smaller" in render_html({}, records), "each cell's chip: report.html's per-model table"


def test_profiled_time_is_split_by_kind_of_kernel():
    from matrix.formats import onnx
    from matrix.formats.pytorch import op_class, time_split

    assert op_class("quantized::linear_dynamic") == "quantized" and op_class("onednn::qconv_pointwise") == "quantized"
    assert op_class("aten::quantize_per_tensor") == "qdq" and op_class("aten::dequantize") == "qdq"
    assert op_class("aten::addmm") == "float" and op_class("aten::relu") == "other"
    assert onnx.op_class("QLinearConv") == "quantized" and onnx.op_class("DequantizeLinear") == "qdq"
    assert onnx.op_class("FusedConv") == "float" and onnx.op_class("Relu") == "other"
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8)).eval()
    batch = (torch.randn(16, 64),)
    floating = time_split(model, batch)
    # Shares of time move with the machine's load; which kind holds time does not.
    assert floating["quantized"] == 0.0 and floating["qdq"] == 0.0 and floating["float"] > 0.0
    assert abs(sum(floating.values()) - 1.0) < 0.01
    dynamic = time_split(torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8), batch)
    assert dynamic["quantized"] > 0.0 and dynamic["float"] == 0.0


def test_a_profiler_that_fails_leaves_its_reason_beside_the_timing(monkeypatch):
    backend = stand_in_backend(0.0)
    deploy = backend.deploy

    def unprofiled(ctx, model):
        deployed = deploy(ctx, model)
        deployed.profile = lambda inputs: (_ for _ in ()).throw(RuntimeError("profiler busy"))
        return deployed
    import dataclasses

    record = run_stand_in(monkeypatch, dataclasses.replace(backend, deploy=unprofiled))
    assert record["latency"]["time_split_error"] == "RuntimeError: profiler busy"
    assert "speedup" in record["latency"]
