"""The operator axis: discovery of operator modules, and the operator support table."""

from __future__ import annotations

import re
import sys

import pytest

import matrix.runner as runner
import models
import models.operators
from matrix.backends import BACKENDS
from matrix.cases import expand
from matrix.modes import MODES
from matrix.reporting import tables
from matrix.reporting.markdown import cell as shown
from matrix.reporting.markdown import render_markdown
from matrix.schemes import SCHEMES
from matrix.thresholds import Thresholds


def operator_support(records):
    return tables.operator_support(tables.load({}, records)).map(shown)


def operator_outcomes(records):
    return tables.operator_outcomes(tables.load({}, records)).map(shown)


def fixed_qparams(records):
    return tables.fixed_qparams(tables.load({}, records), records).map(shown)


THROWAWAY = '''
from torch import nn

from models import ModelSpec, images, register
from models.operators import Only

register(ModelSpec("op_throwaway_hardshrink", lambda: Only(nn.Hardshrink()), "nn.Hardshrink alone",
                   sample=images(2, 4, 4), kind="operator"))
'''


@pytest.fixture
def throwaway_operator(tmp_path, monkeypatch):
    """A new operator file in a folder of the operators package, registered into a copy of the registry."""
    (tmp_path / "throwaway.py").write_text(THROWAWAY)
    monkeypatch.setattr(models.operators, "__path__", [*models.operators.__path__, str(tmp_path)])
    monkeypatch.setattr(models, "MODELS", dict(models.MODELS))
    yield "op_throwaway_hardshrink"
    sys.modules.pop("models.operators.throwaway", None)


def test_a_new_operator_file_is_discovered_and_crossed(throwaway_operator):
    assert "throwaway" in models.operators.discover()
    spec = models.MODELS[throwaway_operator]
    assert spec.kind == "operator"
    cases = [c for c in expand(models.MODELS, MODES, SCHEMES, BACKENDS) if c.model == throwaway_operator]
    relu = [c for c in expand(models.MODELS, MODES, SCHEMES, BACKENDS) if c.model == "op_relu"]
    assert {(c.mode, c.scheme, c.backend) for c in cases} == {(c.mode, c.scheme, c.backend) for c in relu}
    assert {c.kind for c in cases} == {"operator"}
    records = [cell(c.model, c.mode, c.scheme, c.backend, "pass") for c in cases]
    table = operator_support(records)
    assert set(table["operator"]) == {throwaway_operator}
    assert set(table["mode"]) == {c.mode for c in cases}
    assert all(re.fullmatch(r"(\d+)/\1", passing) for passing in table["passing"])


def test_a_new_operator_runs_as_a_cell_and_lands_in_the_table(throwaway_operator, monkeypatch):
    models.operators.discover()
    monkeypatch.setitem(runner.MODELS, throwaway_operator, models.MODELS[throwaway_operator])
    case = next(c for c in expand(models.MODELS, MODES, SCHEMES, BACKENDS)
                if c.model == throwaway_operator and (c.mode, c.scheme, c.backend) == ("fx", "ptq_static", "fbgemm"))
    record = runner.run_cell(case, Thresholds.load())
    assert record["status"] not in ("error", None), record
    row = operator_support([record]).iloc[0]
    assert row["operator"] == throwaway_operator
    assert row["fbgemm ptq_static"] not in ("·", "")


def test_operators_are_registered_with_their_inputs():
    operators = {name: spec for name, spec in models.MODELS.items() if spec.kind == "operator"}
    assert {"op_linear", "op_conv2d", "op_lstm", "op_gru", "op_multihead_attention", "op_add", "op_sigmoid",
            "op_embedding_bag", "op_interpolate_bilinear"} <= set(operators)
    for name, spec in operators.items():
        data = spec.make_data()
        assert len(data.calibration) == models.CALIBRATION_BATCHES, name


def cell(model, mode, scheme, backend, status, kind="operator", **extra):
    record = {"case_id": f"{model}-{mode}-{scheme}-{backend}", "model": model, "kind": kind, "mode": mode,
              "scheme": scheme, "qspec": "default", "backend": backend, "status": status, "stage": None,
              "error_type": None, "error_message": None, "reason": None, "metrics": {}, "timings": {},
              "verdict": "as_expected", "expected": {"status": "pass"}, "documented": None, "nodeid": None}
    record.update(extra)
    return record


RECORDS = [
    cell("op_relu", "eager", "ptq_static", "fbgemm", "pass",
         inspection_notes={"output_qparams": {"aten.relu": [[0.05, 0, "quint8"]]}}),
    cell("op_relu", "eager", "ptq_dynamic", "fbgemm", "not_quantized", reason="no quantized compute op"),
    cell("op_relu", "eager", "ptq_static", "qnnpack", "fail", stage="run", error_type="NotImplementedError",
         error_message="no kernel"),
    cell("op_sigmoid", "eager", "ptq_static", "fbgemm", "pass",
         inspection_notes={"output_qparams": {"aten.sigmoid": [[0.00390625, 0, "quint8"]]}}),
    cell("op_sigmoid", "fx", "ptq_static", "fbgemm", "inaccurate", reason="sqnr_db 6.7 < 15.0",
         inspection_notes={"output_qparams": {"aten.sigmoid": [[0.02, 3, "quint8"]]}}),
    cell("op_sigmoid", "pt2e", "ptq_static", "inductor", "not_quantized", reason="no quantized compute op"),
    cell("mlp", "fx", "ptq_static", "fbgemm", "pass", kind="model"),
]


