import re

import pytest
from torch import nn

from matrix.expectations import Expectation, ExpectationError, Expectations, fidelity_verdict, verdict
from matrix.vocabulary import MATCHES_NO_CELL, SHADOWED
from models import module_types

TEXT = '''
[[claim]]
cases = ["conv_*-*-ptq_dynamic-*"]
status = "not_quantized"
claim = "convolutions have no dynamic quantization"
source = "https://docs.example/quantization#operator-support"

[[expect]]
cases = "conv_bn_relu-fx-ptq_dynamic-*"
status = "fail"
stage = "convert"
error_type = "RuntimeError"
error_match = "no kernel"
reason = "seen failing at convert"
source = "run 2026-11-27"

[[expect]]
cases = "mlp-*"
status = "fail"
reason = "only for an ancient torch"
source = "upstream issue"
versions = { torch = "<1.0" }

[[expect]]
cases = "nothing-matches-*"
status = "fail"
reason = "stale"
source = "nowhere"
'''


@pytest.fixture
def expectations(tmp_path):
    path = tmp_path / "expectations.toml"
    path.write_text(TEXT)
    return Expectations.load(path)


def record(status, stage=None, error_type=None, message=None, reason=None):
    return {"status": status, "stage": stage, "error_type": error_type, "error_message": message,
            "reason": reason}


def test_no_entry_means_pass(expectations):
    found = expectations.lookup("mlp-fx-ptq_static-fbgemm", claimable=True)
    assert found.status == "pass"
    assert found.entry is None


def test_version_bounds_decide_whether_an_entry_holds(expectations):
    assert expectations.lookup("mlp-eager-qat-x86", claimable=True).status == "pass"


def test_observation_overrides_claim_and_claim_is_kept(expectations):
    found = expectations.lookup("conv_bn_relu-fx-ptq_dynamic-x86", claimable=True)
    assert found.status == "fail"
    assert found.claim.status == "not_quantized"
    claim_only = expectations.lookup("conv_bn_relu-eager-ptq_dynamic-x86", claimable=True)
    assert claim_only.status == "not_quantized"
    assert claim_only.reason.startswith("convolutions")


def test_verdicts(expectations):
    known = expectations.lookup("conv_bn_relu-fx-ptq_dynamic-x86", claimable=True)
    same = record("fail", "convert", "RuntimeError", "no kernel for x")
    assert verdict(same, known).verdict == "known"
    assert verdict(record("fail", "prepare", "RuntimeError", "no kernel"), known).verdict == "worse"
    assert verdict(record("fail", "convert", "ValueError", "no kernel"), known).verdict == "worse"
    assert verdict(record("fail", "convert", "RuntimeError", "other"), known).verdict == "worse"
    assert verdict(record("pass"), known).verdict == "better"
    expect_pass = Expectation("pass", None, None, None)
    assert verdict(record("pass"), expect_pass).verdict == "as_expected"
    assert verdict(record("not_quantized"), expect_pass).verdict == "worse"
    assert verdict(record("inaccurate"), expect_pass).verdict == "worse"
    assert verdict(record("error", "reference", "ValueError", "x"), expect_pass).verdict == "broken"
    assert verdict(record("unavailable", reason="no onnx"), expect_pass).verdict == "unavailable"
    claim = expectations.lookup("conv_adaptive_max_pool-eager-ptq_dynamic-x86", claimable=True)
    assert verdict(record("inaccurate"), claim).verdict == "better"
    assert verdict(record("fail", "run", "E", "m"), claim).verdict == "worse"


def test_stale_entries(expectations):
    stale = expectations.unused([("conv_bn_relu-fx-ptq_dynamic-x86", True), ("mlp-eager-qat-x86", True)])
    assert [e.cases for e, why in stale if why == MATCHES_NO_CELL] == [("nothing-matches-*",)]


