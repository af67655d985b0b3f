"""The qspec axis: dtype, range, granularity and observer of a quantization config.

``default`` is the backend's own default qconfig (or quantizer config): the
baseline every mode and backend can express.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QSpec:
    name: str
    description: str
    modes: tuple[str, ...] | None = None
    backends: tuple[str, ...] | None = None
    schemes: tuple[str, ...] | None = None
    # How a backend that exports to ONNX exports: "dynamo" (torch.onnx.export's default) or
    # "torchscript" (the legacy exporter, dynamo=False, the one PyTorch's guide was written for).
    onnx_exporter: str = "dynamo"

    def applies(self, mode: str, backend: str, scheme: str | None = None) -> bool:
        return (
            (self.modes is None or mode in self.modes)
            and (self.backends is None or backend in self.backends)
            and (self.schemes is None or scheme is None or scheme in self.schemes)
        )


DEFAULT = "default"

QSPECS: dict[str, QSpec] = {
    q.name: q
    for q in (
        QSpec(DEFAULT, "the backend's default qconfig / quantizer config"),
        # ONNX Runtime's quantizer: its default is QDQ, per-tensor, int8 activations and weights.
        QSpec("per_channel", "ONNX Runtime quantizer, per-channel weights (QDQ for static)", modes=("ort",)),
        QSpec("qoperator", "ONNX Runtime quantize_static in QOperator format (QLinear* ops), per-tensor",
              modes=("ort",), schemes=("ptq_static",)),
        QSpec("qoperator_per_channel", "ONNX Runtime quantize_static in QOperator format, per-channel weights",
              modes=("ort",), schemes=("ptq_static",)),
        # The guide's "PyTorch observed QAT to ONNX quantized", without and with batch-norm folded.
        # The qconfig is the engine's version-0 QAT qconfig (FakeQuantize modules): the default
        # (version 1) FusedMovingAvgObsFakeQuantize runs aten._fused_moving_avg_obs_fq_helper,
        # which the dynamo ONNX exporter has no translation for (seen in torch 2.13).
        QSpec("observed", "the trained eager QAT model (version-0 fake-quants, no convert) exported as is",
              modes=("eager",), backends=("onnxruntime",), schemes=("qat",)),
        QSpec("observed_bn_folded",
              "the trained eager QAT model (version-0 fake-quants), batch-norm folded into the convs, exported",
              modes=("eager",), backends=("onnxruntime",), schemes=("qat",)),
        QSpec("observed_torchscript", "as observed, exported by the legacy TorchScript exporter (dynamo=False)",
              modes=("eager",), backends=("onnxruntime",), schemes=("qat",), onnx_exporter="torchscript"),
        QSpec("observed_bn_folded_torchscript",
              "as observed_bn_folded, exported by the legacy TorchScript exporter (dynamo=False)",
              modes=("eager",), backends=("onnxruntime",), schemes=("qat",), onnx_exporter="torchscript"),
        # The guide's ONNX Runtime split example: XNNPACKQuantizer plus a split whose outputs
        # share its input's quantization parameters.
        QSpec("split_shared", "XNNPACKQuantizer, and split outputs sharing the split input's qparams",
              modes=("pt2e",), backends=("onnxruntime",), schemes=("ptq_static",)),
    )
}
