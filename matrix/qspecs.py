"""The qspec axis: dtype, range, granularity and observer of a quantization config.

``default`` is the backend's own default qconfig (or quantizer config): the
baseline every mode and backend can express.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NATIVE = ("fbgemm", "x86", "qnnpack", "onednn")
# The knobs of a quantization config are crossed with these models only: a conv path, a
# linear path and a depthwise block are where a knob shows; operators and the other models
# run the default qspec.
KNOB_MODELS = ("conv_bn_relu", "mlp", "depthwise_separable")
# Which backends each torch mode can express knobs for (matrix/qconfigs.py).
KNOB_TARGETS = {"eager": NATIVE, "fx": NATIVE, "pt2e": ("inductor", "onnxruntime")}


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
    # Changes to the backend's default config (matrix/qconfigs.py); empty for named recipes.
    knobs: dict[str, str] = field(default_factory=dict)
    models: tuple[str, ...] | None = None
    # mode -> the backends that mode can express this qspec for (None: any the mode targets).
    targets: dict[str, tuple[str, ...]] | None = None
    # mode -> the schemes that mode can express this qspec for (else ``schemes``).
    mode_schemes: dict[str, tuple[str, ...]] | None = None

    def applies(self, mode: str, backend: str, scheme: str | None = None, model: str | None = None) -> bool:
        return (
            (self.modes is None or mode in self.modes)
            and (self.backends is None or backend in self.backends)
            and (scheme is None or scheme in ((self.mode_schemes or {}).get(mode) or self.schemes or (scheme,)))
            and (self.models is None or model is None or model in self.models)
            and (self.targets is None or backend in self.targets.get(mode, ()))
        )


DEFAULT = "default"
STATIC_AND_QAT = ("ptq_static", "qat")


def knob(name: str, description: str, knobs: dict[str, str], schemes: tuple[str, ...] = STATIC_AND_QAT,
         modes: tuple[str, ...] = ("eager", "fx", "pt2e"), also: dict[str, tuple[str, ...]] | None = None,
         mode_schemes: dict[str, tuple[str, ...]] | None = None) -> QSpec:
    """A qspec that changes the named knobs of the backend's default config; ``also`` adds
    backends whose own quantizer config has this knob (and no other)."""
    targets = {m: KNOB_TARGETS.get(m, ()) + (also or {}).get(m, ()) for m in {*modes, *(also or {})}}
    return QSpec(name, description, modes=(*modes, *(m for m in also or {} if m not in modes)), schemes=schemes,
                 knobs=knobs, models=KNOB_MODELS, targets=targets, mode_schemes=mode_schemes)


PT2E_BACKENDS = ("inductor", "onnxruntime", "litert", "executorch_xnnpack")


def path(name: str, description: str, schemes: tuple[str, ...], backends: tuple[str, ...]) -> QSpec:
    return QSpec(name, description, modes=("conversion",), backends=backends, schemes=schemes, models=KNOB_MODELS)


# The conversion mode's paths (matrix/modes/conversion.py), one qspec each.
CONVERSION_PATHS = {q.name: q for q in (
    path("fx_float_to_pt2e", "FX-traced float model -> torch.export -> PT2E with the backend's quantizer",
         ("ptq_static", "qat"), PT2E_BACKENDS),
    path("fx_ptq_to_pt2e", "FX PTQ reference model (Q/DQ) -> torch.export -> deployed as a PT2E model",
         ("ptq_static",), PT2E_BACKENDS),
    path("fx_qat_to_pt2e", "FX QAT reference model (Q/DQ) -> torch.export -> deployed as a PT2E model",
         ("qat",), PT2E_BACKENDS),
    path("eager_observed_to_fx", "calibrated eager model (observers in place) traced by FX, then convert_fx",
         ("ptq_static",), NATIVE),
)}

# Quantizers whose config offers weight granularity alone (litert-torch's, ExecuTorch's XNNPACK).
GRANULARITY_ONLY = {"pt2e": ("litert", "executorch_xnnpack")}

KNOBS = (
    knob("w_per_tensor", "weights per-tensor symmetric int8", {"weights": "per_tensor"}, also=GRANULARITY_ONLY),
    knob("w_per_channel", "weights per-channel (per output channel) symmetric int8", {"weights": "per_channel"},
         also=GRANULARITY_ONLY),
    knob("w_restricted", "weights on [-127, 127] (symmetric restricted range)", {"weight_range": "restricted"}),
    knob("w_full_range", "weights on [-128, 127]", {"weight_range": "full"}),
    knob("w_affine", "weights affine (asymmetric: a zero point per channel or tensor)", {"weight_scheme": "affine"}),
    knob("a_symmetric", "activations per-tensor symmetric", {"activations": "symmetric"}),
    knob("a_int8", "activations signed int8 [-128, 127], affine", {"activations": "int8"}),
    knob("a_uint8", "activations unsigned [0, 255], affine, no reduce_range", {"activations": "uint8"}),
    knob("a_reduce_range", "activations on [0, 127] (reduce_range)", {"activations": "reduce_range"}),
    knob("a_int16", "activations int16 [-32768, 32767], weights int8", {"activations": "int16"}, modes=("pt2e",),
         also={"aeq": ("litert",), "keras": ("litert",)},
         mode_schemes={"aeq": ("ptq_static",), "keras": ("ptq_static",)}),
    knob("obs_minmax", "activation observer MinMaxObserver", {"activation_observer": "minmax"},
         schemes=("ptq_static",)),
    knob("obs_moving_average", "activation observer MovingAverageMinMaxObserver",
         {"activation_observer": "moving_average"}, schemes=("ptq_static",)),
    knob("obs_histogram", "activation observer HistogramObserver", {"activation_observer": "histogram"},
         schemes=("ptq_static",)),
    knob("obs_w_per_channel_minmax", "weight observer PerChannelMinMaxObserver",
         {"weight_observer": "per_channel_minmax"}, schemes=("ptq_static",)),
    knob("obs_w_moving_average_per_channel", "weight observer MovingAveragePerChannelMinMaxObserver",
         {"weight_observer": "moving_average_per_channel"}, schemes=("ptq_static",)),
    knob("fq_fake_quantize", "QAT fake-quant FakeQuantize (observer and fake-quant as separate ops)",
         {"fake_quant": "fake_quantize"}, schemes=("qat",)),
    knob("fq_fused", "QAT fake-quant FusedMovingAvgObsFakeQuantize", {"fake_quant": "fused"}, schemes=("qat",)),
    knob("fq_learnable", "QAT learnable step size (LSQ, _LearnableFakeQuantize), per-tensor weights",
         {"fake_quant": "learnable", "weights": "per_tensor"}, schemes=("qat",), modes=("eager", "fx")),
)

QSPECS: dict[str, QSpec] = {
    q.name: q
    for q in (
        QSpec(DEFAULT, "the backend's default qconfig / quantizer config"),
        *CONVERSION_PATHS.values(),
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
        *KNOBS,
        QSpec("nncf_torch", "NNCF quantizes the PyTorch module (nncf.quantize on nn.Module), then converted",
              modes=("nncf",), schemes=("ptq_static",)),
        QSpec("nncf_onnx", "NNCF quantizes the model exported to ONNX (nncf.quantize on the ModelProto)",
              modes=("nncf",), schemes=("ptq_static",)),
        QSpec("io_int8", "TFLiteConverter full-integer with int8 model inputs and outputs (inference_input_type)",
              modes=("keras",), schemes=("ptq_static",)),
    )
}
