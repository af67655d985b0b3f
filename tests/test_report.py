"""Rendering from fixed records: no pytest hooks, no backend."""

from __future__ import annotations

import json
import re

import pytest
from cells import cell

from matrix.cli import main
from matrix.records import RunError, TornRecord, read_records
from matrix.reporting import tables, write_report
from matrix.reporting.html import render_html
from matrix.reporting.markdown import cell as shown
from matrix.reporting.markdown import render_markdown
from matrix.reporting.tables import normalize_message


def run_of(records):
    return tables.load(ENV, records)

RECORDS = [
    cell("mlp", "fx", "ptq_static", "fbgemm", "pass", quantized_ops=3,
         metrics={"sqnr_db": 30.1, "sqnr_sim_db": 30.1, "lsb_err_vs_sim": 0.0}),
    cell("conv", "fx", "ptq_static", "fbgemm", "fail", stage="convert", error_type="RuntimeError",
         error_message="no kernel | here", verdict="worse"),
    cell("conv", "fx", "ptq_dynamic", "fbgemm", "not_quantized", reason="no quantized compute op",
         metrics={"sqnr_db": 300.0}, verdict="known",
         expected={"status": "not_quantized", "reason": "conv has no dynamic kernel", "source": "docs#ops"},
         documented={"status": "not_quantized", "claim": "conv: dynamic N", "source": "docs#ops"}),
    cell("mlp", "fx", "ptq_dynamic", "fbgemm", "fail", stage="run", error_type="E", error_message="m",
         verdict="worse", documented={"status": "pass", "claim": "linear: dynamic Y", "source": "docs#ops"}),
    cell("mlp", "pt2e", "ptq_static", "inductor", "unavailable", reason="no torchao", verdict="unavailable"),
]
ENV = {"label": "unit", "date": "2026-11-27T00:00:00+00:00", "versions": {"torch": "2.13.0"},
       "quantized_engines": ["fbgemm"], "command": "pytest", "stale_expectations": [
           {"entry": "[[expect]] #3 ['gone-*']", "status": "fail"}]}


def test_mode_support_counts_pass_over_applicable():
    table = tables.mode_support(run_of(RECORDS)).map(shown).set_index(["mode", "scheme"])
    assert table.loc[("fx", "ptq_static"), "fbgemm"] == "🟨 1/2 (❌1)"
    assert table.loc[("fx", "ptq_dynamic"), "fbgemm"] == "🟥 0/2 (⬜1 ❌1)"
    assert table.loc[("pt2e", "ptq_static"), "inductor"] == "➖1"
    assert table.loc[("fx", "ptq_static"), "inductor"] == "·"


def test_documented_versus_observed_lists_only_disagreements():
    table = tables.documented_vs_observed(run_of(RECORDS))
    assert list(table["cell"]) == ["mlp-fx-ptq_dynamic-fbgemm"]
    assert "linear: dynamic Y" in table.iloc[0]["docs say"]


def test_markdown_has_every_section_and_reproduce_commands():
    text = render_markdown(ENV, RECORDS)
    for heading in ("# qmatrix report: unit", "## Mode support", "## Model support", "## Documented versus observed",
                    "## Failures by signature", "## Surprises", "## Known outcomes",
                    "## Stale expectations", "## Legend", "## Per cell"):
        assert heading in text
    for per_cell in ("## Per model", "## Error split", "## Details"):
        assert per_cell not in text, "per-cell tables belong to report.html and report.csv"
    assert "Pass rate over the 4 applicable cells: **25%**" in text
    assert "`pytest 'cases/test_matrix.py::test_cell[conv-fx-ptq_static-fbgemm]'`" in text
    assert "no kernel \\| here" in text, "a pipe in an error must not break the table"
    assert "conv has no dynamic kernel" in text
    assert "docs#ops" in text
    assert "[[expect]] #3 ['gone-*'] (expects fail) matches no cell" in text


def test_missing_text_is_not_printed_as_nan():
    text = render_markdown(ENV, RECORDS)
    assert "nan" not in text.replace("nanoseconds", "")
    assert tables.frame(RECORDS).loc[0, "error_type"] is None


def test_messages_that_differ_in_numbers_or_addresses_share_a_signature():
    assert normalize_message("bad shape (3, 4) at 0x7f00ab") == normalize_message("bad shape (8, 16) at 0x1234")
    assert normalize_message("conv2d: got 3 channels") == "conv2d: got N channels", "names keep their digits"
    assert normalize_message("first\nsecond") == "first"