SHADOWING = '''
[[expect]]
cases = ["*-eager-qat-x86"]
status = "fail"
reason = "first, for every eager QAT x86 cell"
source = "here"

[[expect]]
cases = ["mlp-eager-qat-x86"]
status = "inaccurate"
reason = "never reached: the entry above speaks first"
source = "here"

[[expect]]
cases = ["mlp-eager-qat-x86"]
fidelity = "departs"
reason = "speaks of the fidelity, which nothing above does"
source = "here"

[[expect]]
cases = ["mlp-eager-qat-x86"]
status = "not_quantized"
at_worst = true
reason = "a further cause, always consulted"
source = "here"

[[expect]]
cases = ["cnn-fx-qat-x86"]
status = "fail"
reason = "on an ancient torch only"
source = "here"
versions = { torch = "<1.0" }

[[expect]]
cases = ["cnn-fx-qat-x86"]
status = "not_quantized"
reason = "reached wherever the narrower entry above does not hold"
source = "here"
'''


def test_an_entry_an_earlier_one_always_shadows_is_unused(tmp_path):
    path = tmp_path / "expectations.toml"
    path.write_text(SHADOWING + TEXT.split("[[expect]]")[-1].join(["[[expect]]", ""]))
    entries = Expectations.load(path)
    cells = [("mlp-eager-qat-x86", True, None), ("cnn-eager-qat-x86", True, None), ("cnn-fx-qat-x86", True, None)]
    assert [(e.text.split(":")[0], why) for e, why in entries.unused(cells)] == [
        ("never reached", SHADOWED),
        ("stale", MATCHES_NO_CELL),
    ]


@pytest.mark.parametrize(("text", "message"), [
    ('[[expect]]\ncases = "a"\nstatus = "fail"\nsource = "s"\n', "'reason' is required"),
    ('[[expect]]\ncases = "a"\nstatus = "broken"\nreason = "r"\nsource = "s"\n', "unknown status 'broken'"),
    ('[[expect]]\ncases = "a"\nstatus = "fail"\nstage = "lod"\nreason = "r"\nsource = "s"\n',
     "#1: unknown stage 'lod'"),
    ('[[expect]]\ncases = "a"\nstatus = "fail"\nreason = "r"\nsource = "s"\nerror_match = "("\n',
     "not a regular expression"),
    ('[[expect]]\ncases = "a"\nstatus = "fail"\nreason = "r"\nsource = "s"\nversions = {torch = "~~1"}\n',
     "bad versions"),
    ('[[claim]]\ncases = "a"\nstatus = "fail"\nclaim = "c"\nsource = "s"\nreason = "r"\n', "unknown keys"),
    ('[[nope]]\n', "unknown tables"),
    ('[[expect]\n', "not valid TOML"),
])
def test_corrupt_expectations_name_the_file_and_entry(tmp_path, text, message):
    path = tmp_path / "expectations.toml"
    path.write_text(text)
    with pytest.raises(ExpectationError, match=message) as caught:
        Expectations.load(path)
    assert str(path) in str(caught.value)


def test_shipped_expectations_load_and_none_is_stale():
    from matrix.backends import BACKENDS
    from matrix.cases import expand
    from matrix.modes import MODES
    from matrix.schemes import SCHEMES
    from models import MODELS

    shipped = Expectations.load()
    from matrix.plugin import cell_facts

    cells = [cell_facts(c) for c in expand(MODELS, MODES, SCHEMES, BACKENDS)]
    assert [(e.label, why) for e, why in shipped.unused(cells)] == []
    assert all(e.source for e in shipped.entries)


def tools_of(case, backends, modes) -> set[str]:
    """The tools a cell runs, by the names a reason gives them: its mode's quantizer, and the
    runtime, kernels and PT2E quantizer of its backend's family (PyTorch's engines are one), with
    the engine whose qconfigs a backend that takes engine models uses."""
    backend = backends[case.backend]
    engine = backend.qconfig_engine
    families = {backend.family} | ({backends[engine].family} if engine in backends else set())
    found = set(modes[case.mode].tools)
    found.update(t for other in backends.values() if other.family in families for t in other.tools)
    return found


