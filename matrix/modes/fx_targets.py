"""FX BackendConfigs for backends that take PT2E models, built from their PT2E quantizers.

PyTorch ships BackendConfigs for its own engines only. For a backend whose quantization
is defined by a PT2E quantizer, this module writes the FX equivalent of that quantizer's
annotation config (the guide's "Custom FX BackendConfigs based on PT2E code"): the dtypes
and ranges of its QuantizationConfig as DTypeConfigs, its op list as BackendPatternConfigs,
and a QConfigMapping with the same observers, so prepare_fx / prepare_qat_fx observe what
the quantizer would annotate. An FX model prepared this way reaches the backend through the
FX -> PT2E transplant (:mod:`matrix.modes.transplant`).

- ``ai_edge_torch``: litert-torch's PT2EQuantizer (``get_symmetric_quantization_config``):
  int8 activations on [-128, 127] per tensor (affine), int8 weights on [-127, 127] per
  output channel (symmetric), its STATIC_OPS (linear, addmm, conv(+relu, +bn in QAT),
  adaptive_avg_pool2d, max_pool2d, add(+relu), mul(+relu), cat, GRU inputs and outputs),
  and its fixed qparams for sigmoid and softmax (scale 1/256, zero point -128).
- ``xnnpack``: ExecuTorch's XNNPACKQuantizer (its ``get_symmetric_quantization_config``):
  the same dtypes and ranges; its SUPPORTED_PATTERNS (linear(+relu), conv and
  conv_transpose (+relu, +bn in QAT), adaptive_avg_pool2d, add(+relu), mul(+relu), cat).
- ``openvino``: NNCF's OpenVINOQuantizer in its default mode (INT8_SYM), as it annotates:
  activations uint8 on [0, 255] per tensor, symmetric (zero point 128), HistogramObserver;
  weights int8 on [-128, 127] per output channel, symmetric; eps 1e-16. NNCF quantizes the
  inputs of the ops its CPU setup lists (convolution, matmul, add, multiply, concat, average
  pooling, ...): here linear, conv, matmul and bmm, add, mul, cat, adaptive average pooling.
  Two things a BackendConfig cannot say are left out: NNCF forces a signed int8 activation
  where its propagation asks for one (a per-graph choice; none did on the reference models),
  and it quantizes a depthwise convolution's input per channel.

Dynamic quantization is left out: the transplant carries static and QAT models.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.ao.quantization as tq
from torch.ao.quantization.backend_config import (
    BackendConfig,
    BackendPatternConfig,
    DTypeConfig,
    DTypeWithConstraints,
    ObservationType,
)
from torch.ao.quantization.backend_config import _common_operator_config_utils as common


@dataclass(frozen=True)
class Specs:
    """A quantizer's activation and weight specs, as observer arguments."""

    activation: dict
    weight: dict

    @staticmethod
    def constraints(spec: dict) -> DTypeWithConstraints:
        return DTypeWithConstraints(dtype=spec["dtype"], quant_min_lower_bound=spec["quant_min"],
                                    quant_max_upper_bound=spec["quant_max"])

    @property
    def weighted(self) -> list[DTypeConfig]:
        activation = self.constraints(self.activation)
        return [DTypeConfig(input_dtype=activation, output_dtype=activation,
                            weight_dtype=self.constraints(self.weight), bias_dtype=torch.float)]

    @property
    def unweighted(self) -> list[DTypeConfig]:
        activation = self.constraints(self.activation)
        return [DTypeConfig(input_dtype=activation, output_dtype=activation)]


# litert-torch's and XNNPACK's symmetric config: int8 activations on the full range (affine),
# weights restricted to [-127, 127]; eps 2**-12, as both quantizers set.
SYMMETRIC_INT8 = Specs(
    activation={"dtype": torch.qint8, "quant_min": -128, "quant_max": 127, "qscheme": torch.per_tensor_affine,
                "eps": 2**-12},
    weight={"dtype": torch.qint8, "quant_min": -127, "quant_max": 127, "qscheme": torch.per_channel_symmetric,
            "ch_axis": 0, "eps": 2**-12})
# OpenVINOQuantizer's INT8_SYM annotation (_get_torch_ao_qspec_from_nncf_config_for_ptq).
OPENVINO_INT8_SYM = Specs(
    activation={"dtype": torch.quint8, "quant_min": 0, "quant_max": 255, "qscheme": torch.per_tensor_symmetric,
                "eps": 1e-16},
    weight={"dtype": torch.qint8, "quant_min": -128, "quant_max": 127, "qscheme": torch.per_channel_symmetric,
            "ch_axis": 0, "eps": 1e-16})

