"""The scheme axis: how a model is brought to integer arithmetic."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scheme:
    name: str
    description: str
    calibrates: bool = False
    trains: bool = False


SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in (
        Scheme(
            "ptq_static",
            "post-training static: weights and activations int8, activation ranges calibrated",
            calibrates=True,
        ),
        Scheme(
            "ptq_dynamic",
            "post-training dynamic: int8 weights, activations quantized on the fly per call",
        ),
        Scheme(
            "weight_only",
            "weight-only: int8 weights dequantized to float for a float kernel; activations stay float",
        ),
        Scheme(
            "fp16",
            "float16: weights (and, where the backend has the kernels, compute) in half precision",
        ),
        Scheme(
            "qat",
            "quantization-aware training: fake-quant inserted, a few training steps, then convert",
            trains=True,
        ),
    )
}