def test_failures_are_grouped_by_signature_largest_first():
    records = [
        cell(f"m{i}", "fx", "qat", "x86", "fail", stage="prepare", error_type="AssertionError",
             error_message=f"expected {i} got {i + 1}", verdict="worse") for i in range(3)
    ] + [cell("lone", "fx", "qat", "x86", "crash", stage="run", error_type="Crash", error_message="signal 11"),
         cell("ok", "fx", "qat", "x86", "pass")]
    groups = tables.failure_groups(run_of(records))
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
    judged = [{**r, "limits": {"min_sqnr_db": 15.0, "max_lsb_err_vs_sim": 8.0}} for r in records]
    assert set(tables.error_split(run_of(records))["over"]) == {""}, "a record without its limits names no side"
    records = judged
    table = tables.error_split(run_of(records)).set_index("case_id")
    assert list(table.index) == ["a-fx-ptq_static-x86", "b-fx-ptq_static-x86", "c-fx-ptq_static-x86"]
    assert list(table["over"]) == ["", "backend", "recipe"]
    assert "## Error split" not in render_markdown(ENV, records), "per cell: report.html's, not report.md's"
    page = render_html(ENV, records)
    start = page.index('<section id="error-split"')
    assert "b-fx-ptq_static-x86" in page[start:page.index("</section>", start)]


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


def test_a_torn_last_line_is_dropped_with_a_warning_and_the_rest_renders(tmp_path, capsys):
    lines = [json.dumps(r) + "\n" for r in RECORDS]
    lines[-1] = lines[-1][:40]
    run = write_run(tmp_path, lines)
    with pytest.warns(TornRecord, match=r"cells-main.jsonl:5: torn last line dropped"):
        assert len(read_records(run)) == len(RECORDS) - 1
    assert main(["report", str(run)]) == 0
    assert "qmatrix: warning: " in capsys.readouterr().err
    assert "mlp-fx-ptq_static-fbgemm" in (run / "report.html").read_text()  # every cell: the page, not report.md
    for command in (["diff", str(run), str(run)], ["merge", str(run), "-o", str(tmp_path / "merged")]):
        assert main(command) == 0, command


def test_a_malformed_line_before_the_last_is_named_and_nothing_is_overwritten(tmp_path, capsys):
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


MARKUP = "<img src=x onerror=alert(1)></pre><script>alert(2)</script>"


