"""The qspec axis: how a cell's quantization differs from the backend's default.

A qspec is one of two things, kept apart: the **knobs** of a quantization config
(dtype, range, granularity, observer, fake-quant: matrix/qconfigs.py), or a **variant**
of a mode's code path, named by what it is: an export route (which ONNX exporter, the
QAT model exported unconverted), a quantizer option (ONNX Runtime's QOperator format,
NNCF quantizing the ONNX model) or a conversion path (FX -> PT2E). Modes and backends
read a variant's fields, never a qspec's name. ``default`` is the backend's own default
qconfig (or quantizer config): the baseline every mode and backend can express.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class Backend(Protocol):
    """What a qspec reads of a backend's declaration (:class:`matrix.contract.Backend`)."""

    family: str
    pt2e_knobs: str | None
    pt2e_quantizer: Any

    @property
    def native(self) -> bool: ...


# Whether a qspec reaches a backend under a mode, from what the backend declares.
Reach = Callable[[str, Backend], bool]
# The knobs of a quantization config are crossed with these models only: a conv path, a
# linear path and a depthwise block are where a knob shows; operators and the other models
# run the default qspec.
KNOB_MODELS = ("conv_bn_relu", "mlp", "depthwise_separable")


def knob_target(mode: str, backend: Backend, granularity: bool = False) -> bool:
    """Whether a torch mode can express a knob of matrix/qconfigs.py for a backend: eager and FX
    on PyTorch's engines (their qconfigs), PT2E where the backend's quantizer config takes the
    knobs (``granularity``: the knob is weight granularity, which more quantizers offer)."""
    if mode in ("eager", "fx"):
        return backend.native
    if mode == "pt2e":
        return backend.pt2e_knobs == "all" or (granularity and backend.pt2e_knobs == "granularity")
    return False


def native(mode: str, backend: Backend) -> bool:
    return backend.native


def pt2e_target(mode: str, backend: Backend) -> bool:
    return backend.pt2e_quantizer is not None


def int16_activations(qspec: QSpec) -> bool:
    """Whether a qspec asks for int16 activations (the TFLite converter's and ai-edge-quantizer's 16x8)."""
    return qspec.knobs.get("activations") == "int16"


def runs_onnx(mode: str, backend: Backend) -> bool:
    return backend.family == "onnx"


def takes_onnx_of_engine(mode: str, backend: Backend) -> bool:
    """ONNX Runtime, and a backend that reads the ONNX of an engine's eager and FX models (OpenVINO)."""
    return runs_onnx(mode, backend) or backend.engine_via_onnx is not None


def reads_onnx(mode: str, backend: Backend) -> bool:
    """A backend of another family that reads ONNX (OpenVINO)."""
    return backend.family != "onnx" and "onnx" in backend.reads


# The class each class-choosing knob names, by knob and value (matrix/qconfigs.py builds them;
# the report's observer and fake-quantize class tables, the guide's, are rows of these).
CLASS_KNOBS = {
    "activation_observer": {"minmax": "MinMaxObserver", "moving_average": "MovingAverageMinMaxObserver",
                            "histogram": "HistogramObserver"},
    "weight_observer": {"per_channel_minmax": "PerChannelMinMaxObserver",
                        "moving_average_per_channel": "MovingAveragePerChannelMinMaxObserver"},
    "fake_quant": {"fake_quantize": "FakeQuantize", "fused": "FusedMovingAvgObsFakeQuantize",
                   "learnable": "_LearnableFakeQuantize"},
}

# The kinds of qspec.
KNOB, EXPORT_ROUTE, QUANTIZER_OPTION, CONVERSION_PATH = "knob", "export route", "quantizer option", "conversion path"


