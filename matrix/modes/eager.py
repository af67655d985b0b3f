"""Eager mode: QuantStub/DeQuantStub, module fusion and a qconfig per module."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
import torch.ao.nn.intrinsic.qat as nniqat
import torch.ao.nn.qat as nnqat
import torch.ao.quantization as tq
from torch import nn

from matrix.contract import Quantized
from matrix.modes import Mode, calibrate, register, takes_engine_models, torchscript_route, train
from matrix.modes.simulation import (
    RECURRENT,
    TRANSPOSED,
    dynamic_simulation,
    qat_simulation,
    quantize_weights,
    static_simulation,
)
from matrix.qconfigs import torch_qconfig
from matrix.vocabulary import Stage

if TYPE_CHECKING:
    from matrix.contract import CellContext

EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)
# The guide's "PyTorch observed QAT to ONNX quantized": the trained QAT model itself is
# deployed (its fake-quants export as Q/DQ), as it is or with batch-norm folded first.
FOLDED_QAT = {
    nniqat.ConvBn1d: nnqat.Conv1d, nniqat.ConvBn2d: nnqat.Conv2d, nniqat.ConvBn3d: nnqat.Conv3d,
    nniqat.ConvBnReLU1d: nniqat.ConvReLU1d, nniqat.ConvBnReLU2d: nniqat.ConvReLU2d,
    nniqat.ConvBnReLU3d: nniqat.ConvReLU3d,
}


def _capture(ctx: CellContext, training: bool) -> nn.Module:
    with ctx.clock.stage(Stage.CAPTURE):
        model = copy.deepcopy(ctx.float_model).train(training)
        fuse = tq.fuse_modules_qat if training else tq.fuse_modules
        if ctx.spec.eager_fuse:
            model = fuse(model, [list(group) for group in ctx.spec.eager_fuse])
        if not ctx.spec.eager_stubs:
            model = FloatInputsWrapper(model, quantize_input=ctx.data.calibration[0][0].is_floating_point())
        return model.train(training)


class FloatInputsWrapper(tq.QuantWrapper):
    """QuantStub before the model, DeQuantStub after it: the one placement eager mode can make
    without knowing the model. An integer input (token ids, ``quantize_input=False``: decided
    from the model's inputs once, so FX can trace the wrapper) passes unquantized; what the model
    computes from it (an embedding's output) is then float where eager mode's quantized modules
    expect a quantized tensor, unless the model places its own QuantStub."""

    def __init__(self, module: nn.Module, quantize_input: bool = True) -> None:
        super().__init__(module)
        self.quantize_input = quantize_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.module(self.quant(x) if self.quantize_input else x))


def qconfig_for(ctx: CellContext, qat: bool) -> tq.QConfig:
    """The engine's default (QAT) qconfig, with the cell's qspec knobs applied."""
    engine = ctx.backend.qconfig_engine
    if ctx.qspec.knobs:
        return torch_qconfig(ctx.qspec.knobs, engine, qat)
    return tq.get_default_qat_qconfig(engine) if qat else tq.get_default_qconfig(engine)


def _assign_qconfig(model: nn.Module, qconfig: tq.QConfig, embedding_qconfig: tq.QConfig) -> None:
    model.qconfig = qconfig
    for module in model.modules():
        if isinstance(module, EMBEDDINGS):
            module.qconfig = embedding_qconfig


def quantize(ctx: CellContext) -> Quantized:
    engine = ctx.backend.qconfig_engine
    scheme = ctx.scheme.name
    if scheme == "ptq_dynamic":
        with ctx.clock.stage(Stage.CAPTURE):
            model = copy.deepcopy(ctx.float_model).eval()
        with ctx.clock.stage(Stage.CONVERT):
            simulation = dynamic_simulation(model)
            quantized = tq.quantize_dynamic(model, dtype=torch.qint8)
        return Quantized(quantized, simulation, "weights QDQ, linear inputs fake-quantized per call")
    if scheme == "ptq_static":
        model = _capture(ctx, training=False)
        with ctx.clock.stage(Stage.PREPARE):
            _assign_qconfig(model, qconfig_for(ctx, qat=False), tq.float_qparams_weight_only_qconfig)
            tq.prepare(model, inplace=True)
        calibrate(model, ctx)
        with ctx.clock.stage(Stage.CONVERT):
            simulation = static_simulation(model)
            quantized = tq.convert(model)
        return Quantized(quantized, simulation, "calibrated observers as fixed fake-quants")
    model = _capture(ctx, training=True)
    with ctx.clock.stage(Stage.PREPARE):
        unconverted = ctx.qspec.variant.qat_unconverted
        version = 0 if unconverted else 1
        qconfig = qconfig_for(ctx, qat=True) if ctx.qspec.knobs else tq.get_default_qat_qconfig(engine, version)
        _assign_qconfig(model, qconfig, tq.default_embedding_qat_qconfig)
        tq.prepare_qat(model, inplace=True)
    train(model, ctx)
    with ctx.clock.stage(Stage.CONVERT):
        simulation = qat_simulation(model)
        quantized = observed_qat(model, ctx.qspec.variant.fold_bn) if unconverted else tq.convert(model.eval())
    return Quantized(quantized, simulation, "the trained QAT model, fake-quants frozen")


def observed_qat(trained: nn.Module, fold_bn: bool) -> nn.Module:
    """The trained QAT model with its observers frozen, batch-norm optionally folded."""
    model = copy.deepcopy(trained).eval()
    model.apply(tq.disable_observer)
    if fold_bn:
        for name, module in list(model.named_modules()):
            if type(module) in FOLDED_QAT:
                model.set_submodule(name, _folded(module))
    return model


def _folded(module: nn.Module) -> nn.Module:
    """A QAT conv-bn(-relu) as a QAT conv(-relu) with the batch-norm folded into its weights;
    keeps the trained weight fake-quant and the output's fake-quant (and its hook)."""
    folded = module.to_float()
    for part in (folded, *(folded if isinstance(folded, nn.Sequential) else ())):
        part.qconfig = module.qconfig
    qat = FOLDED_QAT[type(module)].from_float(folded)
    qat.weight_fake_quant = module.weight_fake_quant
    qat.activation_post_process = module.activation_post_process
    qat._forward_hooks = module._forward_hooks
    return qat.eval()


def covers(backend, kind: str, scheme: str, qspec) -> bool:
    """A backend with an engine takes every eager model; one that reads them as ONNX
    (``engine_via_onnx``), the TorchScript exporter's route only."""
    return backend.engine is not None or torchscript_route(qspec)


register(Mode(
    "eager", "eager mode: QuantStub/DeQuantStub, fuse_modules, qconfig, prepare/convert",
    reaches=takes_engine_models, schemes=("ptq_static", "ptq_dynamic", "qat"), quantize=quantize,
    covers=covers,
))


def recipe_simulation(ctx: CellContext, activation_bits: int = 8) -> nn.Module:
    """The PyTorch fake-quant of a TFLite-style recipe on the float model: per-tensor MinMax
    activations (int8 affine, or int16 symmetric), per-channel symmetric int8 weights on
    [-127, 127], conv-bn(-relu) fused, calibrated on the cell's calibration batches. The
    simulation of a quantizer that works outside PyTorch (TFLite's, ai-edge-quantizer's)."""
    from torch.ao.quantization import observer as ob

    model = _capture(ctx, training=False)
    if activation_bits == 16:
        activation = ob.MinMaxObserver.with_args(dtype=torch.qint32, qscheme=torch.per_tensor_symmetric,
                                                 quant_min=-32768, quant_max=32767)
    else:
        activation = ob.MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_affine)
    weight = ob.PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                                   quant_min=-127, quant_max=127)
    _assign_qconfig(model, tq.QConfig(activation=activation, weight=weight), tq.float_qparams_weight_only_qconfig)
    # Eager prepare refuses two layers the recipe quantizes: a per-channel weight observer on a
    # transposed convolution (prepared per tensor, then weights quantized per output channel, axis 1
    # of torch's layout, as TFLite's TRANSPOSE_CONV stores them), and a recurrent layer's tuple output
    # (left unobserved: its weights alone are quantized, per row).
    for module in model.modules():
        if isinstance(module, RECURRENT):
            module.qconfig = None
        elif isinstance(module, TRANSPOSED):
            if module.groups != 1:
                raise NotImplementedError(f"{type(module).__name__} with groups={module.groups}: the simulation "
                                          "quantizes transposed convolution weights per channel for groups=1 only")
            module.qconfig = tq.QConfig(activation=activation, weight=ob.MinMaxObserver.with_args(
                dtype=torch.qint8, qscheme=torch.per_tensor_symmetric))
    tq.prepare(model, inplace=True)
    calibrate(model, ctx)
    for module in model.modules():
        if isinstance(module, TRANSPOSED):
            module.qconfig = tq.QConfig(activation=activation, weight=weight.with_args(ch_axis=1))
    simulation = static_simulation(model)
    for module in simulation.modules():
        if isinstance(module, RECURRENT):
            quantize_weights(module, weight)
    return simulation
