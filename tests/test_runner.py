"""Status rules of one cell, with stand-in modes, backends and models (no heavy backend)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import matrix.runner as runner
from matrix.backends import Backend
from matrix.cases import Case
from matrix.contract import Deployed, Inspection, Quantized
from matrix.modes import Mode
from matrix.thresholds import Thresholds
from matrix.vocabulary import Stage
from models import ModelSpec, images, vectors


class Broken(nn.Module):
    def forward(self, x):
        raise RuntimeError("float model is broken")


def spec(name="tiny", build=lambda: nn.Linear(4, 2)):
    return ModelSpec(name, build, "a stand-in", sample=vectors(4))


def mode(quantize):
    return Mode("stand_in", "", reaches=lambda b: b.name == "stand_in", schemes=("ptq_static",), quantize=quantize)


def backend(quantized_ops=1, noise=0.0, reason=None, spike=0.0):
    def deploy(ctx, model):
        def run(x):
            out = model(x)
            bump = torch.zeros_like(out)
            bump.view(-1)[0] = spike  # one output far off: many steps from the simulation, little to SQNR
            return out + noise * torch.ones_like(out) + bump
        return Deployed(run, Inspection(quantized={"QLinear": quantized_ops} if quantized_ops else {}))
    return Backend("stand_in", "test", "", deploy=deploy, unavailable_check=lambda: reason)


def same_model(ctx):
    with ctx.clock.stage(Stage.CONVERT):
        return Quantized(ctx.float_model, ctx.float_model, "identity")


def failing_prepare(ctx):
    with ctx.clock.stage(Stage.PREPARE):
        raise NotImplementedError("no kernel for this op\nsecond line")


def run(monkeypatch, quantize=same_model, model_spec=None, the_backend=None, scheme="ptq_static"):
    model_spec = model_spec or spec()
    monkeypatch.setitem(runner.MODELS, model_spec.name, model_spec)
    monkeypatch.setitem(runner.MODES, "stand_in", mode(quantize))
    monkeypatch.setitem(runner.BACKENDS, "stand_in", the_backend or backend())
    case = Case(model_spec.name, "model", "stand_in", scheme, "default", "stand_in")
    return runner.run_cell(case, Thresholds.load())


def test_pass_needs_quantized_ops_and_metrics(monkeypatch):
    record = run(monkeypatch)
    assert record["status"] == "pass"
    assert record["quantized_ops"] == 1
    assert record["metrics"]["lsb_err_vs_sim"] == 0.0
    assert set(record["timings"]) >= {"reference", "convert", "run", "compare"}


def test_no_quantized_op_is_not_quantized(monkeypatch):
    record = run(monkeypatch, the_backend=backend(quantized_ops=0))
    assert record["status"] == "not_quantized"


def test_a_float_cell_holds_no_quantized_op_and_its_fidelity_is_the_float_parity(monkeypatch):
    record = run(monkeypatch, the_backend=backend(quantized_ops=0), scheme="float")
    assert (record["status"], record["fidelity"]) == ("not_quantized", "faithful")
    assert "no quantizer" in record["reason"]
    assert record["limits"]["min_sqnr_db"] == Thresholds.load().for_cell("float", "tiny", "stand_in", "model")[
        "min_sqnr_db"] > Thresholds.load().for_cell("ptq_static", "tiny", "stand_in", "model")["min_sqnr_db"]
    assert "latency" not in record  # a float cell is not timed against itself


def test_a_float_export_off_by_an_int8_cells_error_departs(monkeypatch):
    # 0.01 on outputs of about one: an int8 cell passes with that (about 40 dB), a float export does not.
    record = run(monkeypatch, the_backend=backend(quantized_ops=0, noise=0.01), scheme="float")
    assert (record["status"], record["fidelity"]) == ("not_quantized", "departs")
    assert "sqnr_db" in record["fidelity_reason"]
    assert run(monkeypatch, the_backend=backend(noise=0.01))["status"] == "pass"


def test_a_quantized_op_in_a_float_cell_is_the_harness_error(monkeypatch):
    record = run(monkeypatch, the_backend=backend(quantized_ops=2), scheme="float")
    assert (record["status"], record["stage"], record["error_type"]) == ("error", "harness", "QuantizedFloatCell")
    assert "2 QLinear" in record["error_message"]


def test_an_fp16_cell_counts_what_computed_in_float16(monkeypatch):
    def deploy(ctx, model, computed):
        return Deployed(model, Inspection(floating={computed: 2}))

    for computed, status in (("Conv[f16]", "pass"), ("Conv", "not_quantized"), ("CONV_2D[dequantized float16 weights]",
                                                                                 "not_quantized")):
        half = Backend("stand_in", "test", "", deploy=lambda ctx, model, c=computed: deploy(ctx, model, c))
        record = run(monkeypatch, the_backend=half, scheme="fp16")
        assert record["status"] == status, computed
        assert record["quantized_ops"] == (2 if status == "pass" else 0)
    assert "float16" in record["reason"]


def test_error_over_threshold_is_inaccurate(monkeypatch):
    record = run(monkeypatch, the_backend=backend(noise=10.0))
    assert record["status"] == "inaccurate"
    assert "sqnr_db" in record["reason"]


def test_exception_names_its_stage_and_first_line(monkeypatch):
    record = run(monkeypatch, quantize=failing_prepare)
    assert record["status"] == "fail"
    assert record["stage"] == "prepare"
    assert record["error_type"] == "NotImplementedError"
    assert record["error_message"] == "no kernel for this op"
    assert "prepare" in record["timings"]


def test_broken_float_model_is_an_error_not_a_finding(monkeypatch):
    record = run(monkeypatch, model_spec=spec("broken", Broken))
    assert record["status"] == "error"
    assert record["stage"] == "reference"
    assert "broken" in record["error_message"]


def test_missing_requirement_is_unavailable(monkeypatch):
    record = run(monkeypatch, the_backend=backend(reason="package x is not installed"))
    assert record["status"] == "unavailable"
    assert record["reason"] == "package x is not installed"


def test_seed_comes_from_the_case_id(monkeypatch):
    first, second = run(monkeypatch), run(monkeypatch)
    assert first["seed"] == second["seed"]
    assert first["metrics"] == second["metrics"]


def test_each_cell_starts_from_a_clean_dynamo(monkeypatch):
    resets = []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(True))
    run(monkeypatch)
    run(monkeypatch)
    assert len(resets) == 2


@pytest.mark.parametrize("name", ["mlp", "conv_bn_relu", "digits_mlp"])
def test_reference_models_are_deterministic(name):
    from models import MODELS

    model_spec = MODELS[name]
    a, b = model_spec.instantiate(), model_spec.instantiate()
    data = model_spec.make_data()
    with torch.no_grad():
        assert torch.equal(a(*data.evaluation), b(*data.evaluation))
    assert torch.equal(data.evaluation[0], model_spec.make_data().evaluation[0])


def test_an_inaccurate_cell_records_its_layer_by_layer_divergence(monkeypatch):
    layered = spec("layered", lambda: nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)))
    record = run(monkeypatch, model_spec=layered, the_backend=backend(noise=10.0))
    assert record["status"] == "inaccurate"
    divergence = record["divergence"]
    assert [name for name, _ in divergence["layers"]] == ["0", "1", "2"]
    assert divergence["first"] is None  # the model the mode made is faithful; the backend added the error
    assert divergence["summary"].startswith("no layer below")


def test_a_passing_cell_is_not_localized_unless_asked(monkeypatch):
    assert "divergence" not in run(monkeypatch)


def test_the_worst_batch_is_the_one_localized():
    from matrix.runner import worst_batch
    from models import BATCH

    expected = torch.randn(3 * BATCH, 4, generator=torch.Generator().manual_seed(0))
    far = expected.clone()
    far[BATCH + 1, 2] += 50.0  # one value of the second batch is far off
    assert worst_batch(expected, far, by_distance=True) == BATCH
    noisy = expected.clone()
    noisy[2 * BATCH :] *= -1.0  # the third batch has the lowest SQNR
    assert worst_batch(expected, noisy, by_distance=False) == 2 * BATCH
    far[0, 0] = float("nan")
    assert worst_batch(expected, far, by_distance=True) == 0


class OnGrid(nn.Module):
    """The model's output rounded to a grid of 256 steps over ``span``: a simulation's output."""

    def __init__(self, model: nn.Module, span: float = 4.0):
        super().__init__()
        self.model, self.step = model, span / 256

    def forward(self, x):
        return torch.round(self.model(x) / self.step) * self.step


def simulated_on_a_grid(ctx):
    with ctx.clock.stage(Stage.CONVERT):
        return Quantized(ctx.float_model, OnGrid(ctx.float_model), "a grid")


def test_accuracy_and_fidelity_are_judged_apart(monkeypatch):
    # One output 0.5 off: within SQNR against float over the whole batch, many steps from the simulation.
    record = run(monkeypatch, quantize=simulated_on_a_grid, the_backend=backend(spike=0.5))
    assert record["metrics"]["sqnr_db"] >= record["limits"]["min_sqnr_db"]
    assert record["metrics"]["lsb_err_vs_sim"] > record["limits"]["max_lsb_err_vs_sim"]
    assert (record["status"], record["fidelity"]) == ("pass", "departs")
    assert record["reason"] is None and record["fidelity_reason"].startswith("lsb_err_vs_sim")
    assert record["divergence"]["summary"], "a departure is localized like an inaccurate cell"
    faithful = run(monkeypatch, quantize=simulated_on_a_grid)
    assert (faithful["status"], faithful["fidelity"]) == ("pass", "faithful")
    far = run(monkeypatch, the_backend=backend(noise=10.0))
    assert (far["status"], far["fidelity"]) == ("inaccurate", "departs")
    assert run(monkeypatch, the_backend=backend(quantized_ops=0))["fidelity"] is None


def test_work_counted_in_an_ended_stage_adds_its_time_but_keeps_its_exceptions():
    from matrix.cell import StageClock
    from matrix.vocabulary import Stage

    clock = StageClock()
    with clock.stage(Stage.COMPARE):
        pass
    before = clock.timings["compare"]

    def localize_with_a_bug() -> None:
        with clock.counted_in(Stage.COMPARE):
            sum(range(10_000))
            raise KeyError("a bug of the localization, not a failure of compare")

    with pytest.raises(KeyError):
        localize_with_a_bug()
    assert clock.timings["compare"] > before


def test_batch_norm_statistics_are_the_same_on_every_instantiation_with_a_dropout_before_them():
    def build() -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout(0.5), nn.BatchNorm2d(4))

    spec = ModelSpec("dropout_bn", build, "a dropout before a batch norm", sample=images(3, 8, 8))
    first, second = spec.instantiate().state_dict(), spec.instantiate().state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert not first["2.running_mean"].eq(0).all()  # the statistics were estimated


def test_a_first_line_that_only_announces_what_follows_keeps_what_follows():
    """OpenVINO's errors start with the source location of the check that failed; the op it could
    not convert comes lines later. An ordinary message keeps its first line only."""
    from matrix.cell import first_line

    announced = RuntimeError("Check 'false' failed at src/unconverted_ops_report.cpp:151:\n"
                             "FrontEnd API failed with OpConversionFailure:\n\n"
                             "-- No conversion rule found for operations: com.microsoft.QGemm\n")
    assert first_line(announced).endswith("No conversion rule found for operations: com.microsoft.QGemm")
    assert first_line(RuntimeError("no kernel\nat frame 3")) == "no kernel"