# The guide's shared-qparams ops: litert-torch's pooling annotations (adaptive_avg_pool2d,
# max_pool2d share their input's qparams) and the ops that only move data.
SHARED_QPARAMS_OPS = (
    torch.nn.AdaptiveAvgPool2d, torch.nn.MaxPool2d, torch.nn.functional.adaptive_avg_pool2d,
    torch.nn.functional.max_pool2d, torch.flatten, torch.repeat_interleave, torch.transpose, torch.squeeze,
    torch.stack, torch.unsqueeze, "permute", "repeat", "repeat_interleave", "reshape", "resize_", "squeeze",
    "squeeze_", "transpose", "unsqueeze", "unsqueeze_", "view",
)
# OpenVINOQuantizer's op that shares qparams here: adaptive_avg_pool2d.
ADAPTIVE_POOL_OPS = (torch.nn.AdaptiveAvgPool2d, torch.nn.functional.adaptive_avg_pool2d)
# ExecuTorch's XNNPACKQuantizer gives these their input's qparams after it annotates (propagate_annotation,
# _is_share_obs_or_fq_op): pooling, mean and the ops that only move data. XNNPACK builds a reshape only
# when its input and output qparams match: a flatten between a pool and a linear must share them.
XNNPACK_SHARED_QPARAMS_OPS = ADAPTIVE_POOL_OPS + (
    torch.nn.MaxPool2d, torch.nn.functional.max_pool2d, torch.mean, torch.flatten, torch.permute, torch.transpose,
    torch.squeeze, "mean", "flatten", "permute", "reshape", "squeeze", "transpose", "view",
)
# Matrix products without weights, whose inputs NNCF quantizes (its MatMul).
MATMUL_OPS = (torch.matmul, torch.bmm)
# litert-torch's fixed-qparams ops (_annotate_fixed_qparams: sigmoid, softmax) on [0, 1], as the guide lists them.
FIXED_QPARAMS_OPS = (torch.nn.Sigmoid, torch.sigmoid, "sigmoid", "sigmoid_", torch.nn.Softmax)
ZERO_TO_ONE = {"scale": 1.0 / 256.0, "zero_point": -128}


def _addmm_configs(dtype_configs: list[DTypeConfig]) -> list[BackendPatternConfig]:
    return [BackendPatternConfig(torch.addmm)
            .set_observation_type(ObservationType.OUTPUT_USE_DIFFERENT_OBSERVER_AS_INPUT)
            .set_dtype_configs(dtype_configs)
            ._set_input_type_to_index({"bias": 0, "input": 1, "weight": 2})]


def _shared_qparams_configs(ops: tuple, dtype_configs: list[DTypeConfig]) -> list[BackendPatternConfig]:
    return [BackendPatternConfig(op).set_observation_type(ObservationType.OUTPUT_SHARE_OBSERVER_WITH_INPUT)
            .set_dtype_configs(dtype_configs) for op in ops]


def _fixed_qparams_configs(dtype_configs: list[DTypeConfig]) -> list[BackendPatternConfig]:
    constraints = DTypeWithConstraints(dtype=torch.qint8, quant_min_lower_bound=-128, quant_max_upper_bound=127,
                                       scale_exact_match=ZERO_TO_ONE["scale"],
                                       zero_point_exact_match=ZERO_TO_ONE["zero_point"])
    fixed = common._add_fixed_qparams_to_dtype_configs(dtype_configs, constraints)
    return [BackendPatternConfig(op).set_observation_type(ObservationType.OUTPUT_USE_DIFFERENT_OBSERVER_AS_INPUT)
            .set_dtype_configs(fixed) for op in FIXED_QPARAMS_OPS]


def _matmul_configs(dtype_configs: list[DTypeConfig]) -> list[BackendPatternConfig]:
    return [BackendPatternConfig(op).set_observation_type(ObservationType.OUTPUT_USE_DIFFERENT_OBSERVER_AS_INPUT)
            .set_dtype_configs(dtype_configs) for op in MATMUL_OPS]


def _gru_configs(dtype_configs: list[DTypeConfig]) -> list[BackendPatternConfig]:
    """litert-torch's gru_io_only: the GRU's input and output observed, its weights left float."""
    return [BackendPatternConfig(torch.nn.GRU)
            .set_observation_type(ObservationType.OUTPUT_USE_DIFFERENT_OBSERVER_AS_INPUT)
            .set_dtype_configs(dtype_configs)]


