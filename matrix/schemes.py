"""The scheme axis: how a model is brought to integer arithmetic (or half precision), and the
float scheme every quantized cell of a backend is read against."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scheme:
    name: str
    description: str
    calibrates: bool = False
    trains: bool = False
    # False for the float scheme: its cell judges the export (float parity), a quantized op in
    # its artifact is the harness's error, and it is not timed against itself.
    quantizes: bool = True


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
            "float",
            "no quantization: the float model exported and deployed as it is, against PyTorch's float "
            "output (float parity: is the export faithful)",
            quantizes=False,
        ),
        Scheme(
            "qat",
            "quantization-aware training: fake-quant inserted, a few training steps, then convert",
            trains=True,
        ),
    )
}
