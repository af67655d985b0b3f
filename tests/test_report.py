"""Rendering from fixed records: no pytest hooks, no backend."""

from __future__ import annotations

import json

import pytest

from matrix.cli import main
from matrix.records import RunError, read_records
from matrix.report import documented_vs_observed, frame, mode_support, render_markdown, write_report


def cell(model, mode, scheme, backend, status, **extra):
    record = {
        "case_id": f"{model}-{mode}-{scheme}-{backend}", "model": model, "kind": "model", "mode": mode,
        "scheme": scheme, "qspec": "default", "backend": backend, "status": status, "stage": None,
        "error_type": None, "error_message": None, "reason": None, "metrics": {}, "quantized_ops": 0,
        "float_ops": 0, "timings": {"run": 0.5}, "verdict": "passed", "expected": {"status": "pass"},
        "documented": None, "nodeid": f"cases/test_matrix.py::test_cell[{model}-{mode}-{scheme}-{backend}]",
    }
    record.update(extra)
    return record


RECORDS = [
    cell("mlp", "fx", "ptq_static", "fbgemm", "pass", quantized_ops=3,
         metrics={"sqnr_db": 30.1, "sqnr_sim_db": 30.1, "lsb_err_vs_sim": 0.0}),
    cell("conv", "fx", "ptq_static", "fbgemm", "fail", stage="convert", error_type="RuntimeError",
         error_message="no kernel | here", verdict="failed"),
    cell("conv", "fx", "ptq_dynamic", "fbgemm", "not_quantized", reason="no quantized compute op",
         metrics={"sqnr_db": 300.0}, verdict="xfailed",
         expected={"status": "not_quantized", "reason": "conv has no dynamic kernel", "source": "docs#ops"},
         documented={"status": "not_quantized", "claim": "conv: dynamic N", "source": "docs#ops"}),
    cell("mlp", "fx", "ptq_dynamic", "fbgemm", "fail", stage="run", error_type="E", error_message="m",
         verdict="failed", documented={"status": "pass", "claim": "linear: dynamic Y", "source": "docs#ops"}),
    cell("mlp", "pt2e", "ptq_static", "inductor", "unavailable", reason="no torchao", verdict="skipped"),
]
ENV = {"label": "unit", "date": "2026-11-27T00:00:00+00:00", "versions": {"torch": "2.13.0"},
       "quantized_engines": ["fbgemm"], "command": "pytest", "stale_expectations": [
           {"entry": "[[expect]] #3 ['gone-*']", "status": "fail"}]}


def test_mode_support_counts_pass_over_applicable():
    table = mode_support(frame(RECORDS)).set_index(["mode", "scheme"])
    assert table.loc[("fx", "ptq_static"), "fbgemm"] == "1/2 (❌1)"
    assert table.loc[("fx", "ptq_dynamic"), "fbgemm"] == "0/2 (⬜1 ❌1)"
    assert table.loc[("pt2e", "ptq_static"), "inductor"] == "➖1"
    assert table.loc[("fx", "ptq_static"), "inductor"] == "·"


def test_documented_versus_observed_lists_only_disagreements():
    table = documented_vs_observed(frame(RECORDS))
    assert list(table["cell"]) == ["mlp-fx-ptq_dynamic-fbgemm"]
    assert "linear: dynamic Y" in table.iloc[0]["docs say"]


def test_markdown_has_every_section_and_reproduce_commands():
    text = render_markdown(ENV, RECORDS)
    for heading in ("# qmatrix report: unit", "## Mode support", "## Per model", "## Documented versus observed",
                    "## Surprises", "## Known outcomes", "## Stale expectations", "## Legend", "## Details"):
        assert heading in text
    assert "Pass rate over the 4 applicable cells: **25%**" in text
    assert "`pytest 'cases/test_matrix.py::test_cell[conv-fx-ptq_static-fbgemm]'`" in text
    assert "no kernel \\| here" in text, "a pipe in an error must not break the table"
    assert "conv has no dynamic kernel" in text
    assert "docs#ops" in text
    assert "[[expect]] #3 ['gone-*'] (expects fail) matches no cell" in text


def write_run(tmp_path, lines):
    run = tmp_path / "run"
    run.mkdir()
    (run / "cells-main.jsonl").write_text("".join(lines))
    (run / "env.json").write_text(json.dumps(ENV))
    return run


def test_report_command_rerenders_from_records(tmp_path, capsys):
    run = write_run(tmp_path, [json.dumps(r) + "\n" for r in RECORDS])
    assert main(["report", str(run)]) == 0
    assert (run / "report.md").read_text().startswith("# qmatrix report: unit")
    assert write_report(run, tmp_path / "out").exists()


def test_truncated_line_is_named_and_nothing_is_overwritten(tmp_path, capsys):
    lines = [json.dumps(r) + "\n" for r in RECORDS]
    lines[2] = lines[2][:40] + "\n"
    run = write_run(tmp_path, lines)
    (run / "report.md").write_text("previous report")
    with pytest.raises(RunError, match=r"cells-main.jsonl:3: not a JSON record"):
        read_records(run)
    assert main(["report", str(run)]) == 2
    assert "cells-main.jsonl:3" in capsys.readouterr().err
    assert (run / "report.md").read_text() == "previous report"


def test_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
