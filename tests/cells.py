"""Hand-written cell records for the rendering tests (no backend runs)."""

from __future__ import annotations


def cell(model: str, mode: str, scheme: str, backend: str, status: str, kind: str = "model", **extra) -> dict:
    """A record as the plugin writes it; ``extra`` overrides or adds fields."""
    record = {
        "case_id": f"{model}-{mode}-{scheme}-{backend}", "model": model, "kind": kind, "mode": mode,
        "scheme": scheme, "qspec": "default", "backend": backend, "status": status, "stage": None,
        "error_type": None, "error_message": None, "reason": None, "metrics": {}, "quantized_ops": 0,
        "float_ops": 0, "timings": {"run": 0.5}, "verdict": "as_expected", "expected": {"status": "pass"},
        "documented": None, "nodeid": f"cases/test_matrix.py::test_cell[{model}-{mode}-{scheme}-{backend}]",
    }
    record.update(extra)
    return record