def test_markup_from_a_record_reaches_no_report_raw(tmp_path):
    """An error, a reason and a model's name that carry markup: report.md and report.html show them as text."""
    model = "evil<b>model</b>"
    records = [
        cell(model, "fx", "ptq_static", "fbgemm", "fail", stage="run", error_type="RuntimeError",
             error_message=MARKUP, verdict="worse"),
        cell(model, "fx", "ptq_dynamic", "fbgemm", "not_quantized", reason=MARKUP, verdict="known",
             metrics={"sqnr_db": 300.0}, kind="operator",
             expected={"status": "not_quantized", "reason": MARKUP, "source": MARKUP},
             documented={"status": "pass", "claim": MARKUP, "source": "docs"}),
        cell("mlp", "fx", "ptq_static", "fbgemm", "inaccurate", reason=MARKUP, quantized_ops=2,
             metrics={"sqnr_db": 3.0, "sqnr_sim_db": 30.0, "lsb_err_vs_sim": 1.0}),
    ]
    env = {**ENV, "model_source_errors": [MARKUP], "command": MARKUP,
           "stale_expectations": [{"entry": MARKUP, "status": "fail"}]}
    run = tmp_path / "run"
    run.mkdir()
    (run / "cells-main.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "env.json").write_text(json.dumps(env))
    write_report(run)
    for name in ("report.md", "report.html"):
        text = (run / name).read_text()
        if name == "report.md":  # a code span shows its text as written: markup inside one is text
            text = re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", text)
        else:  # the page's own script follows the index and the records, which carry no "<" at all
            text, data = text.split('<script type="application/json" id="index">', 1)
            index, rest = data.split("</script>", 1)
            assert "<" not in index
            assert "<" not in rest.split('data-encoding="gzip+base64">', 1)[1].split("</script>", 1)[0]
        for tag in ("<img", "<script>alert", "</pre><", "<b>model"):
            assert tag not in text, f"{tag!r} raw in {name}"
    markdown = (run / "report.md").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;" not in markdown, "escaped once, so it reads as written"
    assert "&lt;img src=x onerror=alert(1)>&lt;/pre>&lt;script>alert(2)&lt;/script>" in markdown


def test_records_of_older_runs_keep_their_verdicts_in_todays_words(tmp_path):
    older = [{**r, "verdict": {"worse": "failed", "known": "xfailed", "unavailable": "skipped"}.get(
        r["verdict"], "passed")} for r in RECORDS]
    run = write_run(tmp_path, [json.dumps(r) + "\n" for r in older])
    assert [r["verdict"] for r in read_records(run)] == [r["verdict"] for r in RECORDS]


def test_conversion_paths_show_the_transplant_beside_the_stand_in():
    """The fx mode's cells on a backend it reaches only through the transplant are rows of the
    conversion-paths table, next to the conversion mode's stand-in and x86 transplant."""
    records = [
        cell("mlp", "conversion", "ptq_static", "litert", "fail", qspec=path, stage="load",
             case_id=f"mlp-conversion-ptq_static-litert-{path}")
        for path in ("fx_ptq_to_pt2e_transplant", "fx_ptq_to_pt2e")
    ] + [cell("mlp", "fx", "ptq_static", "litert", "pass", quantized_ops=3, metrics={"sqnr_db": 33.1}),
         cell("mlp", "fx", "ptq_static", "fbgemm", "pass", quantized_ops=3, metrics={"sqnr_db": 30.1})]
    table = tables.conversion_paths(run_of(records))
    assert list(table["path"]) == ["fx_ptq_to_pt2e", "fx_ptq_to_pt2e_transplant",
                                   "fx_ptq_to_pt2e_transplant (the backend's BackendConfig)"]
    assert set(table["backend"]) == {"litert"}  # fx on an engine is not a conversion
    row = table.set_index("path").loc["fx_ptq_to_pt2e_transplant (the backend's BackendConfig)"]
    assert shown(row["mlp"]) == "✅ 33.1"


def test_guide_examples_are_mode_rows_and_scheme_columns_per_backend():
    records = [cell("mlp", "eager", "ptq_static", "fbgemm", "pass"), cell("mlp", "eager", "qat", "fbgemm", "fail"),
               cell("mlp", "pt2e", "ptq_dynamic", "inductor", "pass"),
               cell("op_relu", "eager", "ptq_static", "fbgemm", "fail", kind="operator")]
    table = tables.guide_examples(run_of(records)).map(shown).set_index(["backend", "mode"])
    assert list(table.columns) == ["ptq_static", "ptq_dynamic", "qat"]
    assert table.loc[("fbgemm", "eager"), "ptq_static"] == "🟩 1/1"  # the operator cell is not a whole model
    assert table.loc[("fbgemm", "eager"), "ptq_dynamic"] == "·"
    assert table.loc[("inductor", "pt2e"), "ptq_dynamic"] == "🟩 1/1"
    assert ("inductor", "eager") not in table.index


def test_quantization_classes_name_the_class_each_knob_chooses():
    records = [cell("mlp", "fx", "ptq_static", "x86", "pass", qspec="obs_histogram",
                    case_id="mlp-fx-ptq_static-x86-obs_histogram"),
               cell("mlp", "fx", "qat", "x86", "fail", qspec="fq_learnable", case_id="mlp-fx-qat-x86-fq_learnable"),
               cell("mlp", "fx", "ptq_static", "x86", "pass")]
    table = tables.quantization_classes(run_of(records)).map(shown).set_index(["role", "class", "mode"])
    assert table.loc[("activation observer", "HistogramObserver", "fx"), "x86"] == "🟩 1/1"
    assert table.loc[("fake-quant", "_LearnableFakeQuantize", "fx"), "x86"] == "🟥 0/1 (❌1)"
    assert len(table) == 2  # the default cell chooses no class


def test_known_outcomes_show_a_few_cells_in_markdown_and_all_in_html():
    expected = {"status": "not_quantized", "reason": "conv has no dynamic kernel", "source": "docs#ops"}
    records = [cell(f"conv{i}", "fx", "ptq_dynamic", "fbgemm", "not_quantized", reason="no quantized compute op",
                    verdict="known", expected=expected) for i in range(7)]
    text = render_markdown(ENV, records)
    assert "conv0-fx-ptq_dynamic-fbgemm, conv1-fx-ptq_dynamic-fbgemm" in text
    known = text.split("## Known outcomes")[1].split("##")[0]
    assert "and 2 more" in known and "conv6-fx-ptq_dynamic-fbgemm" not in known
    assert "conv5-fx-ptq_dynamic-fbgemm, conv6-fx-ptq_dynamic-fbgemm" in render_html(ENV, records)


def test_a_model_cell_is_shown_beside_the_operator_cells_of_its_layers_that_did_not_pass():
    conv = {"count": 3, "names": ["conv1", "conv2", "conv3"]}
    records = [
        cell("net", "eager", "ptq_dynamic", "fbgemm", "not_quantized", verdict="worse",
             layers={"Conv2d": conv, "Linear": {"count": 1, "names": ["fc"]}, "GRU": {"count": 1, "names": ["rnn"]}},
             operator_cells={"Conv2d": "op_conv2d-eager-ptq_dynamic-fbgemm",
                             "Linear": "op_linear-eager-ptq_dynamic-fbgemm", "GRU": "op_gru-eager-ptq_dynamic-fbgemm"}),
        cell("op_conv2d", "eager", "ptq_dynamic", "fbgemm", "not_quantized", kind="operator", verdict="known",
             expected={"status": "not_quantized", "reason": "no dynamic conv", "source": "docs"}),
        cell("op_linear", "eager", "ptq_dynamic", "fbgemm", "pass", kind="operator", quantized_ops=1),
        cell("fine", "eager", "ptq_dynamic", "fbgemm", "pass", quantized_ops=2, layers={"Conv2d": conv},
             operator_cells={"Conv2d": "op_conv2d-eager-ptq_dynamic-fbgemm"}),
    ]
    run = run_of(records)
    evidence = tables.operator_evidence(run)
    # The operator that did not pass is named with its layers and reason; the one that passed is not
    # evidence; the one the run did not hold is named as not run; a passing model cell needs none.
    assert evidence == {"net-eager-ptq_dynamic-fbgemm": (
        "3 Conv2d (conv1, conv2, conv3): op_conv2d-eager-ptq_dynamic-fbgemm: not_quantized (no dynamic conv); "
        "operator evidence not run: op_gru-eager-ptq_dynamic-fbgemm")}
    assert tables.explained_by_operators(run) == 1
    shown_row = tables.surprises(run).set_index("cell").loc["net-eager-ptq_dynamic-fbgemm"]
    assert shown_row["operator evidence"] == evidence["net-eager-ptq_dynamic-fbgemm"]
    markdown = render_markdown(ENV, records)
    assert "Surprising model cells with operator evidence: 1." in markdown
    assert re.search(r"3 Conv2d \(conv1, conv2, conv3\): op\\?_conv2d-eager-ptq\\?_dynamic-fbgemm: "
                     r"not\\?_quantized", markdown)
    assert "operator evidence: 1." in render_html(ENV, records)


def test_a_cell_shows_its_backends_float_parity_and_a_failing_one_says_the_export_fails_too():
    records = [
        cell("conv", "export", "float", "litert", "fail", stage="export", error_type="RuntimeError",
             error_message="Lowering not found", verdict="known"),
        cell("conv", "pt2e", "ptq_static", "litert", "fail", stage="export", error_type="RuntimeError",
             error_message="Lowering not found", verdict="known"),
        cell("mlp", "export", "float", "litert", "not_quantized", metrics={"sqnr_db": 140.0}, fidelity="faithful"),
        cell("mlp", "export", "float", "onnxruntime", "not_quantized", metrics={"sqnr_db": 40.0},
             fidelity="departs"),
        cell("mlp", "pt2e", "ptq_static", "onnxruntime", "inaccurate", metrics={"sqnr_db": 12.0}),
        cell("mlp", "pt2e", "ptq_static", "litert", "fail", stage="run", error_type="E", error_message="m",
             verdict="worse"),
        cell("mlp", "fx", "ptq_static", "fbgemm", "pass", quantized_ops=3),
    ]
    run = run_of(records)
    parity = dict(zip(run.df["case_id"], run.df["float_parity"]))
    assert parity["conv-pt2e-ptq_static-litert"] == "fail" and parity["mlp-pt2e-ptq_static-litert"] == "faithful"
    assert parity["mlp-pt2e-ptq_static-onnxruntime"] == "departs"
    assert parity["conv-export-float-litert"] is None, "a float cell is its own parity, not a column of it"
    assert parity["mlp-fx-ptq_static-fbgemm"] is None, "PyTorch's engines run the reference itself"
    shown_rows = tables.details(run).set_index("cell")["error / reason"]
    assert "float parity on this backend: fail" in shown_rows["conv-pt2e-ptq_static-litert"]
    assert "float parity on this backend: departs" in shown_rows["mlp-pt2e-ptq_static-onnxruntime"]
    assert "float parity" not in shown_rows["mlp-pt2e-ptq_static-litert"]
    table = tables.float_parity_table(run).set_index(["mode", "kind"])
    assert table.loc[("export", "model"), "litert"] == "1/2 faithful (1 fail)"
    assert table.loc[("export", "model"), "onnxruntime"] == "0/1 faithful (1 departs)"
    assert "float" not in set(tables.mode_support(run)["scheme"]), "float cells are the float parity table's"
    assert "float parity" not in tables.surprises(run), "no surprise has a failing float parity: no column"
    page = render_html(ENV, records)
    assert "float parity on this backend: fail" in page and 'id="float-parity"' in page
    paths = tables.conversion_paths(run)
    assert "pytorch_float (the backend's own export, no quantizer)" in set(paths["path"])