@dataclass(frozen=True)
class Variant:
    """What a mode variant changes in a mode's code path; the defaults are the mode's own path."""

    kind: str | None = None  # EXPORT_ROUTE, QUANTIZER_OPTION or CONVERSION_PATH; None: no variant
    # Export routes. How a backend that exports to ONNX exports: "dynamo" (torch.onnx.export's
    # default) or "torchscript" (the legacy exporter, dynamo=False, the one PyTorch's guide
    # was written for).
    onnx_exporter: str = "dynamo"
    # FX: an export route that takes convert_fx's quantized modules even where the backend takes
    # the QDQ reference model (ONNX Runtime, whose Q/DQ the dynamo exporter writes): the
    # TorchScript exporter's symbolics are for those, and a reference model's weight_qscheme in
    # its state_dict stops it.
    fx_quantized_modules: bool = False
    # Eager QAT: the trained model exported as is (version-0 fake-quants, no convert), and
    # batch-norm folded into the convs first.
    qat_unconverted: bool = False
    fold_bn: bool = False
    # Quantizer options. ONNX Runtime's quantizer: per-channel weights, QOperator format.
    per_channel: bool = False
    qoperator: bool = False
    # PT2E for ONNX Runtime: a split's outputs share its input's quantization parameters.
    share_split_qparams: bool = False
    # What nncf.quantize is given: "openvino" (the converted ov.Model), "torch" (the module), "onnx".
    nncf_input: str = "openvino"
    # OpenVINO: the PT2E model reaches it as ONNX (torch.onnx.export, read by its ONNX frontend)
    # rather than as an exported program (its PyTorch frontend).
    via_onnx: bool = False
    # The TFLite converter's model input and output type (inference_input_type): "float32" or "int8".
    tflite_io: str = "float32"
    # Conversion paths (matrix/modes/conversion.py): the path a model is carried along.
    conversion: str | None = None
    # torchao's quantize_ (matrix/modes/torchao.py): the weights' width and config family, "int8"
    # (the scheme's int8 config), "intx4" (the Intx configs, int4 in groups), "int4" (Int4WeightOnlyConfig)
    # or "float8" (the float8 configs).
    torchao_weight: str = "int8"

    @property
    def torchscript(self) -> bool:
        """The legacy TorchScript exporter's route to ONNX."""
        return self.onnx_exporter == "torchscript"


NO_VARIANT = Variant()


@dataclass(frozen=True)
class QSpec:
    name: str
    description: str
    modes: tuple[str, ...] | None = None
    # Which of the backends a mode reaches this qspec applies to (None: all of them).
    reaches: Reach | None = None
    schemes: tuple[str, ...] | None = None
    # Changes to the backend's default config (matrix/qconfigs.py); empty for a variant.
    knobs: dict[str, str] = field(default_factory=dict)
    variant: Variant = NO_VARIANT
    models: tuple[str, ...] | None = None
    # The kinds of model (matrix/vocabulary.py's KINDS) it is crossed with (None: every kind).
    kinds: tuple[str, ...] | None = None
    # mode -> the schemes that mode can express this qspec for (else ``schemes``).
    mode_schemes: dict[str, tuple[str, ...]] | None = None

    def applies(self, mode: str, backend: Backend, scheme: str | None = None, model: str | None = None,
                kind: str | None = None) -> bool:
        return (
            (self.modes is None or mode in self.modes)
            and (scheme is None or scheme in ((self.mode_schemes or {}).get(mode) or self.schemes or (scheme,)))
            and (self.models is None or model is None or model in self.models)
            and (self.kinds is None or kind is None or kind in self.kinds)
            and (self.reaches is None or self.reaches(mode, backend))
        )

    @property
    def kind(self) -> str | None:
        """KNOB, one of the variant kinds, or None for ``default``."""
        return KNOB if self.knobs else self.variant.kind


DEFAULT = "default"
STATIC_AND_QAT = ("ptq_static", "qat")


def knob(name: str, description: str, knobs: dict[str, str], schemes: tuple[str, ...] = STATIC_AND_QAT,
         modes: tuple[str, ...] = ("eager", "fx", "pt2e"), also: tuple[str, ...] = (),
         mode_schemes: dict[str, tuple[str, ...]] | None = None, granularity: bool = False) -> QSpec:
    """A qspec that changes the named knobs of the backend's default config, for the backends
    each torch mode can express them for (:func:`knob_target`); ``also`` adds modes whose own
    quantizer config has this knob, on every backend they reach."""

    def reaches(mode: str, backend: Backend) -> bool:
        return mode in also or knob_target(mode, backend, granularity)

    return QSpec(name, description, modes=(*modes, *(m for m in also if m not in modes)), schemes=schemes,
                 knobs=knobs, models=KNOB_MODELS, reaches=reaches, mode_schemes=mode_schemes)