def ai_edge_torch_backend_config() -> BackendConfig:
    weighted, unweighted = SYMMETRIC_INT8.weighted, SYMMETRIC_INT8.unweighted
    return (BackendConfig("ai_edge_torch")
            .set_backend_pattern_configs(common._get_linear_configs(weighted))
            .set_backend_pattern_configs(_addmm_configs(weighted))
            .set_backend_pattern_configs(common._get_conv_configs(weighted))
            .set_backend_pattern_configs(common._get_binary_op_configs(unweighted))
            .set_backend_pattern_config(common._get_cat_config(unweighted))
            .set_backend_pattern_configs(_fixed_qparams_configs(unweighted))
            .set_backend_pattern_configs(_shared_qparams_configs(SHARED_QPARAMS_OPS, unweighted))
            .set_backend_pattern_configs(common._get_tensor_info_op_configs(unweighted))
            .set_backend_pattern_configs(_gru_configs(unweighted)))


def _xnnpack_patterns(name: str, specs: Specs, shared: tuple = ADAPTIVE_POOL_OPS) -> BackendConfig:
    weighted, unweighted = specs.weighted, specs.unweighted
    return (BackendConfig(name)
            .set_backend_pattern_configs(common._get_linear_configs(weighted))
            .set_backend_pattern_configs(common._get_conv_configs(weighted))
            .set_backend_pattern_configs(common._get_binary_op_configs(unweighted))
            .set_backend_pattern_config(common._get_cat_config(unweighted))
            .set_backend_pattern_configs(_shared_qparams_configs(shared, unweighted)))


def xnnpack_backend_config() -> BackendConfig:
    return _xnnpack_patterns("xnnpack", SYMMETRIC_INT8, XNNPACK_SHARED_QPARAMS_OPS)


def openvino_backend_config() -> BackendConfig:
    return _xnnpack_patterns("openvino", OPENVINO_INT8_SYM).set_backend_pattern_configs(
        _matmul_configs(OPENVINO_INT8_SYM.unweighted))


def _qconfig(qat: bool, specs: Specs) -> tq.QConfig:
    """The quantizer's specs in torch.ao's observers: HistogramObserver and
    PerChannelMinMaxObserver for PTQ (what all three quantizers use), FusedMovingAvgObsFakeQuantize
    over moving-average observers for QAT."""
    activation, weight = specs.activation, specs.weight
    if qat:
        return tq.QConfig(
            activation=tq.FusedMovingAvgObsFakeQuantize.with_args(
                observer=tq.MovingAverageMinMaxObserver, **activation),
            weight=tq.FusedMovingAvgObsFakeQuantize.with_args(
                observer=tq.MovingAveragePerChannelMinMaxObserver, **weight))
    return tq.QConfig(activation=tq.HistogramObserver.with_args(**activation),
                      weight=tq.PerChannelMinMaxObserver.with_args(**weight))


def _fixed_qconfig(qat: bool) -> tq.QConfig:
    observer = tq.FixedQParamsObserver.with_args(dtype=torch.qint8, quant_min=-128, quant_max=127, **ZERO_TO_ONE)
    activation = tq.FixedQParamsFakeQuantize.with_args(observer=observer) if qat else observer
    return tq.QConfig(activation=activation, weight=tq.default_weight_observer)


def qconfig_mapping(scheme: str, specs: Specs, fixed_qparams: bool) -> tq.QConfigMapping:
    qat = scheme == "qat"
    mapping = tq.QConfigMapping().set_global(_qconfig(qat, specs))
    if fixed_qparams:
        for op in FIXED_QPARAMS_OPS:
            mapping.set_object_type(op, _fixed_qconfig(qat))
    return mapping


@dataclass(frozen=True)
class FXTarget:
    """An FX BackendConfig and the QConfigMapping that matches it, after a PT2E quantizer."""

    name: str
    quantizer: str  # the PT2E quantizer it follows, and where
    backend_config: Callable[[], BackendConfig]
    qconfig_mapping: Callable[[str], tq.QConfigMapping]  # scheme name -> mapping


FX_TARGETS = {t.name: t for t in (
    FXTarget("ai_edge_torch", "litert_torch.quantize.pt2e_quantizer.PT2EQuantizer",
             ai_edge_torch_backend_config,
             functools.partial(qconfig_mapping, specs=SYMMETRIC_INT8, fixed_qparams=True)),
    FXTarget("xnnpack", "executorch.backends.xnnpack.quantizer.xnnpack_quantizer.XNNPACKQuantizer",
             xnnpack_backend_config,
             functools.partial(qconfig_mapping, specs=SYMMETRIC_INT8, fixed_qparams=False)),
    FXTarget("openvino", "executorch.backends.openvino.quantizer.quantizer.OpenVINOQuantizer",
             openvino_backend_config,
             functools.partial(qconfig_mapping, specs=OPENVINO_INT8_SYM, fixed_qparams=False)),
)}
