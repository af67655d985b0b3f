"""The shape of the suite itself: a backend is one file and one registry line, and no module of the
project imports another that imports it back."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

from matrix.backends import BACKENDS
from matrix.cases import expand
from matrix.modes import MODES
from matrix.plugin import axis_order, run_packages
from matrix.qspecs import QSPECS
from matrix.reporting.html import render_html
from matrix.reporting.markdown import render_markdown
from matrix.schemes import SCHEMES
from models import MODELS

SUITE = Path(__file__).resolve().parent.parent

# A backend as its own file: a PT2E quantizer (so the pt2e and conversion modes reach it, with the
# quantization knobs), the packages it runs on, a deploy. Nothing else in the suite names it.
THROWAWAY = '''
import contextlib

from matrix.backends import Backend, register


def deploy(ctx, model):
    raise NotImplementedError("a backend that only registers")


def pt2e_quantizer(scheme, qspec):
    raise NotImplementedError


register(Backend(
    "throwaway_npu", "throwaway", "a backend of one file", deploy=deploy, packages={"json": "throwaway-json"},
    pt2e_quantizer=pt2e_quantizer, pt2e_knobs="all",
))
'''


@pytest.fixture
def throwaway_backend(tmp_path):
    path = tmp_path / "throwaway_npu.py"
    path.write_text(THROWAWAY)
    before = dict(BACKENDS)
    spec = importlib.util.spec_from_file_location("throwaway_npu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield "throwaway_npu"
    BACKENDS.clear()
    BACKENDS.update(before)


def test_a_backend_of_one_file_reaches_every_report_table(throwaway_backend):
    cases = expand(MODELS, MODES, SCHEMES, BACKENDS, QSPECS)
    mine = [c for c in cases if c.backend == throwaway_backend]
    assert {c.mode for c in mine} == {"pt2e", "conversion", "export"}, "modes reach it from what it declares"
    assert {c.scheme for c in mine if c.mode == "export"} == {"float"}, "its float parity, no fp16 path"
    assert {c.kind for c in mine} == {"model", "zoo", "operator"}
    assert any(QSPECS[c.qspec].knobs for c in mine), "its quantizer takes the knobs, so they are crossed"
    assert "throwaway-json" in run_packages(), "env.json records the packages it declares"
    assert axis_order()["backend"][-1] == throwaway_backend
    others = [c for c in cases if c.backend == "inductor" and c.mode in ("pt2e", "conversion")]
    records = [{"case_id": c.id, **c.axes(), "status": "pass", "quantized_ops": 1, "verdict": "as_expected",
                "metrics": {"sqnr_db": 30.0, "sqnr_sim_db": 30.0, "lsb_err_vs_sim": 0.0}} for c in mine + others]
    env = {"label": "throwaway", "axes": axis_order()}
    markdown = render_markdown(env, records)
    sections = markdown.split("\n## ")
    for title in ("Mode support", "Model support", "Qspec support", "Conversion paths", "Operator support",
                  "The guide's complete examples"):
        section = next(s for s in sections if s.startswith(title))
        assert throwaway_backend in section, f"{title} has no column or row of the new backend"
    page = render_html(env, records)
    for anchor in ("mode-support", "model-support", "operator-support", "per-model", "qspec-support",
                   "conversion-paths", "cells"):
        start = page.index(f'<section id="{anchor}"')
        assert throwaway_backend in page[start:page.index("</section>", start)], anchor


def project_imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules a file imports, anywhere in it (lazily and for type checking too):
    ``from a import b`` imports the module a.b where there is one, else a."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = {f"{node.module}.{alias.name}" for alias in node.names}
            found |= (names & modules) or {node.module}
            if names - modules:
                found.add(node.module)
    return {name for name in found if name.split(".")[0] in ("matrix", "models")}


def module_name(path: Path) -> str:
    parts = path.relative_to(SUITE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_of_the_project_imports_itself_back():
    files = [p for top in ("matrix", "models") for p in (SUITE / top).rglob("*.py")]
    modules = {module_name(p): p for p in files}
    graph = {name: {m for m in project_imports(path, set(modules)) if m in modules and m != name}
             for name, path in modules.items()}
    # A package's own __init__ is imported with any of its modules: an import of a.b reaches a.
    for name in list(graph):
        graph[name] |= {parent for m in graph[name] for parent in _parents(m) if parent in modules and parent != name
                        and not name.startswith(parent + ".")}
    circles = []

    def visit(name: str, path: list[str]) -> None:
        for nxt in sorted(graph[name]):
            if nxt in path:
                circles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(nxt, [*path, nxt])
        done.add(name)

    done: set[str] = set()
    sys.setrecursionlimit(10_000)
    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


# Layers of the project, bottom up: a module may import its own layer and the ones below.
# Formats know neither modes nor backends; modes make artifacts of formats and never call a
# backend; backends deploy formats; the runner and the plugin join them.
LAYERS = {"matrix.formats": {"matrix.modes", "matrix.backends", "matrix.runner", "matrix.plugin"},
          "matrix.modes": {"matrix.backends", "matrix.runner", "matrix.plugin"},
          "matrix.backends": {"matrix.modes", "matrix.runner", "matrix.plugin"}}


def test_formats_import_neither_modes_nor_backends_and_modes_import_no_backend():
    files = list((SUITE / "matrix").rglob("*.py"))
    modules = {module_name(p): p for p in files}
    crossings = []
    for name, path in sorted(modules.items()):
        for package, above in LAYERS.items():
            if name == package or name.startswith(package + "."):
                crossings += [f"{name} imports {m}" for m in sorted(project_imports(path, set(modules)))
                              if any(m == a or m.startswith(a + ".") for a in above)]
    assert not crossings, "; ".join(crossings)


def test_a_mode_or_backend_reads_a_qspec_by_what_it_is_not_by_its_name():
    from matrix.qspecs import DEFAULT, KNOB, QSPECS

    read_by_name = [f"{path.relative_to(SUITE)}:{number}" for top in ("modes", "backends")
                    for path in sorted((SUITE / "matrix" / top).glob("*.py"))
                    for number, line in enumerate(path.read_text().splitlines(), 1)
                    if "qspec.name" in line or "QSPECS[" in line]
    assert not read_by_name, "a qspec matched by name: " + ", ".join(read_by_name)
    for qspec in QSPECS.values():
        assert (qspec.name == DEFAULT) == (qspec.kind is None), qspec.name
        assert not (qspec.knobs and qspec.variant.kind), f"{qspec.name}: both knobs and a variant"
        assert qspec.kind is None or qspec.kind == KNOB or qspec.variant.kind, qspec.name
