"""The HTML report in headless Chromium: tables render, a filter narrows the rows, a click shows a record.

Needs Debian's chromium and chromium-driver (``apt-get install chromium chromium-driver``) and selenium (the
``dev`` extra); skipped with the reason when either is missing. No browser is downloaded.
"""

from __future__ import annotations

import json
import shutil

import pytest

from matrix.cell import stable_seed
from matrix.reporting import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1366,800")
OUTCOMES = ("pass", "pass", "pass", "pass", "inaccurate", "not_quantized", "fail", "crash", "timeout",
            "unavailable", "error")

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="no Chromium here: apt-get install chromium chromium-driver")


def record(model: str, mode: str, scheme: str, backend: str) -> dict:
    case_id = f"{model}-{mode}-{scheme}-{backend}"
    status = OUTCOMES[stable_seed(case_id) % len(OUTCOMES)]
    failed = status in ("fail", "crash", "timeout", "error")
    sqnr = 10 + stable_seed(case_id + "sqnr") % 300 / 10
    return {
        "case_id": case_id, "model": model, "kind": "operator" if model.startswith("op_") else "model",
        "mode": mode, "scheme": scheme, "qspec": "default", "backend": backend, "status": status,
        "stage": "convert" if failed else None, "error_type": "RuntimeError" if failed else None,
        "error_message": f"no kernel for {model}" if failed else None,
        "reason": "no package" if status == "unavailable" else None,
        "metrics": {} if failed else {"sqnr_db": sqnr, "sqnr_sim_db": sqnr + 1, "lsb_err_vs_sim": 0.5},
        "quantized_ops": 0 if failed or status == "not_quantized" else 2, "float_ops": 0,
        "timings": {"prepare": 0.01, "convert": 0.2, "run": 0.05}, "verdict": "worse" if failed else "as_expected",
        "expected": {"status": "pass"}, "documented": None,
        "nodeid": f"cases/test_matrix.py::test_cell[{case_id}]",
    }


def records() -> list[dict]:
    """About a thousand cells, like a full run with operators."""
    models = [f"model_{i:02d}" for i in range(20)] + [f"op_{i:02d}" for i in range(20)]
    cells = [record(m, mode, scheme, backend) for m in models for mode in ("eager", "fx")
             for scheme in ("ptq_static", "ptq_dynamic", "qat") for backend in ("fbgemm", "x86", "qnnpack", "onednn")]
    cells += [record(m, "pt2e", scheme, "inductor") for m in models for scheme in ("ptq_static", "ptq_dynamic", "qat")]
    for cell in cells:
        if cell["model"] == "model_01":
            cell["divergence"] = {
                "metric": "lsb_err_vs_sim", "unit": "steps", "against": "simulation", "first": "act2",
                "value": 11.0, "limit": 8.0, "worst": "act2", "worst_value": 11.0, "compared": "the deployed model",
                "layers": [["dw", 2.0], ["act2", 11.0], ["pw", 9.0]],
                "summary": "first leaves its simulation at act2 (11.0 steps)",
            }
    return cells


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def visible(driver, selector: str) -> int:
    return driver.execute_script(
        f"return Array.from(document.querySelectorAll('{selector}')).filter(e => e.offsetParent !== null).length")


def test_report_renders_filters_and_shows_a_record(tmp_path, browser):
    from selenium.webdriver.support.ui import Select, WebDriverWait

    cells = records()
    run = tmp_path / "run"
    run.mkdir()
    (run / "cells-gw0.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cells))
    (run / "env.json").write_text(json.dumps({"label": "browser", "date": "2026-11-27T00:00:00+00:00"}))
    write_report(run)
    browser.get((run / "report.html").as_uri())
    WebDriverWait(browser, 60).until(lambda d: d.execute_script("return document.body.dataset.ready") == "yes")

    assert visible(browser, "#cell-table tbody tr") == 0, "the cell table's rows wait until it is near"
    browser.execute_script("document.getElementById('cells').scrollIntoView()")
    WebDriverWait(browser, 10).until(lambda d: visible(d, "#cell-table tbody tr") == len(cells))
    # A filter chosen before the table was reached brings its rows too.
    browser.get((run / "report.html").as_uri())
    WebDriverWait(browser, 60).until(lambda d: d.execute_script("return document.body.dataset.ready") == "yes")
    Select(browser.find_element("css selector", 'select[data-axis="model"]')).select_by_value("model_03")
    assert visible(browser, "#cell-table tbody tr") == sum(c["model"] == "model_03" for c in cells)
    Select(browser.find_element("css selector", 'select[data-axis="model"]')).select_by_value("")
    assert visible(browser, "table.support tbody tr") == 9, "mode × scheme rows"
    assert visible(browser, "#per-model tbody tr") == 40 * 9
    before = browser.execute_script("return document.querySelector('td.tally').textContent")

    Select(browser.find_element("css selector", 'select[data-axis="model"]')).select_by_value("model_03")
    expected = sum(c["model"] == "model_03" for c in cells)
    assert visible(browser, "#cell-table tbody tr") == expected
    assert visible(browser, "#per-model tbody tr") == 9
    assert browser.find_element("id", "shown").text == f"{expected} of {len(cells)} cells shown"
    after = browser.execute_script("return document.querySelector('td.tally').textContent")
    assert after != before, "mode support counts only the cells the filter lets through"

    browser.execute_script("document.querySelector('#cell-table tbody tr:not([hidden])').click()")
    panel = browser.find_element("id", "record")
    WebDriverWait(browser, 10).until(lambda d: panel.is_displayed())  # the records decompress first
    assert "model_03-" in panel.find_element("tag name", "h2").text
    assert "Timings" in panel.text and "pytest 'cases/test_matrix.py::test_cell[model_03-" in panel.text

    # A cell localized against its simulation: the panel names the layer and plots the series in steps.
    browser.execute_script("document.getElementById('record').hidden = true")
    Select(browser.find_element("css selector", 'select[data-axis="model"]')).select_by_value("model_01")
    browser.execute_script("document.querySelector('#cell-table tbody tr:not([hidden])').click()")
    panel = browser.find_element("id", "record")
    WebDriverWait(browser, 10).until(lambda d: panel.is_displayed() and "model_01-" in panel.text)
    assert "first leaves its simulation at act2 (11.0 steps)" in panel.text
    curve = panel.find_element("css selector", "svg.sqnr-curve")
    assert len(curve.find_elements("css selector", "circle")) == 3
    assert len(curve.find_elements("css selector", "circle.first")) == 1
    assert "steps" in curve.text

    screenshot = tmp_path / "report.png"
    browser.execute_script("document.getElementById('record').hidden = true; window.scrollTo(0, 0)")
    Select(browser.find_element("css selector", 'select[data-axis="model"]')).select_by_value("")
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {screenshot}")

