"""Agree with the peers, or show why: ExecuTorch's own backend test suite beside this one.

    python benchmarks/peers.py                       # the default operators, static int8 per channel
    python benchmarks/peers.py --ops all             # every operator both suites test
    python benchmarks/peers.py --flow xnnpack_dynamic_int8_per_channel
    python benchmarks/peers.py --peer-json P.json --run reports/RUN   # tables from runs already made

ExecuTorch ships its backend test suite inside its wheel (``executorch/backends/test/suite``).
This script runs its operator tests with one XNNPACK flow, the way the suite reports itself
(pytest-json-report: each subtest's Result, Delegated Ops and output SNR, measured against the
suite's own quantized model before lowering), then runs this suite's PT2E cells of the same
operators on ``executorch_xnnpack``, and writes ``peers.md`` and ``peers.json`` (and the peer's
own report, ``peer-report.json``) into that run's folder: per operator, the peer's verdict beside
ours, whether the two agree on what ran in int8, and, where they do not, our cell's recorded
reason. It prints the table and what one case costs in each suite. Nothing here is a test: it
measures and prints.

ONNX Runtime's wheel ships no quantization tests (they live in its source repository's
``onnxruntime/test/python/quantization``), so ExecuTorch's suite is the only peer run here.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

SUITE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(SUITE))

from matrix.records import read_records  # noqa: E402

# ExecuTorch's operator test (backends/test/suite/operators/test_<name>.py) -> our operator model.
PEER_OPERATORS = {
    "adaptive_avgpool2d": "op_adaptive_avg_pool2d", "add": "op_add", "avgpool2d": "op_avg_pool2d", "cat": "op_cat",
    "clamp": "op_clamp", "conv1d": "op_conv1d", "conv2d": "op_conv2d", "conv3d": "op_conv3d",
    "convtranspose1d": "op_conv_transpose1d", "convtranspose2d": "op_conv_transpose2d", "elu": "op_elu",
    "embedding": "op_embedding", "embedding_bag": "op_embedding_bag", "gelu": "op_gelu",
    "hardsigmoid": "op_hardsigmoid", "hardswish": "op_hardswish", "hardtanh": "op_hardtanh",
    "leaky_relu": "op_leaky_relu", "linear": "op_linear", "lstm": "op_lstm", "maxpool2d": "op_max_pool2d",
    "mean": "op_mean", "mul": "op_mul", "permute": "op_permute", "relu": "op_relu", "reshape": "op_reshape",
    "sigmoid": "op_sigmoid", "silu": "op_silu", "tanh": "op_tanh", "transpose": "op_transpose",
    "upsample_bilinear2d": "op_interpolate_bilinear", "upsample_nearest2d": "op_interpolate_nearest",
}
# The ten operators of the first comparison, and the ops XNNPACK quantizes that it left out.
DEFAULT_OPS = ("add", "avgpool2d", "cat", "conv2d", "hardswish", "linear", "maxpool2d", "mean", "relu", "sigmoid",
               "mul", "conv1d", "convtranspose2d")
# The peer's flow -> the scheme of our cells it is beside.
FLOWS = {"xnnpack_static_int8_per_channel": "ptq_static", "xnnpack_dynamic_int8_per_channel": "ptq_dynamic"}
QDQ = ("quantized_decomposed::", "torchao::")
INT8_STATUSES = ("pass", "inaccurate")


def executorch_folder() -> Path:
    import executorch

    return Path(next(iter(executorch.__path__)))


def run_peer(ops: list[str], flow: str, workers: int, out: Path) -> float:
    """ExecuTorch's suite on ``ops`` with ``flow``; its JSON report in ``out``; the wall seconds.

    Its own folder is the root, with an empty ini and conftest lookup stopped there, so neither
    this suite's pyproject nor its plugin reaches the peer's session."""
    folder = executorch_folder()
    with tempfile.TemporaryDirectory() as empty:
        ini = Path(empty) / "pytest.ini"
        ini.write_text("[pytest]\n")
        tests = [f"backends/test/suite/operators/test_{op}.py" for op in ops]
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pytest", *tests, "-m", f"flow_{flow}", "-c", str(ini),
                        f"--rootdir={folder}", f"--confcutdir={folder}", "-p", "no:cacheprovider", "-q",
                        "-n", str(workers), "--json-report", f"--json-report-file={out}"],
                       cwd=folder, check=False, capture_output=True)
        return time.perf_counter() - start


def run_ours(models: list[str], scheme: str, workers: int, label: str) -> tuple[Path, float]:
    """This suite's PT2E cells of ``models`` on executorch_xnnpack; (run folder, wall seconds)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", f"--rootdir={SUITE}", "-q", "-p", "no:randomly",
                    "-n", str(workers), "--models", ",".join(models), "--modes", "pt2e", "--schemes", scheme,
                    "--qspecs", "default", "--backends", "executorch_xnnpack", "--latency", "off",
                    "--run-label", label], cwd=SUITE, check=False, capture_output=True)
    return (SUITE / "reports" / "latest").resolve(), time.perf_counter() - start