def test_no_reason_names_a_tool_the_cell_it_explains_does_not_run():
    """An entry about X86InductorQuantizer or Inductor explains no ExecuTorch, ONNX Runtime or
    LiteRT cell: every quantizer, runtime or kernel library a reason names is one the cells it
    matches run."""
    import re

    from matrix.backends import BACKENDS
    from matrix.cases import expand
    from matrix.modes import MODES
    from matrix.plugin import cell_facts
    from matrix.schemes import SCHEMES
    from models import MODELS

    vocabulary = {t for registry in (BACKENDS, MODES) for entry in registry.values() for t in entry.tools}
    assert {"Inductor", "X86InductorQuantizer", "ExecuTorch", "ONNX Runtime", "LiteRT", "NNCF"} <= vocabulary
    named = {t: re.compile(rf"(?<![\w-]){re.escape(t)}(?![\w-])") for t in vocabulary}
    entries = [e for e in Expectations.load().entries if e.kind == "expect"]
    foreign: dict[str, tuple[str, set[str]]] = {}
    for case in expand(MODELS, MODES, SCHEMES, BACKENDS):
        facts = cell_facts(case)
        used = tools_of(case, BACKENDS, MODES)
        for entry in entries:
            if entry.label in foreign or not entry.matches(*facts):
                continue
            others = {t for t, pattern in named.items() if t not in used and pattern.search(entry.text)}
            if others:
                foreign[entry.label] = (case.id, others)
    assert not foreign, "\n".join(f"{label} names {sorted(others)}, which {case_id} does not run"
                                   for label, (case_id, others) in foreign.items())


def test_a_docs_claim_speaks_only_of_pytorch_engines_with_their_default_qconfig():
    from matrix.cases import Case
    from matrix.plugin import claimable

    shipped = Expectations.load()

    def claim(model, scheme, backend, qspec="default"):
        case = Case(model, "model", "eager", scheme, qspec, backend)
        return shipped.lookup(case.id, claimable(case)).claim

    assert claim("op_linear", "ptq_dynamic", "fbgemm") is not None
    assert claim("op_linear", "ptq_dynamic", "onnxruntime") is None
    assert claim("conv_bn_relu", "ptq_dynamic", "fbgemm") is not None
    assert claim("conv_bn_relu", "ptq_static", "fbgemm", "w_per_tensor") is None


CPU_ENTRY = """
[[expect]]
cases = ["*-inductor"]
fidelity = "departs"
at_worst = true
cpu_lacks = ["avx512_vnni"]
reason = "u8s8 saturation without VNNI"
source = "a standalone reproduction"
"""


def test_a_cpu_cause_holds_only_on_a_cpu_without_the_feature(tmp_path):
    path = tmp_path / "expectations.toml"
    path.write_text(CPU_ENTRY)
    without = Expectations(Expectations.load(path).entries, path, cpu=frozenset({"avx2"}))
    with_vnni = Expectations(without.entries, path, cpu=frozenset({"avx2", "avx512_vnni"}))
    unknown = Expectations(without.entries, path, cpu=frozenset())
    assert without.lookup("mlp-pt2e-ptq_static-inductor", False).fidelity == "departs"
    assert with_vnni.lookup("mlp-pt2e-ptq_static-inductor", False).fidelity == "faithful"
    assert unknown.lookup("mlp-pt2e-ptq_static-inductor", False).fidelity == "faithful", "an unknown CPU proves nothing"
    assert without.lookup("mlp-pt2e-ptq_static-inductor", False).status == "pass", "a fidelity entry says no status"


def ran(status: str, *over: str, fidelity: str | None = None, stand_in: bool = False) -> dict:
    """A quantized record over the limits of ``over``, with its fidelity judged from them."""
    departs = "lsb_err_vs_sim" in over
    return {**record(status), "violations": [{"metric": m, "value": 0.0, "limit": 1.0} for m in over],
            "fidelity": fidelity or ("departs" if departs else "faithful"),
            "fidelity_reason": "lsb_err_vs_sim 20.0 > 8.0" if departs else None, "simulation_stand_in": stand_in}