def path(name: str, description: str, schemes: tuple[str, ...], reaches: Reach) -> QSpec:
    return QSpec(name, description, modes=("conversion",), reaches=reaches, schemes=schemes, models=KNOB_MODELS,
                 variant=Variant(CONVERSION_PATH, conversion=name))


def route(name: str, description: str, **changes: object) -> QSpec:
    """An export route of eager QAT to ONNX (the guide's "PyTorch observed QAT to ONNX quantized")."""
    return QSpec(name, description, modes=("eager",), reaches=runs_onnx, schemes=("qat",),
                 variant=Variant(EXPORT_ROUTE, qat_unconverted=True, **changes))


def option(name: str, description: str, mode: str, schemes: tuple[str, ...] | None = None,
           reaches: Reach | None = None, **changes: object) -> QSpec:
    """An option of a mode's quantizer."""
    return QSpec(name, description, modes=(mode,), reaches=reaches, schemes=schemes,
                 variant=Variant(QUANTIZER_OPTION, **changes))


# The conversion mode's paths (matrix/modes/conversion.py), one qspec each.
CONVERSION_PATHS = {q.name: q for q in (
    path("fx_float_to_pt2e", "FX-traced float model -> torch.export -> PT2E with the backend's quantizer",
         ("ptq_static", "qat"), pt2e_target),
    path("fx_ptq_to_pt2e", "FX PTQ reference model (Q/DQ) -> torch.export -> deployed as a PT2E model",
         ("ptq_static",), pt2e_target),
    path("fx_qat_to_pt2e", "FX QAT reference model (Q/DQ) -> torch.export -> deployed as a PT2E model",
         ("qat",), pt2e_target),
    path("fx_ptq_to_pt2e_transplant", "the guide's transplant: the FX-prepared model (x86 BackendConfig, quint8) "
         "captured by torch.export with FX's observers put back in, then convert_pt2e", ("ptq_static",), pt2e_target),
    path("fx_qat_to_pt2e_transplant", "the guide's transplant after FX QAT (x86 BackendConfig, quint8), trained on "
         "in PT2E, then convert_pt2e", ("qat",), pt2e_target),
    path("eager_observed_to_fx", "calibrated eager model (observers in place) traced by FX, then convert_fx",
         ("ptq_static",), native),
    path("eager_statistics_to_fx", "calibrated eager model's observer statistics loaded into the FX observers of "
         "prepare_fx with the same qconfig, then convert_fx", ("ptq_static",), native),
)}

