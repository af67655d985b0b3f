from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest

from matrix.cases import Case, SelectionError, costliest_first, expand, parse_selection
from matrix.qspecs import QSpec

SUITE = __import__("pathlib").Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Named:
    name: str
    kind: str = "model"
    backends: tuple[str, ...] = ()
    schemes: tuple[str, ...] = ()

    def reaches(self, backend: Named) -> bool:
        return backend.name in self.backends


MODELS = {"m1": Named("m1"), "op1": Named("op1", kind="operator")}
MODES = {
    "eager": Named("eager", backends=("fbgemm", "qnnpack"), schemes=("ptq_static", "qat")),
    "pt2e": Named("pt2e", backends=("inductor",), schemes=("ptq_static",)),
}
SCHEMES = {"ptq_static": None, "ptq_dynamic": None, "qat": None}
BACKENDS = {name: Named(name) for name in ("fbgemm", "qnnpack", "inductor")}
QSPECS = {"default": QSpec("default", ""), "per_tensor": QSpec("per_tensor", "", modes=("eager",),
                                                               reaches=lambda mode, b: b.name == "qnnpack")}


def test_expansion_crosses_only_code_paths():
    cases = expand(MODELS, MODES, SCHEMES, BACKENDS, QSPECS)
    ids = [c.id for c in cases]
    assert "m1-eager-ptq_static-fbgemm" in ids
    assert "m1-pt2e-ptq_static-inductor" in ids
    assert not any("pt2e-ptq_static-fbgemm" in i for i in ids)
    assert not any("ptq_dynamic" in i for i in ids), "no mode offers ptq_dynamic here"
    assert "m1-eager-qat-qnnpack-per_tensor" in ids
    assert "m1-eager-qat-fbgemm-per_tensor" not in ids
    # 2 models x (eager: 2 schemes x (fbgemm + qnnpack x 2 qspecs) + pt2e: 1)
    assert len(cases) == 2 * (2 * 3 + 1)
    assert len(set(ids)) == len(ids)


def test_selection_narrows_each_axis():
    cases = expand(MODELS, MODES, SCHEMES, BACKENDS, QSPECS,
                   select={"models": ("op1",), "backends": ("qnnpack",), "qspecs": ("default",)})
    assert [c.id for c in cases] == ["op1-eager-ptq_static-qnnpack", "op1-eager-qat-qnnpack"]
    assert {c.kind for c in cases} == {"operator"}


def test_case_fields_and_markers():
    case = Case("conv_bn_relu", "model", "fx", "ptq_static", "default", "fbgemm")
    assert case.id == "conv_bn_relu-fx-ptq_static-fbgemm"
    assert case.axes()["backend"] == "fbgemm"
    assert "backend_fbgemm" in case.markers()
    assert "model_conv_bn_relu" in case.markers()


def test_unknown_value_lists_valid_ones():
    with pytest.raises(SelectionError, match=r"unknown backends 'nosuch'; valid backends: fbgemm, x86"):
        parse_selection("backends", "fbgemm,nosuch", ["fbgemm", "x86"])
    with pytest.raises(SelectionError, match="empty"):
        parse_selection("models", " , ", ["mlp"])
    assert parse_selection("models", None, ["mlp"]) is None
    assert parse_selection("models", "mlp", ["mlp"]) == ("mlp",)


def test_pytest_rejects_unknown_backend_before_running_anything(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", f"--rootdir={SUITE}", "--backends=nosuch", f"--reports-dir={tmp_path}", "-q"],
        cwd=SUITE, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 4, result.stdout + result.stderr
    assert "unknown backends 'nosuch'" in result.stderr
    assert "valid backends: fbgemm, x86, qnnpack, onednn, torch_cpu, inductor" in result.stderr
    assert not any(tmp_path.iterdir()), "no run folder for a usage error"


def test_registered_axes_expand_to_real_matrix():
    from matrix.backends import BACKENDS as real_backends
    from matrix.modes import MODES as real_modes
    from matrix.schemes import SCHEMES as real_schemes
    from models import MODELS as real_models

    cases = expand(real_models, real_modes, real_schemes, real_backends)
    ids = {c.id for c in cases}
    assert "conv_bn_relu-fx-ptq_static-fbgemm" in ids
    assert "mlp-pt2e-qat-inductor" in ids
    assert not any(c.mode == "pt2e" and c.backend == "fbgemm" for c in cases)
    assert len(ids) == len(cases)


@pytest.mark.parametrize(("option", "content", "message"), [
    ("--expectations", '[[expect]]\ncases = "mlp-*"\nstatus = "fail"\n', "'reason' is required"),
    ("--thresholds", "[defaults]\nmin_sqnr_db = 'high'\n", "must be a finite number"),
    ("--shard", None, "expected i/n"),
    ("--cell-timeout", None, "positive number of seconds"),
])
def test_bad_input_is_one_clear_error_before_any_cell_runs(tmp_path, option, content, message):
    if content is None:
        value = {"--shard": "3/2", "--cell-timeout": "0"}[option]
    else:
        path = tmp_path / "data.toml"
        path.write_text(content)
        value = str(path)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", f"--rootdir={SUITE}", f"{option}={value}",
         f"--reports-dir={tmp_path / 'reports'}", "-q"],
        cwd=SUITE, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 4, result.stdout + result.stderr
    assert message in result.stderr
    if content is not None:
        assert str(tmp_path / "data.toml") in result.stderr, "the error names the file"
    assert not (tmp_path / "reports").exists(), "no cell ran"