def test_status_and_fidelity_are_two_verdicts_and_a_fidelity_surprise_turns_the_cell(tmp_path):
    path = tmp_path / "expectations.toml"
    path.write_text(CPU_ENTRY)
    known = Expectations(Expectations.load(path).entries, path, cpu=frozenset({"avx2"})).lookup("m-inductor", False)
    nothing = Expectations([], path).lookup("m-inductor", False)
    assert verdict(ran("pass", "lsb_err_vs_sim"), known).verdict == "as_expected"
    assert fidelity_verdict(ran("pass", "lsb_err_vs_sim"), known).verdict == "known"
    assert fidelity_verdict(ran("pass"), known).verdict == "as_expected", "the cause did not strike: fine"
    both = ran("inaccurate", "sqnr_db", "lsb_err_vs_sim")
    assert verdict(both, known).verdict == "worse", "accuracy is not its cause"
    unexplained = verdict(ran("pass", "lsb_err_vs_sim"), nothing)
    assert unexplained.verdict == "worse"
    assert "departs from its simulation: lsb_err_vs_sim 20.0 > 8.0" in unexplained.message
    stand_in = ran("pass", "lsb_err_vs_sim", stand_in=True)
    assert fidelity_verdict(stand_in, nothing).verdict == "unconfirmed"
    assert verdict(stand_in, nothing).verdict == "as_expected", "a stand-in's departure is no finding about the backend"
    assert fidelity_verdict(record("fail"), nothing) is None, "a cell that did not run has no fidelity"


def test_a_departure_that_is_gone_is_better_than_expected(tmp_path):
    path = tmp_path / "expectations.toml"
    path.write_text(CPU_ENTRY.replace("at_worst = true\n", ""))
    known = Expectations(Expectations.load(path).entries, path, cpu=frozenset({"avx2"})).lookup("m-inductor", False)
    assert verdict(ran("pass"), known).verdict == "better"
    assert verdict(ran("inaccurate", "sqnr_db"), known).verdict == "worse", "a status surprise comes first"


def test_over_names_the_accuracy_metrics_an_inaccurate_cell_is_over(tmp_path):
    path = tmp_path / "expectations.toml"
    path.write_text(CPU_ENTRY.replace('fidelity = "departs"', 'status = "inaccurate"\nover = ["sqnr_db"]')
                    .replace("at_worst = true\n", ""))
    known = Expectations(Expectations.load(path).entries, path, cpu=frozenset({"avx2"})).lookup("m-inductor", False)
    assert verdict(ran("inaccurate", "sqnr_db"), known).verdict == "known"
    assert verdict(ran("inaccurate", "sqnr_db", "accuracy_drop"), known).verdict == "worse"


@pytest.mark.parametrize(("text", "message"), [
    (CPU_ENTRY.replace('fidelity = "departs"', 'status = "inaccurate"\nover = ["lsb_err_vs_sim"]'), "unknown metrics"),
    (CPU_ENTRY.replace('fidelity = "departs"', 'status = "fail"\nover = ["sqnr_db"]'),
     "'over' is for status 'inaccurate'"),
    (CPU_ENTRY.replace('fidelity = "departs"', 'fidelity = "drifts"'), "unknown fidelity 'drifts'"),
    (CPU_ENTRY.replace('fidelity = "departs"\n', ""), "'status' is required \\(or 'fidelity'\\)"),
    (CPU_ENTRY.replace("at_worst = true", 'at_worst = "yes"'), "'at_worst' must be true or false"),
    (CPU_ENTRY.replace('cpu_lacks = ["avx512_vnni"]', 'cpu_lacks = "avx512_vnni"'), "'cpu_lacks' must be a list"),
])
def test_malformed_cpu_and_metric_keys_name_the_entry(tmp_path, text, message):
    path = tmp_path / "expectations.toml"
    path.write_text(text)
    with pytest.raises(ExpectationError, match=message) as caught:
        Expectations.load(path)
    assert "#1" in str(caught.value)


