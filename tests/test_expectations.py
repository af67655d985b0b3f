import pytest

from matrix.expectations import Expectation, ExpectationError, Expectations, verdict

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
    found = expectations.lookup("mlp-fx-ptq_static-fbgemm")
    assert found.status == "pass"
    assert found.entry is None


def test_version_bounds_decide_whether_an_entry_holds(expectations):
    assert expectations.lookup("mlp-eager-qat-x86").status == "pass"


def test_observation_overrides_claim_and_claim_is_kept(expectations):
    found = expectations.lookup("conv_bn_relu-fx-ptq_dynamic-x86")
    assert found.status == "fail"
    assert found.claim.status == "not_quantized"
    claim_only = expectations.lookup("conv_bn_relu-eager-ptq_dynamic-x86")
    assert claim_only.status == "not_quantized"
    assert claim_only.reason.startswith("convolutions")


def test_verdicts(expectations):
    known = expectations.lookup("conv_bn_relu-fx-ptq_dynamic-x86")
    same = record("fail", "convert", "RuntimeError", "no kernel for x")
    assert verdict(same, known).outcome == "as_expected"
    assert verdict(record("fail", "prepare", "RuntimeError", "no kernel"), known).outcome == "worse"
    assert verdict(record("fail", "convert", "ValueError", "no kernel"), known).outcome == "worse"
    assert verdict(record("fail", "convert", "RuntimeError", "other"), known).outcome == "worse"
    assert verdict(record("pass"), known).outcome == "better"
    expect_pass = Expectation("pass", None, None, None)
    assert verdict(record("pass"), expect_pass).outcome == "as_expected"
    assert verdict(record("not_quantized"), expect_pass).outcome == "worse"
    assert verdict(record("inaccurate"), expect_pass).outcome == "worse"
    assert verdict(record("error", "reference", "ValueError", "x"), expect_pass).outcome == "broken"
    assert verdict(record("unavailable", reason="no onnx"), expect_pass).outcome == "unavailable"
    claim = expectations.lookup("conv_adaptive_max_pool-eager-ptq_dynamic-x86")
    assert verdict(record("inaccurate"), claim).outcome == "better"
    assert verdict(record("fail", "run", "E", "m"), claim).outcome == "worse"


def test_stale_entries(expectations):
    stale = expectations.stale(["conv_bn_relu-fx-ptq_dynamic-x86", "mlp-eager-qat-x86"])
    assert [e.cases for e in stale] == [("nothing-matches-*",)]


@pytest.mark.parametrize(("text", "message"), [
    ('[[expect]]\ncases = "a"\nstatus = "fail"\nsource = "s"\n', "'reason' is required"),
    ('[[expect]]\ncases = "a"\nstatus = "broken"\nreason = "r"\nsource = "s"\n', "unknown status 'broken'"),
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
    ids = [c.id for c in expand(MODELS, MODES, SCHEMES, BACKENDS)]
    assert shipped.stale(ids) == []
    assert all(e.source for e in shipped.entries)


def test_a_docs_claim_speaks_only_of_pytorch_engines_with_their_default_qconfig():
    shipped = Expectations.load()
    assert shipped.lookup("op_linear-eager-ptq_dynamic-fbgemm").claim is not None
    assert shipped.lookup("op_linear-eager-ptq_dynamic-onnxruntime").claim is None
    assert shipped.lookup("conv_bn_relu-eager-ptq_dynamic-fbgemm").claim is not None
    assert shipped.lookup("conv_bn_relu-eager-ptq_static-fbgemm-w_per_tensor").claim is None