KNOBS = (
    knob("w_per_tensor", "weights per-tensor symmetric int8", {"weights": "per_tensor"}, granularity=True),
    knob("w_per_channel", "weights per-channel (per output channel) symmetric int8", {"weights": "per_channel"},
         granularity=True),
    knob("w_restricted", "weights on [-127, 127] (symmetric restricted range)", {"weight_range": "restricted"}),
    knob("w_full_range", "weights on [-128, 127]", {"weight_range": "full"}),
    knob("w_affine", "weights affine (asymmetric: a zero point per channel or tensor)", {"weight_scheme": "affine"}),
    knob("a_symmetric", "activations per-tensor symmetric", {"activations": "symmetric"}),
    knob("a_int8", "activations signed int8 [-128, 127], affine", {"activations": "int8"}),
    knob("a_uint8", "activations unsigned [0, 255], affine, no reduce_range", {"activations": "uint8"}),
    knob("a_reduce_range", "activations on [0, 127] (reduce_range)", {"activations": "reduce_range"}),
    knob("a_int16", "activations int16 [-32768, 32767], weights int8", {"activations": "int16"}, modes=("pt2e",),
         also=("aeq", "keras", "onnx2tf"),
         mode_schemes={"aeq": ("ptq_static",), "keras": ("ptq_static",), "onnx2tf": ("ptq_static",)}),
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
        option("per_channel", "ONNX Runtime quantizer, per-channel weights (QDQ for static)", "ort",
               per_channel=True),
        option("qoperator", "ONNX Runtime quantize_static in QOperator format (QLinear* ops), per-tensor",
               "ort", ("ptq_static",), qoperator=True),
        option("qoperator_per_channel", "ONNX Runtime quantize_static in QOperator format, per-channel weights",
               "ort", ("ptq_static",), qoperator=True, per_channel=True),
        # The guide's "PyTorch observed QAT to ONNX quantized", without and with batch-norm folded.
        # The qconfig is the engine's version-0 QAT qconfig (FakeQuantize modules): the default
        # (version 1) FusedMovingAvgObsFakeQuantize runs aten._fused_moving_avg_obs_fq_helper,
        # which the dynamo ONNX exporter has no translation for (seen in torch 2.13).
        route("observed", "the trained eager QAT model (version-0 fake-quants, no convert) exported as is"),
        route("observed_bn_folded",
              "the trained eager QAT model (version-0 fake-quants), batch-norm folded into the convs, exported",
              fold_bn=True),
        route("observed_torchscript", "as observed, exported by the legacy TorchScript exporter (dynamo=False)",
              onnx_exporter="torchscript"),
        route("observed_bn_folded_torchscript",
              "as observed_bn_folded, exported by the legacy TorchScript exporter (dynamo=False)",
              fold_bn=True, onnx_exporter="torchscript"),
        # The guide exports eager- and FX-converted models with the TorchScript exporter; the
        # default route (dynamo) is the other. On the reference models: the operators' cells of
        # the default route say where each op stands already.
        QSpec("torchscript", "the converted model exported to ONNX by the legacy TorchScript exporter "
              "(dynamo=False), as the guide exports eager and FX models (FX: convert_fx's quantized modules)",
              modes=("eager", "fx"),
              reaches=takes_onnx_of_engine, kinds=("model",),
              variant=Variant(EXPORT_ROUTE, onnx_exporter="torchscript", fx_quantized_modules=True)),
        # The guide's ONNX Runtime split example: XNNPACKQuantizer plus a split whose outputs
        # share its input's quantization parameters.
        option("split_shared", "XNNPACKQuantizer, and split outputs sharing the split input's qparams",
               "pt2e", ("ptq_static",), runs_onnx, share_split_qparams=True),
        *KNOBS,
        QSpec("via_onnx", "OpenVINOQuantizer's converted model exported to ONNX (torch.onnx.export, dynamo) and "
              "read by OpenVINO's ONNX frontend", modes=("pt2e",), reaches=reads_onnx, schemes=STATIC_AND_QAT,
              kinds=("model",), variant=Variant(EXPORT_ROUTE, via_onnx=True)),
        option("nncf_torch", "NNCF quantizes the PyTorch module (nncf.quantize on nn.Module), then converted",
               "nncf", ("ptq_static",), nncf_input="torch"),
        option("nncf_onnx", "NNCF quantizes the model exported to ONNX (nncf.quantize on the ModelProto)",
               "nncf", ("ptq_static",), nncf_input="onnx"),
        QSpec("intx4", "torchao's Intx configs: int4 weights in groups of 32 (weight-only, or with int8 dynamic "
              "activations)", modes=("torchao",), schemes=("weight_only", "ptq_dynamic"),
              models=("mlp", "digits_mlp"),
              variant=Variant(QUANTIZER_OPTION, torchao_weight="intx4")),
        QSpec("int4", "torchao's Int4WeightOnlyConfig: int4 weights in groups of 32, its default packing",
              modes=("torchao",), schemes=("weight_only",), models=("mlp", "digits_mlp"),
              variant=Variant(QUANTIZER_OPTION, torchao_weight="int4")),
        QSpec("float8", "torchao's float8 configs: e4m3 weights (weight-only, or with float8 dynamic activations)",
              modes=("torchao",), schemes=("weight_only", "ptq_dynamic"), models=("mlp", "digits_mlp"),
              variant=Variant(QUANTIZER_OPTION, torchao_weight="float8")),
        option("io_int8", "TFLiteConverter full-integer with int8 model inputs and outputs (inference_input_type)",
               "keras", ("ptq_static",), tflite_io="int8"),
    )
}
