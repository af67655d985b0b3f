"""merge, diff and compare on small hand-written runs, and unreadable input."""

from __future__ import annotations

import json

import pytest

from matrix.cli import main
from matrix.reporting.compare import classify, diff_runs
from matrix.runs import load_run, merge_runs

ENV = {"label": None, "date": "2026-11-27T01:00:00+00:00", "python": "3.11.7",
       "versions": {"torch": "2.13.0", "torchao": "0.18.0"}}


def cell(name: str, status: str, sqnr: float | None = 30.0, **extra) -> dict:
    record = {"case_id": f"{name}-fx-ptq_static-x86", "model": name, "kind": "model", "mode": "fx",
              "scheme": "ptq_static", "qspec": "default", "backend": "x86", "status": status, "stage": None,
              "error_type": None, "error_message": None, "reason": None, "timings": {"run": 0.1},
              "metrics": {"sqnr_db": sqnr, "sqnr_sim_db": sqnr, "lsb_err_vs_sim": 0.5} if sqnr is not None else {},
              "quantized_ops": 2 if status in ("pass", "inaccurate") else 0, "verdict": "passed",
              "nodeid": f"cases/test_matrix.py::test_cell[{name}-fx-ptq_static-x86]"}
    record.update(extra)
    return record


def failed(name: str, stage: str, error: str = "RuntimeError") -> dict:
    return cell(name, "fail", None, stage=stage, error_type=error, error_message="no kernel")


def write_run(tmp_path, name: str, records: list[dict], env: dict | None = None, file: str = "cells-gw0.jsonl"):
    run = tmp_path / name
    run.mkdir(exist_ok=True)
    with open(run / file, "a") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)
    (run / "env.json").write_text(json.dumps({**ENV, **(env or {})}))
    return run


BASE = [cell("same", "pass", 30.0), cell("wobble", "pass", 30.0), cell("breaks", "pass"),
        failed("heals", "convert"), cell("falls_back", "pass"), cell("drops", "pass", 30.0),
        cell("gone", "pass"), failed("moves", "convert"), cell("missing_pkg", "pass")]
NEW = [cell("same", "pass", 30.0), cell("wobble", "pass", 30.6), failed("breaks", "run"),
       cell("heals", "pass"), cell("falls_back", "not_quantized", 300.0), cell("drops", "pass", 24.0),
       cell("added", "pass"), failed("moves", "run"), cell("missing_pkg", "unavailable", None)]


def case(name: str) -> str:
    return f"{name}-fx-ptq_static-x86"


def test_diff_classifies_every_kind_of_change(tmp_path):
    base = load_run(write_run(tmp_path, "base", BASE))
    new = load_run(write_run(tmp_path, "new", NEW, {"versions": {"torch": "2.14.0"}}))
    diff = diff_runs(base, new, tolerance=1.0)
    found = {c.case_id: (c.category, c.direction) for c in diff.changes}
    assert found == {
        case("breaks"): ("status", "regressed"), case("heals"): ("status", "improved"),
        case("falls_back"): ("not_quantized", "regressed"), case("drops"): ("sqnr", "regressed"),
        case("added"): ("added", "changed"), case("gone"): ("gone", "changed"),
        case("moves"): ("status", "changed"), case("missing_pkg"): ("status", "changed"),
    }
    assert diff.unchanged == 2, "same, and wobble (0.6 dB within the 1 dB tolerance)"
    assert classify(cell("x", "pass", 30.0), cell("x", "pass", 29.4), tolerance=0.5).direction == "regressed"
    assert classify(cell("x", "pass", 30.0), cell("x", "pass", 29.4), tolerance=1.0) is None
    faithful, departs = cell("x", "pass", fidelity="faithful"), cell("x", "pass", fidelity="departs")
    assert (classify(faithful, departs, 1.0).category, classify(faithful, departs, 1.0).direction) == \
        ("fidelity", "regressed"), "a new departure from the simulation is a regression"
    assert classify(departs, faithful, 1.0).direction == "improved"