def _snr(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def peer_summary(report: dict) -> dict[str, dict]:
    """Per operator: the subtests' results, whether the delegate took Q/DQ, delegated and
    undelegated ops, and the SNR range (against the peer's own quantized model)."""
    found: dict[str, dict] = {}
    for test in report.get("tests", []):
        op = test["nodeid"].split("/test_", 1)[1].split(".py", 1)[0]
        entry = found.setdefault(op, {"tests": Counter(), "results": Counter(), "delegated": Counter(),
                                      "undelegated": Counter(), "snr": [], "qdq_delegated": False})
        entry["tests"][test["outcome"]] += 1
        for sub in test.get("metadata", {}).get("subtests", []):
            entry["results"][sub.get("Result", "?")] += 1
            delegated = sub.get("Delegated Ops") or {}
            entry["delegated"].update(delegated)
            entry["undelegated"].update(sub.get("Undelegated Ops") or {})
            entry["qdq_delegated"] |= any(name.startswith(QDQ) for name in delegated)
            snr = _snr(sub.get("Output 0 SNR"))
            if snr is not None:
                entry["snr"].append(snr)
    return found


def ours_summary(run: Path) -> dict[str, dict]:
    return {r["model"]: r for r in read_records(run)}


def agreement(peer: dict | None, ours: dict | None) -> tuple[str, str]:
    """(agree / disagree / one side missing, why): whether the two suites saw the operator run
    in int8 inside the XNNPACK delegate; where they did not agree, our cell's recorded reason."""
    if peer is None or ours is None:
        return "missing", "the peer ran no test of it" if peer is None else "no cell of ours"
    ours_int8 = ours["status"] in INT8_STATUSES
    failed = peer["results"].get("Fail", 0) and not peer["results"].get("Pass", 0)
    reason = (ours.get("expected") or {}).get("reason") or ours.get("reason") or ""
    if failed:
        both = ours["status"] in ("fail", "crash", "timeout")
        return ("agree" if both else "disagree"), "both fail" if both else f"the peer fails; ours: {ours['status']}"
    if ours_int8 and peer["qdq_delegated"]:
        return "agree", "both run it on int8 inside the XNNPACK delegate"
    if not ours_int8 and not peer["qdq_delegated"]:
        where = "inside the delegate" if peer["delegated"] else "outside XNNPACK, in portable kernels"
        return "agree", (f"both run it in float ({where}); the peer's Pass compares the program with its own "
                         "quantized model, which holds no Q/DQ for this operator, so a float run passes: ours "
                         f"says {ours['status']}")
    if peer["qdq_delegated"]:
        return "disagree", ("the peer's delegate takes Q/DQ around it, ours counts no int8 compute op"
                            + (f": {reason}" if reason else " and names no reason"))
    return "disagree", "ours counts int8 compute, the peer's delegate took no Q/DQ"


def snr_range(values: list[float]) -> str:
    if not values:
        return ""
    low, high = min(values), max(values)
    show = lambda v: "inf" if math.isinf(v) else f"{v:.0f}"  # noqa: E731
    return show(low) if low == high else f"{show(low)}-{show(high)}"


def rows(peer: dict[str, dict], ours: dict[str, dict], ops: list[str]) -> list[dict]:
    found = []
    for op in ops:
        mine, theirs = ours.get(PEER_OPERATORS[op]), peer.get(op)
        verdict, why = agreement(theirs, mine)
        found.append({
            "op": op, "model": PEER_OPERATORS[op],
            "peer_result": dict(theirs["results"]) if theirs else None,
            "peer_delegated": bool(theirs and theirs["delegated"]),
            "peer_qdq_delegated": bool(theirs and theirs["qdq_delegated"]),
            "peer_snr_db": snr_range(theirs["snr"]) if theirs else "",
            "peer_delegated_ops": dict(theirs["delegated"]) if theirs else {},
            "ours_status": mine["status"] if mine else None,
            "ours_quantized_ops": dict((mine or {}).get("op_counts", {}).get("quantized", {})),
            "ours_sqnr_db": (mine or {}).get("metrics", {}).get("sqnr_db"),
            "ours_steps_vs_sim": (mine or {}).get("metrics", {}).get("lsb_err_vs_sim"),
            "agreement": verdict, "why": why,
        })
    return found


def _number(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def markdown(found: list[dict], flow: str, costs: dict[str, float]) -> str:
    lines = [f"# ExecuTorch's backend test suite beside qmatrix (flow `{flow}`)", "",
             "The peer's SNR compares the lowered program with its own quantized model before lowering (so it is "
             "fidelity, and `inf` is exact); ours compares with float (SQNR) and with the mode's simulation "
             "(steps). *Q/DQ delegated* says the XNNPACK delegate took quantize/dequantize nodes, the peer's sign "
             "of int8.", "",
             "| op | peer result | peer delegated | Q/DQ delegated | peer SNR dB | ours | our int8 ops | SQNR dB "
             "| steps vs sim | agreement | why |", "|" + "---|" * 11]
    for row in found:
        result = ", ".join(f"{k} {v}" for k, v in sorted((row["peer_result"] or {}).items())) or "-"
        int8 = ", ".join(f"{k} {v}" for k, v in row["ours_quantized_ops"].items()) or "-"
        why = row["why"].replace("|", "\\|")
        lines.append(f"| {row['op']} | {result} | {'yes' if row['peer_delegated'] else 'no'} | "
                     f"{'yes' if row['peer_qdq_delegated'] else 'no'} | {row['peer_snr_db']} | {row['ours_status']} | "
                     f"{int8} | {_number(row['ours_sqnr_db'], 1)} | {_number(row['ours_steps_vs_sim'], 2)} | "
                     f"{row['agreement']} | {why} |")
    lines += ["", "| suite | cases | wall s | s per case |", "|---|---|---|---|"]
    for name in ("peer", "ours"):
        cases, wall = costs[f"{name}_cases"], costs[f"{name}_wall_s"]
        per_case = f"{wall / cases:.1f}" if wall and cases else "-"
        lines.append(f"| {name} | {cases} | {f'{wall:.0f}' if wall else '- (run earlier)'} | {per_case} |")
    if all(costs[key] for key in ("peer_cases", "ours_cases", "peer_wall_s", "ours_wall_s")):
        ratio = (costs["ours_wall_s"] / costs["ours_cases"]) / (costs["peer_wall_s"] / costs["peer_cases"])
        lines += ["", f"One of our cells costs {ratio:.2f}x one peer case (goal: at most 1), each suite's session "
                  "start-up included."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", default=",".join(DEFAULT_OPS),
                        help="comma-separated ExecuTorch operator tests, or 'all' (default: %(default)s)")
    parser.add_argument("--flow", default="xnnpack_static_int8_per_channel", choices=sorted(FLOWS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--peer-json", type=Path, help="the peer's pytest-json-report of a run already made")
    parser.add_argument("--run", type=Path, help="our run folder of a run already made")
    args = parser.parse_args()
    ops = sorted(PEER_OPERATORS) if args.ops == "all" else [op.strip() for op in args.ops.split(",") if op.strip()]
    unknown = sorted(set(ops) - set(PEER_OPERATORS))
    if unknown:
        parser.error(f"no operator of ours for ExecuTorch's test(s) {unknown}; known: {sorted(PEER_OPERATORS)}")
    costs: dict[str, float | None] = {"peer_wall_s": None, "ours_wall_s": None}
    peer_json = args.peer_json
    if peer_json is None:
        peer_json = Path(tempfile.mkdtemp()) / "peer.json"
        costs["peer_wall_s"] = run_peer(ops, args.flow, args.workers, peer_json)
    if not peer_json.is_file():
        print(f"the peer's suite wrote no report at {peer_json} (is pytest-json-report installed?)", file=sys.stderr)
        return 1
    report = json.loads(peer_json.read_text())
    run = args.run
    if run is None:
        run, costs["ours_wall_s"] = run_ours(sorted({PEER_OPERATORS[op] for op in ops}), FLOWS[args.flow],
                                             args.workers, "peers")
    peer, ours = peer_summary(report), ours_summary(run)
    costs["peer_cases"] = sum(sum(entry["results"].values()) for entry in peer.values())
    costs["ours_cases"] = len(ours)
    found = rows(peer, ours, ops)
    text = markdown(found, args.flow, costs)
    (run / "peer-report.json").write_text(json.dumps(report))  # the peer's own report, to render again
    (run / "peers.md").write_text(text)
    (run / "peers.json").write_text(json.dumps({"flow": args.flow, "costs": costs, "operators": found}, indent=1))
    print(text)
    print(f"written: {run / 'peers.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