def test_a_cause_that_may_strike_bears_only_on_cells_otherwise_expected_to_pass(tmp_path):
    path = tmp_path / "expectations.toml"
    path.write_text(CPU_ENTRY.replace('fidelity = "departs"', 'status = "inaccurate"') + """
[[claim]]
cases = ["op_lstm-*"]
status = "not_quantized"
claim = "nn.LSTM: static N"
source = "docs"

[[claim]]
cases = ["op_linear-*"]
status = "pass"
claim = "nn.Linear: static Y"
source = "docs"
""")
    found = Expectations(Expectations.load(path).entries, path, cpu=frozenset({"avx2"}))
    assert found.lookup("op_lstm-fx-ptq_static-inductor", True).status == "not_quantized"
    linear = found.lookup("op_linear-fx-ptq_static-inductor", True)
    assert (linear.status, linear.claim.status) == ("inaccurate", "pass")


def loaded(tmp_path, text: str) -> Expectations:
    """The expectations of a file holding ``text``."""
    path = tmp_path / "expectations.toml"
    path.write_text(text)
    return Expectations.load(path)


def test_an_entry_by_module_type_holds_on_any_model_that_has_one(tmp_path):
    entries = loaded(tmp_path, '''[[expect]]
cases = ["*-pt2e-ptq_dynamic-onnxruntime"]
modules = ["Linear"]
status = "fail"
stage = "export"
reason = "no ONNX translation for the per-call qparams of a dynamic linear"
source = "upstream"
''')
    attention = module_types(nn.MultiheadAttention(8, 2))  # its out_proj is a subclass of Linear
    assert "Linear" in attention
    assert entries.lookup("users_net-pt2e-ptq_dynamic-onnxruntime", False, lambda: attention).status == "fail"
    convs = module_types(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()))
    assert entries.lookup("conv_net-pt2e-ptq_dynamic-onnxruntime", False, lambda: convs).status == "pass"
    assert entries.lookup("users_net-pt2e-ptq_dynamic-onnxruntime", False).status == "pass"  # nothing known
    unused = entries.unused([("conv_net-pt2e-ptq_dynamic-onnxruntime", False, lambda: convs)])
    assert unused == [(entry, MATCHES_NO_CELL) for entry in entries.entries]
    assert entries.entries[0].as_dict()["modules"] == ["Linear"]


def test_a_module_type_that_torch_does_not_have_is_named(tmp_path):
    with pytest.raises(ExpectationError, match=r"#1: 'modules' names no torch.nn module type: \['Linaer'\]"):
        loaded(tmp_path, '''[[expect]]
cases = ["*"]
modules = ["Linaer"]
status = "fail"
reason = "r"
source = "s"
''')


@pytest.mark.parametrize(("pattern", "part"), [
    ("op_linear-fxx-ptq_static-*", "fxx"),  # a misspelt mode
    ("my_net-*", "my_net"),  # a model nobody registered
    ("*-pt2e-qat-xnnpak*", "xnnpak*"),  # a wildcard part that matches no backend
])
def test_a_case_pattern_naming_no_axis_value_is_an_error_naming_the_part(tmp_path, pattern, part):
    from matrix.plugin import AXES

    path = tmp_path / "expectations.toml"
    path.write_text(f'[[expect]]\ncases = ["op_linear-*", "{pattern}"]\nstatus = "fail"\nreason = "r"\nsource = "s"\n')
    Expectations.load(path)  # without the registries (rendering a past run) the patterns are not checked
    with pytest.raises(ExpectationError, match=rf"{path}: \[\[expect\]\] #1: 'cases' pattern '{re.escape(pattern)}': "
                                               rf"'{re.escape(part)}' names no model, mode, scheme, qspec, backend"):
        Expectations.load(path, AXES)


