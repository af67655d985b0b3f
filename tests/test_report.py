"""Rendering from fixed records: no pytest hooks, no backend."""

from __future__ import annotations

import json

import pytest
from cells import cell

from matrix.cli import main
from matrix.records import RunError, read_records
from matrix.report import (
    documented_vs_observed,
    error_split,
    failure_groups,
    frame,
    mode_support,
    normalize_message,
    render_markdown,
    write_report,
)

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
    assert table.loc[("fx", "ptq_static"), "fbgemm"] == "🟨 1/2 (❌1)"
    assert table.loc[("fx", "ptq_dynamic"), "fbgemm"] == "🟥 0/2 (⬜1 ❌1)"
    assert table.loc[("pt2e", "ptq_static"), "inductor"] == "➖1"
    assert table.loc[("fx", "ptq_static"), "inductor"] == "·"


def test_documented_versus_observed_lists_only_disagreements():
    table = documented_vs_observed(frame(RECORDS))
    assert list(table["cell"]) == ["mlp-fx-ptq_dynamic-fbgemm"]
    assert "linear: dynamic Y" in table.iloc[0]["docs say"]


def test_markdown_has_every_section_and_reproduce_commands():
    text = render_markdown(ENV, RECORDS)
    for heading in ("# qmatrix report: unit", "## Mode support", "## Per model", "## Documented versus observed",
                    "## Failures by signature", "## Error split", "## Surprises", "## Known outcomes",
                    "## Stale expectations", "## Legend", "## Details"):
        assert heading in text
    assert "Pass rate over the 4 applicable cells: **25%**" in text
    assert "`pytest 'cases/test_matrix.py::test_cell[conv-fx-ptq_static-fbgemm]'`" in text
    assert "no kernel \\| here" in text, "a pipe in an error must not break the table"
    assert "conv has no dynamic kernel" in text
    assert "docs#ops" in text
    assert "[[expect]] #3 ['gone-*'] (expects fail) matches no cell" in text


def test_missing_text_is_not_printed_as_nan():
    text = render_markdown(ENV, RECORDS)
    assert "nan" not in text.replace("nanoseconds", "")
    assert frame(RECORDS).loc[0, "error_type"] is None


def test_messages_that_differ_in_numbers_or_addresses_share_a_signature():
    assert normalize_message("bad shape (3, 4) at 0x7f00ab") == normalize_message("bad shape (8, 16) at 0x1234")
    assert normalize_message("conv2d: got 3 channels") == "conv2d: got N channels", "names keep their digits"
    assert normalize_message("first\nsecond") == "first"


def test_failures_are_grouped_by_signature_largest_first():
    records = [
        cell(f"m{i}", "fx", "qat", "x86", "fail", stage="prepare", error_type="AssertionError",
             error_message=f"expected {i} got {i + 1}", verdict="failed") for i in range(3)
    ] + [cell("lone", "fx", "qat", "x86", "crash", stage="run", error_type="Crash", error_message="signal 11"),
         cell("ok", "fx", "qat", "x86", "pass")]
    groups = failure_groups(frame(records))
    assert [len(g.cells) for g in groups] == [3, 1]
    assert groups[0].signature == "prepare: AssertionError: expected N got N"
    assert list(groups[1].cells["case_id"]) == ["lone-fx-qat-x86"]
    text = render_markdown(ENV, records)
    assert "### 1. 3 × prepare: AssertionError: expected N got N" in text
    assert "`pytest 'cases/test_matrix.py::test_cell[m2-fx-qat-x86]'`" in text


def test_error_split_names_the_side_over_its_threshold():
    records = [
        cell("a", "fx", "ptq_static", "x86", "pass", metrics={"sqnr_db": 30.0, "sqnr_sim_db": 30.5,
                                                               "lsb_err_vs_sim": 1.0}),
        cell("b", "fx", "ptq_static", "x86", "inaccurate", metrics={"sqnr_db": 20.0, "sqnr_sim_db": 35.0,
                                                                     "lsb_err_vs_sim": 40.0}),
        cell("c", "fx", "ptq_static", "x86", "inaccurate", metrics={"sqnr_db": 9.0, "sqnr_sim_db": 9.5,
                                                                     "lsb_err_vs_sim": 0.5}),
        cell("d", "fx", "ptq_static", "x86", "not_quantized", metrics={"sqnr_db": 300.0, "sqnr_sim_db": 300.0}),
    ]
    limits = {"min_sqnr_db": 15.0, "max_lsb_err_vs_sim": 8.0}
    table = error_split(frame(records), lambda row: limits).set_index("case_id")
    assert list(table.index) == ["a-fx-ptq_static-x86", "b-fx-ptq_static-x86", "c-fx-ptq_static-x86"]
    assert list(table["over"]) == ["", "backend", "recipe"]
    text = render_markdown(ENV, records)
    rows = [" ".join(line.split()) for line in text.splitlines()]
    assert "| b-fx-ptq_static-x86 | 🟡 inaccurate | 20.0 | 35.0 | 40.00 | backend |" in rows


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
    assert (run / "report.html").read_text().startswith("<!doctype html>")
    assert write_report(run, tmp_path / "out").exists()


def test_report_formats(tmp_path, capsys):
    run = write_run(tmp_path, [json.dumps(r) + "\n" for r in RECORDS])
    out = tmp_path / "out"
    assert main(["report", str(run), "--format", "csv,json", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.csv", "report.json"]
    assert "mlp-fx-ptq_static-fbgemm" in (out / "report.csv").read_text()
    assert json.loads((out / "report.json").read_text())["environment"]["label"] == "unit"
    with pytest.raises(SystemExit):
        main(["report", str(run), "--format", "pdf"])
    assert "unknown format 'pdf'" in capsys.readouterr().err


def test_truncated_line_is_named_and_nothing_is_overwritten(tmp_path, capsys):
    lines = [json.dumps(r) + "\n" for r in RECORDS]
    lines[2] = lines[2][:40] + "\n"
    run = write_run(tmp_path, lines)
    (run / "report.md").write_text("previous report")
    (run / "report.html").write_text("previous page")
    with pytest.raises(RunError, match=r"cells-main.jsonl:3: not a JSON record"):
        read_records(run)
    assert main(["report", str(run)]) == 2
    assert "cells-main.jsonl:3" in capsys.readouterr().err
    assert (run / "report.md").read_text() == "previous report"
    assert (run / "report.html").read_text() == "previous page"


def test_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
