"""The HTML report from fixed records, without a browser: sections, embedded records, self-containment."""

from __future__ import annotations

import base64
import gzip
import json
import re

from cells import cell as shared_cell

from matrix.reporting.html import SYMBOLS as HTML_SYMBOLS
from matrix.reporting.html import rate_colour, render_html

ENV = {"label": "unit", "date": "2026-11-27T00:00:00+00:00", "versions": {"torch": "2.13.0"},
       "quantized_engines": ["fbgemm"], "command": "pytest -n 2", "suite_commit": "abc123"}


def cell(*args, **extra) -> dict:
    return shared_cell(*args, **{"timings": {"convert": 0.25, "run": 0.5}, **extra})


RECORDS = [
    cell("mlp", "fx", "ptq_static", "x86", "pass", quantized_ops=3,
         metrics={"sqnr_db": 31.0, "sqnr_sim_db": 31.5, "lsb_err_vs_sim": 1.0}),
    cell("conv", "fx", "ptq_static", "x86", "fail", stage="convert", error_type="RuntimeError",
         error_message="bad </script><b>tag</b> 0x7f3e", verdict="worse"),
    cell("op_linear", "fx", "ptq_static", "x86", "inaccurate", kind="operator", quantized_ops=1,
         metrics={"sqnr_db": 12.0, "sqnr_sim_db": 30.0, "lsb_err_vs_sim": 20.0},
         limits={"min_sqnr_db": 15.0, "max_lsb_err_vs_sim": 8.0, "max_accuracy_drop": 0.02},
         documented={"status": "pass", "claim": "linear: static Y", "source": "https://docs.example/q#ops"}),
    cell("mlp", "pt2e", "ptq_static", "inductor", "unavailable", reason="no torchao", verdict="unavailable"),
]


def embedded(page: str, element_id: str, parse_constant=None):
    """An element's embedded JSON; the records' compressed as the page's script reads them."""
    if element_id == "records":
        found = re.search(r'<script type="application/octet-stream" id="records" data-encoding="gzip\+base64">'
                          r"(.*?)</script>", page, re.S)
        return json.loads(gzip.decompress(base64.b64decode(found[1])), parse_constant=parse_constant)
    found = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', page, re.S)
    return json.loads(found[1], parse_constant=parse_constant)


def test_every_section_is_there():
    page = render_html(ENV, RECORDS)
    for anchor in ("summary", "mode-support", "per-model", "documented", "failures", "error-split",
                   "expectations", "cells", "legend"):
        assert f'id="{anchor}"' in page
    assert "<h1>qmatrix report: unit</h1>" in page
    assert "<b>33%</b> of the 3 applicable cells pass" in page
    assert "unavailable 1 and error\n0 are not counted" in page
    assert "pytest -n 2" in page and "abc123" in page


def test_records_are_embedded_whole_and_a_closing_tag_in_an_error_cannot_end_them():
    page = render_html(ENV, RECORDS)
    data = embedded(page, "records")
    assert [r["case_id"] for r in data] == sorted(r["case_id"] for r in RECORDS)
    assert data[0]["error_message"] == "bad </script><b>tag</b> 0x7f3e"
    assert page.count("</script>") == 4, "the index, the records, config, and the script itself"
    index = embedded(page, "index")
    assert [r["case_id"] for r in index] == [r["case_id"] for r in data]
    assert index[0]["error_message"] == data[0]["error_message"] and "timings" not in index[0]
    assert embedded(page, "config")["symbols"] == HTML_SYMBOLS


def test_records_with_nan_metrics_stay_valid_json_for_the_browser():
    zero_output = cell("op_relu", "eager", "ptq_static", "x86", "inaccurate", quantized_ops=1,
                       metrics={"sqnr_db": -300.0, "cosine": float("nan"), "lsb_err_vs_sim": float("inf")})
    page = render_html(ENV, [*RECORDS, zero_output])
    def refuse(constant: str):
        raise AssertionError(f"{constant} in the embedded JSON: JSON.parse would reject the page's data")

    data = embedded(page, "records", parse_constant=refuse)
    embedded(page, "index", parse_constant=refuse)
    metrics = next(r for r in data if r["model"] == "op_relu")["metrics"]
    assert metrics["cosine"] == "NaN" and metrics["lsb_err_vs_sim"] == "Infinity"


def test_the_page_needs_no_network():
    page = render_html(ENV, RECORDS)
    assert not re.search(r"<(script|img|iframe)[^>]+src=|<link |@import|url\(", page)
    assert 'href="https://docs.example/q#ops"' in page, "sources stay links a reader may follow"


def test_rows_point_at_their_records():
    page = render_html(ENV, RECORDS)
    positions = {r["case_id"]: i for i, r in enumerate(embedded(page, "records"))}
    conv = positions["conv-fx-ptq_static-x86"]
    assert f'<tr data-i="{conv}"><td class="id">conv-fx-ptq_static-x86</td>' in page, "the failure group's row"
    assert '<code class="cmd">pytest &#x27;cases/test_matrix.py::test_cell[conv-fx-ptq_static-x86]&#x27;</code>' in page
    assert re.search(r'<td class="tally" data-cells="(\d+ ?){3}" data-mode="fx" data-scheme="ptq_static" '
                     r'data-backend="x86"', page)


def test_mode_support_count_is_coloured_by_its_pass_rate():
    page = render_html(ENV, RECORDS)
    assert "<b>1/3</b>" in page
    assert rate_colour(0, 1) == "hsl(0, 65%, 82%)" and rate_colour(1, 1) == "hsl(120, 65%, 82%)"


def test_error_split_marks_the_side_over_its_threshold():
    page = render_html(ENV, RECORDS)
    split = page[page.index('id="error-split"'):page.index('id="expectations"')]
    assert 'class="num over" data-v="20.0">20.00' in split
    assert "op_linear-fx-ptq_static-x86" in split and "conv-fx-ptq_static-x86" not in split


def test_operator_table_is_included_when_the_report_has_one():
    page = render_html(ENV, RECORDS)
    assert 'id="operator-support"' in page
    support = page[page.index('id="operator-support"'):page.index('id="per-model"')]
    assert f'<td class="count" style="background:{rate_colour(0, 1)}"><b>0/1</b><span class="others">' \
           f'<span title="1 inaccurate">{HTML_SYMBOLS["inaccurate"]}1</span></span></td>' in support
    assert f'<td class="symbols s-inaccurate" title="inaccurate"><span class="chip s-inaccurate">' \
           f'{HTML_SYMBOLS["inaccurate"]}</span></td>' in support


def test_a_run_without_records_of_some_kind_still_renders():
    page = render_html({}, [cell("mlp", "fx", "ptq_static", "x86", "pass")])
    assert "<i>none</i>" in page and "qmatrix report: run" in page