def test_diff_exits_nonzero_on_a_regression_and_lists_exactly_the_changed_cells(tmp_path, capsys):
    base = write_run(tmp_path, "base", BASE)
    new = write_run(tmp_path, "new", NEW, {"versions": {"torch": "2.14.0", "torchao": "0.18.0"}})
    out = tmp_path / "diff"
    assert main(["diff", str(base), str(new), "-o", str(out)]) == 1
    text = capsys.readouterr().out
    assert "**3 cells regressed** (3 regressed, 1 improved, 4 changed)" in text
    for name in ("breaks", "heals", "falls_back", "drops", "added", "gone", "moves", "missing_pkg"):
        assert case(name) in text
    for name in ("same", "wobble"):
        assert case(name) not in text
    assert "| torch | 2.13.0 | 2.14.0 |" in [" ".join(line.split()) for line in text.splitlines()]
    assert "`pytest 'cases/test_matrix.py::test_cell[breaks-fx-ptq_static-x86]'`" in text
    assert "❌ fail at run: RuntimeError" in text
    assert (out / "diff.md").read_text() == text
    page = (out / "diff.html").read_text()
    assert case("falls_back") in page and 'class="regressed"' in page


def test_diff_exits_zero_when_nothing_regressed(tmp_path, capsys):
    base = write_run(tmp_path, "base", [failed("heals", "convert"), cell("same", "pass")])
    new = write_run(tmp_path, "new", [cell("heals", "pass"), cell("same", "pass"), cell("added", "pass")])
    assert main(["diff", str(base), str(new)]) == 0
    assert "**No regression** (0 regressed, 1 improved, 1 changed)" in capsys.readouterr().out
    assert main(["diff", str(base), str(base)]) == 0


def test_a_sqnr_drop_within_the_tolerance_is_no_regression(tmp_path, capsys):
    base = write_run(tmp_path, "base", [cell("drops", "pass", 30.0)])
    new = write_run(tmp_path, "new", [cell("drops", "pass", 27.0)])
    assert main(["diff", str(base), str(new)]) == 1
    assert main(["diff", str(base), str(new), "--tolerance", "5"]) == 0