def test_shipped_case_patterns_name_registered_axis_values():
    from matrix.plugin import AXES

    assert len(Expectations.load(axis_values=AXES).entries) == len(Expectations.load().entries)


def test_an_entry_for_an_absence_holds_on_models_without_those_modules(tmp_path):
    entries = loaded(tmp_path, '''[[expect]]
cases = ["*-fx-ptq_dynamic-onnxruntime"]
lacks_modules = ["Linear", "LSTM"]
status = "not_quantized"
reason = "dynamic quantization covers linear and recurrent layers only"
source = "docs"
''')
    convs = module_types(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()))
    recurrent = module_types(nn.Sequential(nn.LSTM(4, 4)))
    assert entries.lookup("conv_net-fx-ptq_dynamic-onnxruntime", False, lambda: convs).status == "not_quantized"
    assert entries.lookup("lstm_net-fx-ptq_dynamic-onnxruntime", False, lambda: recurrent).status == "pass"
    assert entries.entries[0].as_dict()["lacks_modules"] == ["Linear", "LSTM"]


CODE_CAUSES = """
[[expect]]
cases = ["*-eager-ptq_static-*"]
at_worst = true
status = "fail"
stage = "run"
error_match = "aten::add"
reason = "a plain add"
source = "the docs"

[[expect]]
cases = ["*-ptq_static-*"]
at_worst = true
status = "fail"
stage = "capture"
error_match = "control flow"
reason = "control flow"
source = "the docs"
"""


def test_several_causes_of_the_models_code_and_the_record_shows_which_struck(tmp_path):
    path = tmp_path / "expectations.toml"
    path.write_text(CODE_CAUSES)
    expected = Expectations(Expectations.load(path).entries, path).lookup("m-eager-ptq_static-x86", False)
    assert expected.reason == "a plain add" and [c.text for c in expected.causes] == ["control flow"]
    added = {**record("fail"), "stage": "run", "error_message": "Could not run 'aten::add.out'"}
    traced = {**record("fail"), "stage": "capture", "error_message": "used as inputs to control flow"}
    other = {**record("fail"), "stage": "capture", "error_message": "something else"}
    assert verdict(added, expected.explaining(added)).verdict == "known"
    assert expected.explaining(traced).reason == "control flow"
    assert verdict(traced, expected.explaining(traced)).verdict == "known"
    assert verdict(other, expected.explaining(other)).verdict == "worse", "no cause names this error"
    assert verdict(ran("pass"), expected.explaining(ran("pass"))).verdict == "as_expected"


def test_a_better_outcome_short_of_a_pass_is_not_explained_by_an_at_worst_cause(tmp_path):
    """An at-worst cause that did not strike leaves a pass expected: a cell that traced but came out
    inaccurate or float has another cause, and is worse than expected, naming the one that did not strike."""
    path = tmp_path / "expectations.toml"
    path.write_text(CODE_CAUSES)
    expected = Expectations(Expectations.load(path).entries, path).lookup("m-fx-ptq_static-x86", False)
    assert expected.reason == "control flow"
    for status in ("inaccurate", "not_quantized"):
        judged = verdict(ran(status, "sqnr_db"), expected.explaining(ran(status, "sqnr_db")))
        assert judged.verdict == "worse" and "did not strike: control flow" in judged.message


def _departed(simulated_db: float) -> dict:
    return {**ran("inaccurate", "sqnr_db", "lsb_err_vs_sim"), "limits": {"min_sqnr_db": 15.0},
            "metrics": {"sqnr_db": 12.0, "sqnr_sim_db": simulated_db}}