def test_operator_support_has_operator_rows_and_backend_scheme_columns_by_mode():
    table = operator_support(RECORDS)
    assert list(table["mode"]) == ["eager", "eager", "fx", "pt2e"]
    assert "mlp" not in set(table["operator"])
    eager = table[table["mode"] == "eager"].set_index("operator")
    assert eager.loc["op_relu", "fbgemm ptq_static"] == "✅"
    assert eager.loc["op_relu", "fbgemm ptq_dynamic"] == "⬜"
    assert eager.loc["op_relu", "qnnpack ptq_static"] == "❌"
    assert eager.loc["op_relu", "inductor ptq_static"] == "·"
    assert eager.loc["op_relu", "passing"] == "1/3 (⬜1 ❌1)"
    assert list(table.columns[2:5]) == ["fbgemm ptq_static", "fbgemm ptq_dynamic", "qnnpack ptq_static"]


def test_operator_outcomes_name_stage_and_error_and_join_backends():
    known = {"status": "fail", "reason": "no quantized kernel for this op", "source": "a run"}
    records = [*RECORDS, cell("op_relu", "eager", "ptq_static", "onednn", "fail", stage="run",
                              error_type="NotImplementedError", error_message="no kernel")]
    records[2] = {**records[2], "expected": known, "verdict": "known"}
    records[-1] = {**records[-1], "expected": known, "verdict": "known"}
    table = operator_outcomes(records)
    failed = table[table["outcome"] == "❌ fail"].iloc[0]
    assert failed["backend"] == "qnnpack, onednn"
    assert failed["stage"] == "run"
    assert failed["error / reason"] == "NotImplementedError: no kernel"
    assert failed["verdict"] == "as expected (known)"
    assert failed["known because"] == "no quantized kernel for this op"
    assert table[table["outcome"] == "⬜ not_quantized"].iloc[0]["known because"] == ""
    assert "✅ pass" not in set(table["outcome"])


def test_fixed_qparams_are_checked_against_the_fixed_values():
    records = [*RECORDS, cell("op_sigmoid", "eager", "qat", "qnnpack", "pass",
                              inspection_notes={"output_qparams": {"aten.sigmoid": [[0.00390625, 0, "quint8"]]}})]
    table = fixed_qparams(records).set_index("cells")
    assert list(table["model"]) == ["op_sigmoid", "op_sigmoid"], "aten.relu has no fixed qparams"
    assert table.loc["eager ptq_static: fbgemm; eager qat: qnnpack", "check"] == "✅ fixed"
    assert "fbgemm, qnnpack" in fixed_qparams([records[3], {**records[3], "backend": "qnnpack",
                                                            "case_id": "op_sigmoid-eager-ptq_static-qnnpack"}]
                                              ).iloc[0]["cells"], "backends in the order of the support tables"
    assert table.loc["fx ptq_static: fbgemm", "check"] == "❌ differs"
    assert table.loc["fx ptq_static: fbgemm", "zero point"] == 3


def test_markdown_has_the_operator_section_grouped_by_mode():
    text = render_markdown({"label": "ops"}, RECORDS)
    section = text[text.index("## Operator support"):]
    for heading in ("### eager", "### fx", "### pt2e", "### Operator outcomes", "### Fixed-qparams ops"):
        assert heading in section
    eager = section[section.index("### eager"):section.index("### fx")]
    assert "inductor" not in eager, "a mode's table shows only the columns it has cells in"
    assert "NotImplementedError: no kernel" in section


def test_trace_counts_aten_ops_on_quantized_tensors_and_their_output_qparams():
    import torch
    from torch import nn

    from matrix.backends.native import trace_run

    class QuantizedSigmoid(nn.Module):
        def forward(self, x):
            q = torch.quantize_per_tensor(x, 0.05, 128, torch.quint8)
            return torch.sigmoid(torch.relu(q)).dequantize()

    trace = trace_run(QuantizedSigmoid(), (torch.randn(4, 8),))
    assert dict(trace.computed) == {"aten.relu": 1, "aten.sigmoid": 1}, "quantize and dequantize compute nothing"
    assert trace.output_qparams["aten.sigmoid"] == [[0.00390625, 0, "quint8"]]
    assert trace.output_qparams["aten.relu"] == [[0.05, 128, "quint8"]]
    float_trace = trace_run(nn.Sequential(nn.ReLU()), (torch.randn(4, 8),))
    assert not float_trace.computed and not float_trace.output_qparams