def test_merge_joins_shards_and_names_conflicting_duplicates(tmp_path, capsys):
    first = write_run(tmp_path, "shard1", [cell("a", "pass"), cell("both", "pass"), cell("twice", "pass")],
                      {"date": "2026-11-27T01:00:00+00:00"})
    second = write_run(tmp_path, "shard2", [cell("b", "pass"), failed("both", "run"), cell("twice", "pass")],
                       {"date": "2026-11-27T02:00:00+00:00"})
    out = tmp_path / "merged"
    assert main(["merge", str(second), str(first), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"{case('both')}: kept fail at run in {second}, dropped pass in {first}" in captured.err
    assert case("twice") not in captured.err, "identical duplicates are no conflict"
    merged = load_run(out)
    assert sorted(merged.by_case()) == sorted(case(n) for n in ("a", "b", "both", "twice"))
    assert merged.by_case()[case("both")]["status"] == "fail", "the newer run's record wins, whatever the order"
    assert len(merged.env["merge_conflicts"]) == 1
    report = (out / "report.md").read_text()
    assert "## Merged from" in report and "**conflict**" in report
    assert (out / "report.html").exists()
    assert main(["merge", str(first), str(second), "-o", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_merge_refuses_runs_of_different_environments(tmp_path, capsys):
    first = write_run(tmp_path, "torch213", [cell("a", "pass")])
    second = write_run(tmp_path, "torch214", [cell("b", "pass")], {"versions": {"torch": "2.14.0"}})
    out = tmp_path / "merged"
    assert main(["merge", str(first), str(second), "-o", str(out)]) == 2
    assert "versions differs" in capsys.readouterr().err
    assert not out.exists()


def test_merge_breaks_a_tie_of_dates_by_the_order_of_the_runs(tmp_path):
    first = load_run(write_run(tmp_path, "one", [cell("a", "pass"), failed("b", "run")]))
    second = load_run(write_run(tmp_path, "two", [cell("b", "pass"), cell("c", "pass")]))
    forward, backward = merge_runs([first, second]), merge_runs([second, first])
    assert [r["case_id"] for r in forward.records] == [r["case_id"] for r in backward.records]
    assert forward.records[1]["status"] == "pass", "same date: the later argument wins"
    assert backward.records[1]["status"] == "fail"


def test_compare_has_a_column_per_run_and_marks_differences(tmp_path, capsys):
    runs = [write_run(tmp_path, "a", [cell("x", "pass"), cell("y", "pass")],
                      {"label": "torch213", "cpu_flags": ["avx2", "avx512_vnni"]}),
            write_run(tmp_path, "b", [cell("x", "pass"), failed("y", "convert")], {"label": "torch214"}),
            write_run(tmp_path, "c", [cell("x", "pass")], {"label": "nightly"})]
    out = tmp_path / "compare"
    assert main(["compare", *map(str, runs), "-o", str(out)]) == 0
    rows = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    assert "| differs | cell | torch213 | torch214 | nightly |" in rows
    assert "| cpu flags | avx2 avx512_vnni | | |" in rows, "the instruction sets of each run's CPU"
    assert "| | x-fx-ptq_static-x86 | ✅ pass 30.0 dB | ✅ pass 30.0 dB | ✅ pass 30.0 dB |" in rows
    assert "| ≠ | y-fx-ptq_static-x86 | ✅ pass 30.0 dB | ❌ fail at convert: RuntimeError | · |" in rows
    page = (out / "compare.html").read_text()
    assert page.count("<td>≠</td>") == 1 and 'id="only-differing"' in page


def test_status_differences_group_by_backend_statuses_and_signature(tmp_path, capsys):
    """Cells that fail alike on one version form one group with its entry; a cell that some run judged
    worse is counted unexplained; a cell with one status everywhere is in no group."""
    known = {"verdict": "known", "expected": {"status": "fail", "reason": "no kernel on 2.5"}}
    old = [failed("x", "convert") | {"error_message": "no kernel for shape 3"} | known,
           failed("y", "convert") | {"error_message": "no kernel for shape 7"} | known,
           failed("z", "export", "TypeError") | {"verdict": "failed"}, cell("w", "pass"),
           cell("v", "unavailable") | {"verdict": "unavailable", "reason": "no such package",
                                        "expected": {"status": "fail", "reason": "a cause at worst"}}]
    runs = [write_run(tmp_path, "new", [cell(n, "pass") for n in "xyzwv"], {"label": "torch213"}),
            write_run(tmp_path, "old", old, {"label": "torch251"})]
    assert main(["compare", *map(str, runs)]) == 0
    rows = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    assert ("| x86 | ✅ pass | ❌ fail | convert: RuntimeError: no kernel for shape N | 2 | 0 | "
            "x-fx-ptq_static-x86, y-fx-ptq_static-x86 | no kernel on 2.5 |") in rows
    assert "| x86 | ✅ pass | ❌ fail | export: TypeError: no kernel | 1 | 1 | z-fx-ptq_static-x86 | |" in rows
    assert not any(line.startswith("| x86 |") and "w-fx" in line for line in rows)
    unavailable = next(line for line in rows if "v-fx-ptq_static-x86" in line)
    assert "a cause at worst" not in unavailable, "only an entry that explains a status is shown"


def test_unreadable_input_is_named_and_nothing_is_written(tmp_path, capsys):
    good = write_run(tmp_path, "good", [cell("a", "pass")])
    broken = write_run(tmp_path, "broken", [cell("a", "pass"), cell("b", "pass"), cell("c", "pass")])
    path = broken / "cells-gw0.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[1][:-30] + "\n" + lines[2])
    out = tmp_path / "out"
    for command in ("diff", "compare", "merge"):
        assert main([command, str(good), str(broken), "-o", str(out)]) == 2
        assert f"{path}:2: not a JSON record" in capsys.readouterr().err
    assert not out.exists()
    assert main(["diff", str(good), str(tmp_path)]) == 2
    assert f"{tmp_path}: not a run folder" in capsys.readouterr().err


def test_a_record_without_a_case_id_is_foreign(tmp_path, capsys):
    run = write_run(tmp_path, "foreign", [{"name": "something else"}])
    assert main(["report", str(run)]) == 2
    assert "cells-gw0.jsonl:1: not a cell record" in capsys.readouterr().err
    assert not (run / "report.html").exists()


@pytest.mark.parametrize("text", ["{not json", "[]"])
def test_a_broken_env_json_is_named(tmp_path, capsys, text):
    run = write_run(tmp_path, "run", [cell("a", "pass")])
    (run / "env.json").write_text(text)
    assert main(["compare", str(run)]) == 2
    assert "env.json" in capsys.readouterr().err


def test_newest_run_of_a_label(tmp_path):
    from matrix.records import RunError, newest_run

    for name in ("20261101-010101-torch213", "20261102-010101-torch213", "20261103-010101-torch214"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "cells-main.jsonl").write_text("")
    (tmp_path / "20261104-010101-torch213").mkdir()  # an empty folder is not a run
    assert newest_run(tmp_path, "torch213").name == "20261102-010101-torch213"
    with pytest.raises(RunError, match="no run labelled 'torch251'"):
        newest_run(tmp_path, "torch251")


@pytest.mark.parametrize(("change", "named"), [
    ({"status": "passed"}, "unknown status 'passed'"),
    ({"verdict": "green"}, "unknown verdict 'green'"),
    ({"backend": None}, "not a cell record (no backend)"),
])
def test_a_record_outside_the_vocabulary_is_named_with_its_line(tmp_path, capsys, change, named):
    run = write_run(tmp_path, "odd", [cell("a", "pass"), {**cell("b", "pass"), **change}])
    assert main(["report", str(run)]) == 2
    assert f"cells-gw0.jsonl:2: {named}" in capsys.readouterr().err
    assert not (run / "report.html").exists()


def test_a_record_judged_by_one_status_reads_as_two_judgments_and_the_report_counts_both(tmp_path):
    from matrix.records import read_records

    departs = [{"metric": "lsb_err_vs_sim", "value": 20.0, "limit": 8.0}]
    run = write_run(tmp_path, "old", [
        cell("a", "inaccurate", reason="lsb_err_vs_sim 20.0 > 8.0", violations=departs),
        cell("b", "inaccurate", 10.0, reason="sqnr_db 10.0 < 15.0; lsb_err_vs_sim 20.0 > 8.0",
             violations=[{"metric": "sqnr_db", "value": 10.0, "limit": 15.0}, *departs]),
        cell("c", "pass", violations=[]),
        cell("d", "inaccurate", 9.0, reason="sqnr_db 9.0 < 15.0; lsb_err_vs_sim 9.5 > 8.0"),  # older still
        cell("e", "inaccurate", reason="over a limit"),  # nothing to split it by
    ])
    found = {r["model"]: r for r in read_records(run)}
    assert (found["a"]["status"], found["a"]["fidelity"], found["a"]["reason"]) == ("pass", "departs", None)
    assert found["a"]["fidelity_reason"] == "lsb_err_vs_sim 20.0 > 8.0"
    assert (found["b"]["status"], found["b"]["fidelity"], found["b"]["reason"]) == ("inaccurate", "departs",
                                                                                    "sqnr_db 10.0 < 15.0")
    assert (found["c"]["status"], found["c"]["fidelity"]) == ("pass", "faithful")
    assert (found["d"]["status"], found["d"]["fidelity"], found["d"]["reason"]) == ("inaccurate", "departs",
                                                                                    "sqnr_db 9.0 < 15.0")
    assert (found["e"]["status"], found["e"].get("fidelity")) == ("inaccurate", None)
    assert main(["report", str(run)]) == 0
    text = (run / "report.md").read_text()
    assert "faithful 1, departs 3 (1 of the 2 passing cells)" in text
    section = text.split("## Fidelity to the simulation")[1].split("\n## ")[0]
    assert "a-fx-ptq_static-x86" in section and "b-fx-ptq_static-x86" in section and "c-fx" not in section
    page = (run / "report.html").read_text()
    assert 'id="fidelity"' in page and 'data-axis="fidelity"' in page
