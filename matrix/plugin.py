"""The pytest plugin: options, the crossing of the axes, records, and the report at the end.

Every pytest hook of the suite lives here. Records travel on the test item's
stash and are written by the process that ran the cell, one file per worker.
"""

from __future__ import annotations

import datetime as dt
import faulthandler
import functools
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from matrix.backends import BACKENDS
from matrix.cases import (
    Case,
    SelectionError,
    costliest_first,
    expand,
    in_shard,
    is_smoke,
    parse_selection,
    parse_shard,
)
from matrix.expectations import PATH as EXPECTATIONS_PATH
from matrix.expectations import Expectation, ExpectationError, Expectations, Judged, fidelity_verdict, verdict
from matrix.modes import MODES
from matrix.payoff import DEFAULT_LATENCY, LATENCY_CHOICES
from matrix.qspecs import DEFAULT, QSPECS
from matrix.records import (
    CORE_PACKAGES,
    SUITE,
    append_record,
    environment,
    point_latest,
    read_environment,
    write_json_atomic,
)
from matrix.runner import new_record, run_cell
from matrix.schemes import SCHEMES
from matrix.thresholds import PATH as THRESHOLDS_PATH
from matrix.thresholds import ThresholdError, Thresholds
from matrix.vocabulary import KINDS, Stage, Status, Verdict
from models import MODELS, largest_weight, module_types
from models.sources import ModelSourceError, load_entry_points, load_file

AXES = {"models": MODELS, "modes": MODES, "schemes": SCHEMES, "qspecs": QSPECS, "backends": BACKENDS}
RECORD = pytest.StashKey[dict]()
WORKER_RUN = "qmatrix_run"
WORKER_THREADS = "qmatrix_threads"


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
    cell_timeout: float | None = None
    all_cases: list[Case] = field(default_factory=list)
    selected: list[Case] = field(default_factory=list)
    threads: int | None = None  # intra-op threads of each worker
    _stale: list | None = None

    def stale_expectations(self) -> list:
        """Expectation entries no cell of the whole matrix takes its expectation from, with why
        (computed once)."""
        if self._stale is None:
            self._stale = self.expectations.unused(cell_facts(case) for case in self.all_cases)
        return self._stale


MATRIX = pytest.StashKey[Matrix]()
FAULTS = pytest.StashKey[object]()


@functools.cache
def model_module_types(name: str) -> frozenset[str]:
    """The module types of a model of the matrix (built once per process, its weights left
    untrained), for the expectations that name module types."""
    try:
        return module_types(MODELS[name].made_of())
    except Exception:  # a model that does not build: its cells record it, as a broken case
        return frozenset()


@functools.cache
def model_largest_weight(name: str) -> int:
    """The largest weight of a model's compute layers, for the expectations with ``weights_under``."""
    try:
        return largest_weight(MODELS[name].made_of())
    except Exception:  # a model that does not build: its cells record it, as a broken case
        return 0


def cell_facts(case: Case) -> tuple[str, bool, Callable[[], frozenset[str]], Callable[[], int]]:
    """What expectations match a cell by: its id, whether docs claims apply, its model's module
    types and its largest compute weight."""
    return (case.id, claimable(case), functools.partial(model_module_types, case.model),
            functools.partial(model_largest_weight, case.model))


def expected_of(expectations: Expectations, case: Case) -> Expectation:
    """What is expected of a cell: its entry's outcome, or the default of its scheme."""
    found = expectations.lookup(*cell_facts(case))
    return found if SCHEMES[case.scheme].quantizes else found.of_float_cell()


