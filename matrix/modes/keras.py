"""Keras: a reference model's Keras twin (models/keras.py) quantized by TensorFlow's tools.

Capture builds the twin with the PyTorch model's weights and checks that both agree in
float. PTQ is ``tf.lite.TFLiteConverter`` with ``Optimize.DEFAULT``: static (a
representative dataset of the calibration batches, ``TFLITE_BUILTINS_INT8``; float I/O,
or int8 I/O with the ``io_int8`` qspec; int16 activations with int8 weights with the
``a_int16`` qspec), dynamic range (no dataset), float16 weights. QAT is
tensorflow-model-optimization's ``quantize_model`` trained as the PyTorch modes train
(distilling the float outputs on the calibration batches), then converted.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from matrix.cell import Unavailable
from matrix.contract import Quantized
from matrix.formats.tflite import TFLiteModel, quiet
from matrix.metrics import sqnr_db
from matrix.modes import QAT_LEARNING_RATE, QAT_STEPS, Mode, of_family, register
from matrix.modes.litert import simulation_for
from matrix.qspecs import int16_activations
from matrix.vocabulary import Stage
from models.keras import TWINS

if TYPE_CHECKING:
    from matrix.contract import CellContext

PACKAGES = {"tensorflow": "tensorflow-cpu", "tf_keras": "tf-keras", "ai_edge_litert": "ai-edge-litert"}
QAT_PACKAGE = ("tensorflow_model_optimization", "tensorflow-model-optimization")
# A twin that leaves its PyTorch model by more than this in float is a broken case.
TWIN_MIN_SQNR_DB = 60.0


@functools.cache
def tensorflow() -> Any:
    quiet()
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return tf


def channels_last(tensor: torch.Tensor) -> np.ndarray:
    array = tensor.detach().numpy()
    return array.transpose(0, 2, 3, 1) if array.ndim == 4 else array


class KerasModel(torch.nn.Module):
    """A Keras model as a module on NCHW tensors (the QAT model run as its own simulation)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.keras_model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = np.asarray(self.keras_model(channels_last(x), training=False))
        return torch.from_numpy(output.transpose(0, 3, 1, 2).copy() if output.ndim == 4 else output)


def build_twin(ctx: CellContext) -> Any:
    """The twin with the float model's weights; raises (a broken case) if the two disagree.
    Keras's global state is cleared first: each cell's graphs and converter state would
    otherwise stay (an LSTM twin's conversions hold some 200 MB each)."""
    tensorflow()
    import gc

    import tf_keras

    tf_keras.backend.clear_session()
    gc.collect()
    example = ctx.data.calibration[0]
    twin = TWINS[ctx.case.model](ctx.float_model, tuple(example[0].shape[1:]))
    with torch.no_grad():
        expected = ctx.float_model(*example)
    agreement = sqnr_db(expected, KerasModel(twin)(example[0]))
    if agreement < TWIN_MIN_SQNR_DB:
        raise AssertionError(f"the Keras twin of {ctx.case.model} leaves the PyTorch model in float "
                             f"({agreement:.1f} dB < {TWIN_MIN_SQNR_DB} dB): the twin is broken")
    return twin


def float_tflite(model: Any) -> TFLiteModel:
    """The twin converted without any optimization: the float artifact."""
    return TFLiteModel(tensorflow().lite.TFLiteConverter.from_keras_model(model).convert(), channels_last=True)


def converter(model: Any, ctx: CellContext) -> Any:
    batches = [[channels_last(batch[0]).astype(np.float32)] for batch in ctx.data.calibration]
    return optimized(tensorflow().lite.TFLiteConverter.from_keras_model(model), ctx, batches)


def optimized(convert: Any, ctx: CellContext, batches: list[list[np.ndarray]]) -> Any:
    """A TFLiteConverter set for the cell's scheme and qspec: float16 weights, dynamic range, or
    full integer (int8, or 16x8 activations) calibrated on ``batches`` (each the model's inputs
    as the converted model takes them); a float cell's converter is left as it is."""
    tf = tensorflow()
    scheme = ctx.scheme.name
    if not ctx.scheme.quantizes:
        return convert
    convert.optimizations = [tf.lite.Optimize.DEFAULT]
    if scheme == "fp16":
        convert.target_spec.supported_types = [tf.float16]
    elif scheme == "ptq_static":
        convert.representative_dataset = lambda: iter(batches)
        ops = tf.lite.OpsSet
        convert.target_spec.supported_ops = [
            ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8 if int16_activations(ctx.qspec)
            else ops.TFLITE_BUILTINS_INT8]
        if ctx.qspec.variant.tflite_io == "int8":
            convert.inference_input_type = tf.int8
            convert.inference_output_type = tf.int8
    return convert


def train_qat(model: Any, ctx: CellContext) -> Any:
    module, package = QAT_PACKAGE
    if importlib.util.find_spec(module) is None:
        raise Unavailable(f"missing package {package}: Keras QAT needs it (pip install 'qmatrix[litert]')")
    import tensorflow_model_optimization as tfmot
    import tf_keras

    with ctx.clock.stage(Stage.PREPARE):
        qat = tfmot.quantization.keras.quantize_model(model)
        qat.compile(optimizer=tf_keras.optimizers.Adam(QAT_LEARNING_RATE), loss="mse")
    with ctx.clock.stage(Stage.TRAIN), torch.no_grad():
        targets = [channels_last(ctx.float_model(*batch)) for batch in ctx.data.calibration]
        for step in range(QAT_STEPS):
            index = step % len(targets)
            qat.train_on_batch(channels_last(ctx.data.calibration[index][0]), targets[index])
    return qat


def quantize(ctx: CellContext) -> Quantized:
    twin = float_twin = build_twin(ctx)  # outside any stage: a twin that disagrees is the case's bug
    if ctx.scheme.trains:
        twin = train_qat(twin, ctx)
    with ctx.clock.stage(Stage.CONVERT):
        content = converter(twin, ctx).convert()
    if ctx.scheme.trains:
        simulation, kind = KerasModel(twin), "the trained tfmot QAT model (fake-quant in TensorFlow)"
    else:
        bits = 16 if int16_activations(ctx.qspec) else 8
        simulation, kind = simulation_for(ctx, bits)
    return Quantized(TFLiteModel(content, channels_last=True), simulation, kind, stand_in=not ctx.scheme.trains,
                     float_artifact=lambda: float_tflite(float_twin))


register(Mode(
    "keras", "the model's Keras twin converted by tf.lite.TFLiteConverter (PTQ) or trained with "
    "tensorflow-model-optimization (QAT)",
    reaches=of_family("tflite"), schemes=("ptq_static", "ptq_dynamic", "fp16", "qat"), quantize=quantize,
    packages=PACKAGES, extra="litert", models=tuple(TWINS),
    tools=("Keras", "TFLiteConverter", "tensorflow-model-optimization"),
))
