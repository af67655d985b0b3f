import pytest

from matrix.thresholds import ThresholdError, Thresholds, judge


def write(tmp_path, text):
    path = tmp_path / "thresholds.toml"
    path.write_text(text)
    return path


BASE = ("[defaults]\nmin_sqnr_db = 15.0\nmax_lsb_err_vs_sim = 8.0\nmax_accuracy_drop = 0.02\n"
        "max_cell_seconds = 60.0\nlatency_seconds = 0.2\nmax_recompiled_layers = 1000\n")


def test_lookup_order_model_over_backend_over_scheme_over_defaults(tmp_path):
    thresholds = Thresholds.load(write(tmp_path, BASE + "[schemes.qat]\nmin_sqnr_db = 12.0\n"
                                                 "[backends.inductor]\nmax_cell_seconds = 300\nmin_sqnr_db = 11.0\n"
                                                 "[models.lstm]\nmin_sqnr_db = 10.0\n"))
    assert thresholds.for_cell("ptq_static", "mlp")["min_sqnr_db"] == 15.0
    assert thresholds.for_cell("qat", "mlp")["min_sqnr_db"] == 12.0
    assert thresholds.for_cell("qat", "mlp", "inductor")["min_sqnr_db"] == 11.0
    assert thresholds.for_cell("qat", "lstm", "inductor")["min_sqnr_db"] == 10.0
    assert thresholds.for_cell("qat", "lstm", "inductor")["max_cell_seconds"] == 300
    assert thresholds.for_cell("qat", "lstm", "fbgemm")["max_cell_seconds"] == 60.0


def test_violations_are_structured_and_read_as_before(tmp_path):
    thresholds = Thresholds.load(write(tmp_path, BASE))
    limits = thresholds.for_cell("ptq_static", "m")
    assert judge({"sqnr_db": 30.0, "lsb_err_vs_sim": 1.0}, limits) == []
    found = judge({"sqnr_db": 10.0, "lsb_err_vs_sim": 9.0}, limits)
    assert [v.as_dict() for v in found] == [{"metric": "sqnr_db", "value": 10.0, "limit": 15.0},
                                            {"metric": "lsb_err_vs_sim", "value": 9.0, "limit": 8.0}]
    assert [v.phrase for v in found] == ["sqnr_db 10.0 < 15.0", "lsb_err_vs_sim 9.0 > 8.0"]
    assert judge({"sqnr_db": float("nan"), "lsb_err_vs_sim": 0.0}, limits)
    drop = {"sqnr_db": 30.0, "lsb_err_vs_sim": 0.0, "accuracy": 0.90, "float_accuracy": 0.95}
    assert [v.phrase for v in judge(drop, limits)] == ["accuracy drop 0.0500 > 0.02"]


@pytest.mark.parametrize(("text", "message"), [
    (BASE.replace("8.0", "true"), "must be a finite number"),
    (BASE + "[defaults.extra]\n", "unknown key 'extra'"),
    (BASE + "[schemes.qat]\nmin_snr = 3\n", "unknown key 'min_snr'"),
    (BASE + "[other]\n", r"unknown section \[other\]"),
    ("[defaults]\nmin_sqnr_db = 15.0\n", "lacks"),
    (BASE.replace("60.0", "-1.0"), "must be positive"),
    (BASE + "[backends]\ninductor = 3\n", "must be a table"),
    (BASE + "[models.mlp]\nmin_sqnr_db = 'high'\n", "must be a finite number"),
    ("[defaults\n", "not valid TOML"),
])
def test_invalid_threshold_data_names_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ThresholdError, match=message) as caught:
        Thresholds.load(path)
    assert str(path) in str(caught.value)


def test_shipped_thresholds_load():
    assert Thresholds.load().for_cell("ptq_static", "mlp")["min_sqnr_db"] > 0