def test_an_inaccurate_cell_is_explained_by_a_known_departure_only_when_its_simulation_is_accurate(tmp_path):
    """The kernels' known departure from a simulation within the limits is why the cell is inaccurate
    (kernel saturation, say); with a simulation over the limit too, the quantization itself is, and
    the departure explains nothing of it."""
    path = tmp_path / "expectations.toml"
    path.write_text(CPU_ENTRY)
    known = Expectations(Expectations.load(path).entries, path, cpu=frozenset({"avx2"})).lookup("m-inductor", False)
    caused = verdict(_departed(35.0), known)
    assert caused.verdict == "known" and "departure from the simulation" in caused.message
    assert verdict(_departed(14.0), known).verdict == "worse"
    nothing = Expectations([], path).lookup("m-inductor", False)
    assert verdict(_departed(35.0), nothing).verdict == "worse", "a departure nobody explained explains nothing"
    path.write_text(CODE_CAUSES + CPU_ENTRY.replace('["*-inductor"]', '["*-ptq_static-x86"]'))
    both = Expectations(Expectations.load(path).entries, path, cpu=frozenset({"avx2"})).lookup("m-fx-ptq_static-x86",
                                                                                                 False)
    assert verdict(_departed(35.0), both.explaining(_departed(35.0))).verdict == "known", "the trace did not stop"


def test_a_models_structure_is_made_of_what_the_model_is():
    """A model that builds its modules without training them, for the entries by module type,
    must name the same module types as the model its cells run."""
    from models import MODELS

    with_structure = [spec for spec in MODELS.values() if spec.structure is not None]
    assert with_structure, "no model declares a structure: the check below checks nothing"
    for spec in with_structure:
        assert module_types(spec.made_of()) == module_types(spec.instantiate()), spec.name


def test_a_float_cell_with_no_entry_is_expected_to_hold_no_quantized_op_faithfully(tmp_path):
    expectations = loaded(tmp_path, TEXT)
    expected = expectations.lookup("relu-export-float-litert", claimable=False).of_float_cell()
    assert (expected.status, expected.fidelity) == ("not_quantized", "faithful")
    record = {"status": "not_quantized", "fidelity": "faithful", "stage": None, "error_type": None,
              "error_message": None}
    assert verdict(record, expected).verdict.value == "as_expected"
    assert verdict({**record, "fidelity": "departs", "fidelity_reason": "sqnr_db 40 < 60"},
                   expected).verdict.value == "worse", "an unfaithful export nobody explained is a surprise"
    assert verdict({**record, "status": "fail", "stage": "export", "error_type": "E", "error_message": "m"},
                   expected).verdict.value == "worse"
    entry = expectations.lookup("conv_bn_relu-fx-ptq_dynamic-x86", claimable=False)
    assert entry.of_float_cell() is entry, "an entry of its own speaks first"


def test_an_entry_with_weights_under_speaks_only_of_models_whose_weights_are_all_smaller(tmp_path):
    expectations = loaded(tmp_path, TEXT + '''
[[expect]]
cases = ["*-onnx2tf-ptq_dynamic-litert"]
weights_under = 1024
status = "not_quantized"
reason = "small weights are skipped"
source = "converter"
''')
    small = expectations.lookup("mine-onnx2tf-ptq_dynamic-litert", False, None, lambda: 576)
    large = expectations.lookup("mine-onnx2tf-ptq_dynamic-litert", False, None, lambda: 4096)
    unknown = expectations.lookup("mine-onnx2tf-ptq_dynamic-litert", False)
    assert (small.status, large.status, unknown.status) == ("not_quantized", "pass", "pass")
    with pytest.raises(ExpectationError, match="weights_under"):
        loaded(tmp_path, TEXT + '[[expect]]\ncases = ["x-*"]\nweights_under = "big"\nstatus = "fail"\n'
               'reason = "r"\nsource = "s"\n')


def test_a_models_largest_weight_is_of_its_compute_layers():
    from models import largest_weight

    model = nn.Sequential(nn.Embedding(100, 16), nn.LayerNorm(16), nn.Linear(16, 8), nn.LSTM(8, 4))
    assert largest_weight(model) == 128, "the embedding table (1,600) and the norm are not compute weights"