def claimable(case: Case) -> bool:
    """Whether PyTorch's quantization page speaks of a cell: one of PyTorch's own engines, with
    their default qconfig (what its tables are about), so the docs claims of expectations.toml apply."""
    return case.qspec == DEFAULT and BACKENDS[case.backend].native


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("qmatrix", "quantization support matrix")
    for axis, registry in AXES.items():
        group.addoption(f"--{axis}", default=None, metavar="A,B",
                        help=f"only these {axis} (comma-separated) of: {', '.join(registry)}")
    group.addoption("--models-from", action="append", default=[], metavar="PATH",
                    help="a Python file that registers models with models.register (repeatable)")
    group.addoption("--shard", default=None, metavar="I/N",
                    help="run only shard I of N: a stable 1/N of the selected cells")
    group.addoption("--cell-timeout", default=None, type=float, metavar="SECONDS",
                    help="time limit of every cell (default: max_cell_seconds of matrix/thresholds.toml)")
    group.addoption("--expectations", default=None, metavar="PATH",
                    help="expectations file (default: matrix/expectations.toml)")
    group.addoption("--thresholds", default=None, metavar="PATH",
                    help="thresholds file (default: matrix/thresholds.toml)")
    group.addoption("--localize", action="store_true",
                    help="find the first diverging layer of every cell, not only of inaccurate ones")
    group.addoption("--latency", default=DEFAULT_LATENCY, choices=LATENCY_CHOICES,
                    help="which cells are timed against the float model on their backend: off, models "
                         "(default: every model's cells, not single operators') or all")
    group.addoption("--keep-artifacts", action="store_true",
                    help="keep each cell's deployed artifact (an ONNX model, say) under <run>/artifacts/<case id>/")
    group.addoption("--reports-dir", default=str(SUITE / "reports"),
                    help="where run folders are written (default: reports/ of the checkout)")
    group.addoption("--run-label", default=os.environ.get("QMATRIX_RUN_LABEL"),
                    help="a label for the run folder and report (default: $QMATRIX_RUN_LABEL)")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Run matrix cells in a worker process even without ``-n``: a cell that kills its
    process (a segfault in a kernel) then becomes a ``crash`` record and the run goes on.
    ``-n 0``, or naming single cells by node id (a rerun), runs in-process."""
    if hasattr(config, "workerinput") or not _targets_matrix(config.args):
        return
    if getattr(config.option, "maxworkerrestart", 0) is None:
        # A crashed worker is replaced however many crash: xdist's own limit (4 per worker) would
        # leave the cells after the limit unrun, and a run of ExecuTorch cells has several aborts.
        config.option.maxworkerrestart = 10_000
    if getattr(config.option, "numprocesses", 0) is not None or config.option.usepdb:
        return
    if config.option.collectonly or any("::" in a for a in config.args):
        return
    config.option.numprocesses = 1


def _named_cells(args: list[str]) -> set[str] | None:
    """The case ids named by node id (``cases/test_matrix.py::test_cell[ID]``) when every matrix
    argument names cells that way (a rerun): only those are parametrized. None otherwise."""
    targets = [arg for arg in args if not arg.startswith("-") and _targets_matrix([arg])]
    named = {arg[arg.index("[") + 1 : -1] for arg in targets if "::test_cell[" in arg and arg.endswith("]")}
    return named if targets and len(named) == len(targets) else None


def asks_for_zoo(markexpr: str, models: tuple[str, ...] | None) -> bool:
    """Whether a run asks for the zoo's cells, which the default run leaves out (they are their own
    tier, ``-m kind_zoo``): the ``-m`` expression names ``kind_zoo``, a zoo model's marker or the
    smoke slice (which holds zoo cells), or ``--models`` names a zoo model."""
    zoo = [name for name, spec in MODELS.items() if spec.kind == "zoo"]
    words = set(re.findall(r"\w+", markexpr))
    return bool({"kind_zoo", "smoke"} & words) or any(
        f"model_{name}" in words or name in (models or ()) for name in zoo)


def _targets_matrix(args: list[str]) -> bool:
    cases = (SUITE / "cases").resolve()
    paths = [Path(arg.split("::")[0]).resolve() for arg in args if not arg.startswith("-")]
    return not paths or any(path == cases or cases in path.parents for path in paths)


def pytest_configure(config: pytest.Config) -> None:
    for axis, registry in AXES.items():
        for name in registry:
            config.addinivalue_line("markers", f"{axis[:-1]}_{name}: cells whose {axis[:-1]} is {name}")
    for kind in KINDS:
        config.addinivalue_line("markers", f"kind_{kind}: cells of a {kind}")
    source_errors = _load_model_sources(config.getoption("models_from"))
    try:
        select = {axis: parse_selection(axis, config.getoption(axis), registry)
                  for axis, registry in AXES.items()}
        shard = parse_shard(config.getoption("shard"))
        timeout = config.getoption("cell_timeout")
        if timeout is not None and not timeout > 0:
            raise SelectionError(f"--cell-timeout must be a positive number of seconds, not {timeout:g}")
        expectations = Expectations.load(Path(config.getoption("expectations") or EXPECTATIONS_PATH), AXES)
        thresholds = Thresholds.load(Path(config.getoption("thresholds") or THRESHOLDS_PATH))
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
    matrix.cell_timeout = timeout
    if worker_input is not None:
        _watch_for_faults(config, run)
        matrix.threads = worker_input.get(WORKER_THREADS)
        if matrix.threads:
            set_threads(matrix.threads)
    else:
        matrix.threads = threads_per_worker(config)
    matrix.all_cases = expand(MODELS, MODES, SCHEMES, BACKENDS, QSPECS)
    selected = expand(MODELS, MODES, SCHEMES, BACKENDS, QSPECS, select=select)
    named = _named_cells(config.args)
    zoo = named is not None or asks_for_zoo(config.getoption("markexpr") or "", select["models"])
    matrix.selected = [case for case in selected if in_shard(case, shard) and (named is None or case.id in named)
                       and (zoo or case.kind != "zoo")]
    config.stash[MATRIX] = matrix


def _load_model_sources(paths: list[str]) -> list[str]:
    """Register models from entry points and files; return one message per entry point that failed.

    A file named on the command line (``--models-from``) that cannot be loaded (a syntax error,
    an import that fails, a model name already taken) is a usage error naming the file, before
    any cell runs: the user asked for its models. An installed entry point that fails is left out
    and named, and the run goes on with every other model.
    """
    _, errors = load_entry_points()
    for path in paths:
        try:
            load_file(path)
        except ModelSourceError as exc:
            raise pytest.UsageError(f"--models-from: {exc}") from None
    return [f"qmatrix: model source skipped: {error}" for error in errors]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    matrix = node.config.stash[MATRIX]
    node.workerinput[WORKER_RUN] = str(matrix.run)
    node.workerinput[WORKER_THREADS] = matrix.threads


def threads_per_worker(config: pytest.Config) -> int:
    """The machine's cores shared among the workers, at least one each: two workers on two
    cores that each start two intra-op threads spend their time waiting on each other (12 QAT
    steps of a small conv model take 0.04 s alone, 1.2-3 s that way). OMP_NUM_THREADS, when
    set, is taken as it is."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return int(os.environ["OMP_NUM_THREADS"])
    workers = getattr(config.option, "numprocesses", None)
    workers = workers if isinstance(workers, int) and workers > 0 else 1
    return max(1, (os.cpu_count() or 1) // workers)


def set_threads(threads: int) -> None:
    """PyTorch's intra-op threads; the backends size their own pools (ONNX Runtime, OpenVINO,
    LiteRT) by ``torch.get_num_threads()``."""
    import torch

    torch.set_num_threads(threads)


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
    for case in costliest_first(metafunc.config.stash[MATRIX].selected):
        marks = [getattr(pytest.mark, name) for name in case.markers()]
        if is_smoke(case):
            marks.append(pytest.mark.smoke)
        params.append(pytest.param(case, id=case.id, marks=marks))
    metafunc.parametrize("case", params)


def _worker(config: pytest.Config) -> str:
    return config.workerinput["workerid"] if hasattr(config, "workerinput") else "main"


def _watch_for_faults(config: pytest.Config, run: Path) -> None:
    """A worker writes the Python traceback of a fatal signal where the controller can read it."""
    run.mkdir(parents=True, exist_ok=True)
    config.stash[FAULTS] = open(run / f".faults-{_worker(config)}.log", "a")  # noqa: SIM115 (open for the worker's lifetime)


def _progress(run: Path, worker: str, case: Case) -> Callable[[Stage], None]:
    run.mkdir(parents=True, exist_ok=True)
    path = run / f".progress-{worker}.json"

    def entered(stage: Stage) -> None:
        path.write_text(json.dumps({"case_id": case.id, "stage": stage.value}))

    return entered


def _finish(record: dict, expected: Expectation, nodeid: str) -> tuple[Judged, Expectation]:
    """Annotate a record with what was expected of it (``expected`` as the record explains it,
    see :meth:`Expectation.explaining`), its node id and its verdict; return the verdict and the
    expectation that explains the record (whose reason pytest is given)."""
    expected = expected.explaining(record)
    annotate(record, expected)
    record["nodeid"] = nodeid
    judged = verdict(record, expected)
    record["verdict"] = judged.verdict.value
    fidelity = fidelity_verdict(record, expected)
    record["fidelity_verdict"] = fidelity.verdict.value if fidelity else None
    return judged, expected


def attempt(case: Case, request: pytest.FixtureRequest) -> None:
    """Run one cell, keep its record, and turn observed-versus-expected into a pytest outcome."""
    matrix = request.config.stash[MATRIX]
    expected = expected_of(matrix.expectations, case)
    nodeid = request.node.nodeid
    worker = _worker(request.config)
    faults = request.config.stash.get(FAULTS, None)
    if faults is not None:  # here, not at configure: pytest's own faulthandler setup comes later
        faulthandler.enable(faults)

    def write_hung(record: dict) -> None:
        _finish(record, expected, nodeid)
        _ensure_environment(matrix)
        append_record(matrix.run / f"cells-{worker}.jsonl", record)

    artifacts = matrix.run / "artifacts" / case.id if request.config.getoption("keep_artifacts") else None
    record = run_cell(case, matrix.thresholds, seconds=matrix.cell_timeout, on_hang=write_hung,
                      on_stage=_progress(matrix.run, worker, case), artifacts=artifacts,
                      localize_all=request.config.getoption("localize"),
                      latency=request.config.getoption("latency"))
    request.node.stash[RECORD] = record
    found, expected = _finish(record, expected, nodeid)
    # The verdict in pytest's words: skip, fail, xfail (raised) or xpass (an xfail that returns).
    if found.verdict is Verdict.UNAVAILABLE:
        pytest.skip(f"unavailable: {found.message}")
    if found.verdict in (Verdict.BROKEN, Verdict.WORSE):
        pytest.fail(found.message, pytrace=False)
    if found.verdict in (Verdict.KNOWN, Verdict.BETTER):
        request.applymarker(pytest.mark.xfail(reason=expected.reason, raises=ExpectedFinding, strict=False))
        if found.verdict is Verdict.KNOWN:
            raise ExpectedFinding(found.message)


def annotate(record: dict, expected: Expectation) -> None:
    record["expected"] = expected.entry.as_dict() if expected.entry else {"status": "pass"}
    record["expected_fidelity"] = (expected.fidelity_entry.as_dict() if expected.fidelity_entry
                                   else {"fidelity": expected.fidelity})
    record["documented"] = (
        {"status": expected.claim.status, "claim": expected.claim.text, "source": expected.claim.source}
        if expected.claim else None
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    record = item.stash.get(RECORD, None)
    if record is not None and report.when == "call":
        matrix = item.config.stash[MATRIX]
        _ensure_environment(matrix)
        append_record(matrix.run / f"cells-{_worker(item.config)}.jsonl", record)
    return report


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched) -> None:
    """A worker died running ``crashitem``: record the cell as ``crash`` (or keep the
    timeout record its watchdog wrote), and give pytest the expected outcome."""
    config = report.node.config
    matrix = config.stash[MATRIX]
    case = {c.id: c for c in matrix.selected}.get(crashitem[crashitem.find("[") + 1 : -1])
    if case is None:
        return
    worker = report.node.gateway.id
    expected = expected_of(matrix.expectations, case)
    recorded = _recorded(matrix.run, case.id)
    record = recorded or _crash_record(case, matrix.run, worker)
    found, expected = _finish(record, expected, crashitem)
    report.longrepr = f"{report.longrepr}: {record['status']} at {record['stage']}: {record['error_message']}"
    if found.verdict is Verdict.KNOWN:
        report.outcome, report.wasxfail = "skipped", expected.reason or found.message
    if recorded is None:
        _ensure_environment(matrix)
        append_record(matrix.run / "cells-main.jsonl", record)


def _recorded(run: Path, case_id: str) -> dict | None:
    for path in run.glob("cells*.jsonl"):
        for line in path.read_text().splitlines():
            if f'"case_id": "{case_id}"' in line:
                return json.loads(line)
    return None


def _crash_record(case: Case, run: Path, worker: str) -> dict:
    record = new_record(case)
    progress = run / f".progress-{worker}.json"
    stage = None
    if progress.exists():
        last = json.loads(progress.read_text())
        stage = last["stage"] if last.get("case_id") == case.id else None
    fault = _fatal_error(run / f".faults-{worker}.log")
    record.update(
        status=Status.CRASH.value, stage=stage, error_type="WorkerCrash",
        error_message=f"worker {worker} died: " + (fault or "no fatal-signal report (killed, e.g. out of memory)"),
        signal=SIGNALS.get(fault) if fault else None,
    )
    return record


SIGNALS = {"Segmentation fault": "SIGSEGV", "Aborted": "SIGABRT", "Bus error": "SIGBUS",
           "Floating-point exception": "SIGFPE", "Floating point exception": "SIGFPE", "Illegal instruction": "SIGILL"}


def _fatal_error(path: Path) -> str | None:
    if not path.exists():
        return None
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.startswith("Fatal Python error:")]
    return lines[-1].split(":", 1)[1].strip() if lines else None


