"""Eager mode: QuantStub/DeQuantStub, module fusion and a qconfig per module."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
import torch.ao.quantization as tq
from torch import nn

from matrix.cell import Stage
from matrix.modes import Mode, Quantized, calibrate, register, train
from matrix.modes.simulation import dynamic_simulation, qat_simulation, static_simulation

if TYPE_CHECKING:
    from matrix.runner import CellContext

NATIVE = ("fbgemm", "x86", "qnnpack", "onednn")
EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)


def _capture(ctx: CellContext, training: bool) -> nn.Module:
    with ctx.clock.stage(Stage.CAPTURE):
        model = copy.deepcopy(ctx.float_model).train(training)
        fuse = tq.fuse_modules_qat if training else tq.fuse_modules
        if ctx.spec.eager_fuse:
            model = fuse(model, [list(group) for group in ctx.spec.eager_fuse])
        if not ctx.spec.eager_stubs:
            model = tq.QuantWrapper(model)
        return model.train(training)


def _assign_qconfig(model: nn.Module, qconfig: tq.QConfig, embedding_qconfig: tq.QConfig) -> None:
    model.qconfig = qconfig
    for module in model.modules():
        if isinstance(module, EMBEDDINGS):
            module.qconfig = embedding_qconfig


def quantize(ctx: CellContext) -> Quantized:
    engine = ctx.backend.name
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
            _assign_qconfig(model, tq.get_default_qconfig(engine), tq.float_qparams_weight_only_qconfig)
            tq.prepare(model, inplace=True)
        calibrate(model, ctx)
        with ctx.clock.stage(Stage.CONVERT):
            simulation = static_simulation(model)
            quantized = tq.convert(model)
        return Quantized(quantized, simulation, "calibrated observers as fixed fake-quants")
    model = _capture(ctx, training=True)
    with ctx.clock.stage(Stage.PREPARE):
        _assign_qconfig(model, tq.get_default_qat_qconfig(engine), tq.default_embedding_qat_qconfig)
        tq.prepare_qat(model, inplace=True)
    train(model, ctx)
    with ctx.clock.stage(Stage.CONVERT):
        simulation = qat_simulation(model)
        quantized = tq.convert(model.eval())
    return Quantized(quantized, simulation, "the trained QAT model, fake-quants frozen")


register(Mode(
    "eager", "eager mode: QuantStub/DeQuantStub, fuse_modules, qconfig, prepare/convert",
    backends=NATIVE, schemes=("ptq_static", "ptq_dynamic", "qat"), quantize=quantize,
))
