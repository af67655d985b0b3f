"""Run folders: one JSON line per cell, ``env.json``, and reading them back."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import warnings
from importlib import metadata
from pathlib import Path

from matrix.vocabulary import LEGACY_VERDICTS, Record, record_problem, split_legacy_judgment

SUITE = Path(__file__).resolve().parent.parent
# What every run records the version of; each backend and mode adds the packages it declares.
CORE_PACKAGES = ("torch", "torchao", "numpy", "scikit-learn", "pytest", "pytest-xdist")


class RunError(ValueError):
    """A run folder or records file that cannot be read; names the file (and line)."""


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> frozenset[str]:
    """This machine's CPU feature flags as Linux names them (avx2, avx512_vnni, ...); empty when unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


# The flags a run records: the vector and matrix extensions int8 kernels choose their code by.
ISA_FLAGS = re.compile(r"^(sse4_\d|avx\w*|amx\w*|fma|f16c|asimd\w*|sve\w*|i8mm|dotprod|asimddp)$")


def _commit() -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(SUITE), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def environment(argv: list[str], label: str | None = None, threads: int | None = None,
                packages: tuple[str, ...] = CORE_PACKAGES, axes: dict[str, list[str]] | None = None) -> dict:
    """Versions of ``packages`` (read from package metadata, without importing), machine, suite
    commit, and ``axes``: the registry order of each axis, which the report's tables follow."""
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    import torch

    return {
        "label": label,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu(),
        "cores": os.cpu_count(),
        "cpu_flags": sorted(f for f in cpu_flags() if ISA_FLAGS.match(f)),
        "threads_per_worker": threads,
        "versions": versions,
        "torch_build": torch.__version__,
        "quantized_engines": list(torch.backends.quantized.supported_engines),
        "suite_commit": _commit(),
        "command": " ".join(argv),
        "axes": axes or {},
    }


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def append_record(path: Path, record: dict) -> None:
    """Append one line and flush it to disk at once, so a crash loses nothing written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(record, sort_keys=True, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


class TornRecord(UserWarning):
    """The last line of a records file was cut off mid-write (a killed worker) and is left out."""


def read_records(run: Path) -> list[Record]:
    """Every record of a run folder, in file order, with the words of older runs translated
    (pytest's verdicts; one status judging accuracy and fidelity together, split in two). A
    torn last line of a file is dropped with a :class:`TornRecord` warning naming the file and
    line; a malformed line anywhere else is a :class:`RunError` naming both."""
    files = sorted(run.glob("cells*.jsonl"))
    if not files:
        raise RunError(f"{run}: not a run folder (no cells*.jsonl records)")
    records = []
    for path in files:
        lines = path.read_text().splitlines()
        last = max((n for n, line in enumerate(lines, 1) if line.strip()), default=0)
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                if number == last:
                    warnings.warn(f"{path}:{number}: torn last line dropped ({exc.msg}): a cell cut off "
                                  "mid-write", TornRecord, stacklevel=2)
                    continue
                raise RunError(f"{path}:{number}: not a JSON record ({exc.msg})") from exc
            problem = record_problem(record)
            if problem:
                raise RunError(f"{path}:{number}: {problem}")
            if record.get("verdict") in LEGACY_VERDICTS:
                record["verdict"] = LEGACY_VERDICTS[record["verdict"]]
            split_legacy_judgment(record)
            records.append(record)
    return records


def read_environment(run: Path) -> dict:
    path = run / "env.json"
    if not path.exists():
        return {}
    try:
        env = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}: not JSON ({exc.msg})") from exc
    if not isinstance(env, dict):
        raise RunError(f"{path}: not a run's environment (expected a JSON object)")
    return env


def newest_run(reports: Path, label: str) -> Path:
    """The newest run folder under ``reports`` labelled ``label`` (named ``<date>-<time>-<label>``)."""
    runs = sorted(p for p in reports.glob(f"*-{label}") if p.is_dir() and any(p.glob("cells*.jsonl")))
    if not runs:
        raise RunError(f"{reports}: no run labelled {label!r}")
    return runs[-1].resolve()


def point_latest(reports: Path, run: Path) -> None:
    """Make ``reports/latest`` a symlink to the run folder."""
    link = reports / "latest"
    tmp = reports / f".latest.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(run.name)
    os.replace(tmp, link)