def test_qspec_limited_to_a_scheme_is_crossed_only_with_it():
    qspecs = {"default": QSpec("default", ""), "trained": QSpec("trained", "", schemes=("qat",))}
    cases = expand(MODELS, MODES, SCHEMES, BACKENDS, qspecs)
    assert {c.scheme for c in cases if c.qspec == "trained"} == {"qat"}
    assert {c.scheme for c in cases if c.qspec == "default"} == {"ptq_static", "qat"}


def test_a_mode_with_a_model_list_takes_a_users_model_only_when_it_says_so():
    from matrix.backends import BACKENDS as real_backends
    from matrix.modes import MODES as real_modes
    from matrix.schemes import SCHEMES as real_schemes
    from models import MODELS as real_models

    models = {**real_models, "mine": real_models["mlp"].from_source("my_models.py")}
    modes = {name: real_modes[name] for name in ("torchao", "keras")}
    cases = expand(models, modes, real_schemes, real_backends, select={"models": ("mine", "op_conv2d")})
    assert {c.mode for c in cases} == {"torchao"}, "torchao takes a user's model, keras (twins only) does not"
    assert {c.model for c in cases} == {"mine"}, "op_conv2d is not on torchao's list"


def test_costliest_groups_start_first_each_model_on_a_backend_together():
    cheap = [Case("m1", "model", "eager", "ptq_static", "default", b) for b in ("qnnpack", "fbgemm")]
    operator = Case("op1", "operator", "pt2e", "ptq_static", "default", "inductor")
    zoo_qat = Case("z1", "zoo", "pt2e", "qat", "default", "inductor")
    zoo = Case("z1", "zoo", "pt2e", "ptq_static", "default", "inductor")
    executorch = Case("m1", "model", "pt2e", "ptq_static", "default", "executorch_xnnpack")
    ordered = costliest_first([*cheap, operator, zoo, executorch, zoo_qat])
    assert ordered == [zoo_qat, zoo, executorch, operator, *cheap]
    # Groups that cost the same keep their order (a run of a user's model after the suite's).
    twins = [Case(m, "model", "eager", "ptq_static", "default", "fbgemm") for m in ("mlp", "sleeping", "another")]
    assert costliest_first(twins) == twins
    # Many cheap cells of one model on one backend outweigh one dear cell of another.
    many = [Case("m2", "model", "eager", s, q, "fbgemm") for s in ("ptq_static", "qat") for q in "abcdefghijklmnop"]
    assert costliest_first([operator, *many])[0] in many


def test_collection_runs_the_costliest_groups_first_each_in_one_run():
    from itertools import groupby

    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "--models", "mlp,op_relu",
         "--backends", "fbgemm,inductor", "-p", "no:randomly"],
        cwd=SUITE, capture_output=True, text=True, check=True,
    ).stdout
    ids = [line[line.index("[") + 1 : -1] for line in out.splitlines() if "test_cell[" in line]
    groups = [key for key, _ in groupby(ids, key=lambda i: (i.split("-")[0], i.split("-")[3]))]
    assert len(groups) == len(set(groups)) == 4, groups
    assert groups[0] == ("mlp", "inductor") and groups[-1] == ("op_relu", "fbgemm")


def test_an_api_that_moved_is_looked_up_where_each_release_has_it():
    from matrix.cell import Unavailable, first_location

    found = first_location((("no_such_module",), ("json",)), lambda module: module.dumps, "JSON")
    assert found([1]) == "[1]", "the first location that imports is used"
    with pytest.raises(Unavailable, match=r"^JSON: no_such_module: No module named .*; json: .*has no attribute"):
        first_location((("no_such_module",), ("json",)), lambda module: module.no_such_function, "JSON")


def test_every_model_has_a_float_cell_on_each_backend_that_deploys_an_artifact_of_its_own():
    from matrix.backends import BACKENDS as REAL_BACKENDS
    from matrix.modes import MODES as REAL_MODES
    from matrix.qspecs import QSPECS as REAL_QSPECS
    from matrix.schemes import SCHEMES as REAL_SCHEMES
    from models import MODELS as REAL_MODELS

    cases = expand(REAL_MODELS, REAL_MODES, REAL_SCHEMES, REAL_BACKENDS, REAL_QSPECS, select={"modes": ("export",)})
    floats = {(c.model, c.backend) for c in cases if c.scheme == "float"}
    own_artifact = [name for name, b in REAL_BACKENDS.items() if b.family not in ("torch_native", "torch_eager")]
    assert floats == {(model, backend) for model in REAL_MODELS for backend in own_artifact}
    halves = {c.backend for c in cases if c.scheme == "fp16"}
    assert halves == {"torch_cpu", "onnxruntime", "openvino"}
    assert {c.qspec for c in cases} == {"default"}


def test_a_package_no_extra_installs_is_named_with_the_command_that_does():
    from matrix.cell import missing_packages
    from matrix.modes.onnx2tf import INSTALL

    found = missing_packages({"no_such_module_here": "no-such-package"}, INSTALL)
    assert found == f"missing package(s) no-such-package ({INSTALL})"
    assert missing_packages({"no_such_module_here": "x"}, "onnx").endswith("(pip install 'qmatrix[onnx]')")


def test_every_setup_installs_onnx2tf_as_the_mode_says():
    from matrix.modes.onnx2tf import INSTALL

    for name in ("README.md", ".ci/run", "tox.ini"):
        assert INSTALL in (SUITE / name).read_text(), f"{name} does not run {INSTALL!r}"
