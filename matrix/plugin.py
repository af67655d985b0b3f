"""The pytest plugin: options, the crossing of the axes, records, and the report at the end.

Every pytest hook of the suite lives here. Records travel on the test item's
stash and are written by the process that ran the cell, one file per worker.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from matrix.backends import BACKENDS
from matrix.cases import Case, SelectionError, expand, in_shard, is_smoke, parse_selection, parse_shard
from matrix.expectations import Expectation, ExpectationError, Expectations, verdict
from matrix.modes import MODES
from matrix.qspecs import QSPECS
from matrix.records import (
    SUITE,
    append_record,
    environment,
    point_latest,
    read_environment,
    write_json_atomic,
)
from matrix.runner import run_cell
from matrix.schemes import SCHEMES
from matrix.thresholds import ThresholdError, Thresholds
from models import MODELS
from models.sources import ModelSourceError, load_entry_points, load_file

AXES = {"models": MODELS, "modes": MODES, "schemes": SCHEMES, "qspecs": QSPECS, "backends": BACKENDS}
RECORD = pytest.StashKey[dict]()
WORKER_RUN = "qmatrix_run"


class ExpectedFinding(Exception):
    """Raised by a cell whose observed status is the expected non-pass one (an xfail)."""


@dataclass
class Matrix:
    reports: Path
    run: Path
    label: str | None
    select: dict
    expectations: Expectations
    thresholds: Thresholds
    argv: list[str]
    source_errors: list[str] = field(default_factory=list)
    all_cases: list[Case] = field(default_factory=list)
    selected: list[Case] = field(default_factory=list)


MATRIX = pytest.StashKey[Matrix]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("qmatrix", "quantization support matrix")
    for axis, registry in AXES.items():
        group.addoption(f"--{axis}", default=None, metavar="A,B",
                        help=f"only these {axis} (comma-separated) of: {', '.join(registry)}")
    group.addoption("--models-from", action="append", default=[], metavar="PATH",
                    help="a Python file that registers models with models.register (repeatable)")
    group.addoption("--shard", default=None, metavar="I/N",
                    help="run only shard I of N: a stable 1/N of the selected cells")
    group.addoption("--reports-dir", default=str(SUITE / "reports"),
                    help="where run folders are written (default: reports/ of the checkout)")
    group.addoption("--run-label", default=os.environ.get("QMATRIX_RUN_LABEL"),
                    help="a label for the run folder and report (default: $QMATRIX_RUN_LABEL)")


def pytest_configure(config: pytest.Config) -> None:
    for axis, registry in AXES.items():
        for name in registry:
            config.addinivalue_line("markers", f"{axis[:-1]}_{name}: cells whose {axis[:-1]} is {name}")
    for kind in ("model", "operator"):
        config.addinivalue_line("markers", f"kind_{kind}: cells of a {kind}")
    source_errors = _load_model_sources(config.getoption("models_from"))
    try:
        select = {axis: parse_selection(axis, config.getoption(axis), registry)
                  for axis, registry in AXES.items()}
        shard = parse_shard(config.getoption("shard"))
        expectations, thresholds = Expectations.load(), Thresholds.load()
    except (SelectionError, ExpectationError, ThresholdError) as exc:
        raise pytest.UsageError("\n".join([str(exc), *source_errors])) from None
    reports = Path(config.getoption("reports_dir")).resolve()
    label = config.getoption("run_label")
    worker_input = getattr(config, "workerinput", None)
    if worker_input is not None:
        run = Path(worker_input[WORKER_RUN])
    else:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run = reports / (f"{stamp}-{label}" if label else stamp)
    matrix = Matrix(reports, run, label, select, expectations, thresholds, list(config.invocation_params.args))
    matrix.source_errors = source_errors
    matrix.all_cases = expand(MODELS, MODES, SCHEMES, BACKENDS, QSPECS)
    selected = expand(MODELS, MODES, SCHEMES, BACKENDS, QSPECS, select=select)
    matrix.selected = [case for case in selected if in_shard(case, shard)]
    config.stash[MATRIX] = matrix


def _load_model_sources(paths: list[str]) -> list[str]:
    """Register models from entry points and files; return one message per source that failed.

    A broken source is left out and named; the run goes on with every other model.
    """
    _, errors = load_entry_points()
    for path in paths:
        try:
            load_file(path)
        except ModelSourceError as exc:
            errors.append(str(exc))
    return [f"qmatrix: model source skipped: {error}" for error in errors]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    node.workerinput[WORKER_RUN] = str(node.config.stash[MATRIX].run)


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    for title, registry in (("modes", MODES), ("backends", BACKENDS)):
        ready = [n for n, item in registry.items() if not item.unavailable_reason()]
        missing = {n: item.unavailable_reason() for n, item in registry.items() if item.unavailable_reason()}
        lines.append(f"qmatrix {title}: {', '.join(ready) or 'none'}")
        lines += [f"  {name}: unavailable here ({why})" for name, why in missing.items()]
    matrix = config.stash[MATRIX]
    lines += matrix.source_errors
    lines.append(f"qmatrix cells: {len(matrix.selected)} selected of {len(matrix.all_cases)}; run folder {matrix.run}")
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    params = []
    for case in metafunc.config.stash[MATRIX].selected:
        marks = [getattr(pytest.mark, name) for name in case.markers()]
        if is_smoke(case):
            marks.append(pytest.mark.smoke)
        params.append(pytest.param(case, id=case.id, marks=marks))
    metafunc.parametrize("case", params)


def attempt(case: Case, request: pytest.FixtureRequest) -> None:
    """Run one cell, keep its record, and turn observed-versus-expected into a pytest outcome."""
    matrix = request.config.stash[MATRIX]
    record = run_cell(case, matrix.thresholds)
    expected = matrix.expectations.lookup(case.id)
    annotate(record, expected)
    record["nodeid"] = request.node.nodeid
    request.node.stash[RECORD] = record
    found = verdict(record, expected)
    if found.outcome == "unavailable":
        pytest.skip(f"unavailable: {found.message}")
    if found.outcome in ("broken", "worse"):
        pytest.fail(found.message, pytrace=False)
    if expected.status != "pass":
        request.applymarker(pytest.mark.xfail(reason=expected.reason, raises=ExpectedFinding, strict=False))
        if found.outcome == "as_expected":
            raise ExpectedFinding(found.message)


def annotate(record: dict, expected: Expectation) -> None:
    record["expected"] = expected.entry.as_dict() if expected.entry else {"status": "pass"}
    record["documented"] = (
        {"status": expected.claim.status, "claim": expected.claim.text, "source": expected.claim.source}
        if expected.claim else None
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    record = item.stash.get(RECORD, None)
    if record is not None and report.when == "call":
        outcome = report.outcome
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        record["verdict"] = outcome
        matrix = item.config.stash[MATRIX]
        _ensure_environment(matrix)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        append_record(matrix.run / f"cells-{worker}.jsonl", record)
    return report


def _ensure_environment(matrix: Matrix) -> None:
    path = matrix.run / "env.json"
    if not path.exists():
        matrix.run.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, environment(matrix.argv, matrix.label))


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if hasattr(config, "workerinput"):
        return
    matrix = config.stash[MATRIX]
    if not any(matrix.run.glob("cells*.jsonl")):
        return
    from matrix.report import write_report

    _ensure_environment(matrix)
    env = read_environment(matrix.run)
    env["model_source_errors"] = matrix.source_errors
    env["stale_expectations"] = [
        {"entry": e.label, "status": e.status} for e in matrix.expectations.stale(c.id for c in matrix.all_cases)
    ]
    write_json_atomic(matrix.run / "env.json", env)
    write_report(matrix.run)
    point_latest(matrix.reports, matrix.run)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    matrix = config.stash[MATRIX]
    for error in matrix.source_errors:
        terminalreporter.write_line(error, red=True)
    stale = matrix.expectations.stale(c.id for c in matrix.all_cases)
    for entry in stale:
        terminalreporter.write_line(f"qmatrix: stale expectation {entry.label}: matches no cell", yellow=True)
    report = matrix.run / "report.md"
    if report.exists():
        terminalreporter.write_line(f"qmatrix report: {report}")