def _ensure_environment(matrix: Matrix) -> None:
    path = matrix.run / "env.json"
    if not path.exists():
        matrix.run.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, environment(matrix.argv, matrix.label, matrix.threads, run_packages(), axis_order()))


def run_packages() -> tuple[str, ...]:
    """The packages whose versions a run records: the suite's own, then each mode's and backend's."""
    declared = [p for entry in (*MODES.values(), *BACKENDS.values()) for p in entry.packages.values()]
    return tuple(dict.fromkeys((*CORE_PACKAGES, *declared)))


def axis_order() -> dict[str, list[str]]:
    """Each axis's values in registry order (the columns and rows of the report's tables)."""
    return {axis[:-1]: list(registry) for axis, registry in AXES.items()}


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if hasattr(config, "workerinput"):
        return
    matrix = config.stash[MATRIX]
    if not any(matrix.run.glob("cells*.jsonl")):
        return
    from matrix.reporting import write_report

    _ensure_environment(matrix)
    env = read_environment(matrix.run)
    env["model_source_errors"] = matrix.source_errors
    env["stale_expectations"] = [
        {"entry": e.label, "status": e.status or f"fidelity {e.fidelity}", "why": why}
        for e, why in matrix.stale_expectations()
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
    for entry, why in matrix.stale_expectations():
        terminalreporter.write_line(f"qmatrix: stale expectation {entry.label}: {why}", yellow=True)
    report = matrix.run / "report.md"
    if report.exists():
        terminalreporter.write_line(f"qmatrix report: {report}")
