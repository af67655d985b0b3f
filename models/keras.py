"""Keras twins of reference models: the same layers with the PyTorch model's weights copied in.

A twin takes channels-last images (NHWC) where its PyTorch model takes NCHW; the
``keras`` mode checks that twin and model agree in float before it quantizes the twin.
Built with tf-keras (Keras 2), which tensorflow-model-optimization's QAT requires.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn

from models import BATCH

# The twin built from a model, by model name: builder(torch model, one input's shape without batch).
TWINS: dict[str, Callable[[nn.Module, tuple[int, ...]], Any]] = {}


def twin(name: str) -> Callable:
    def register(builder: Callable) -> Callable:
        TWINS[name] = builder
        return builder

    return register


def _keras() -> Any:
    import tf_keras

    return tf_keras


def _array(tensor) -> np.ndarray:
    return tensor.detach().numpy()


def _channels_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (*shape[1:], shape[0]) if len(shape) == 3 else shape


def dense(layer: nn.Linear, activation: str | None = None) -> Any:
    keras = _keras()
    return keras.layers.Dense(layer.out_features, activation=activation,
                              weights=[_array(layer.weight).T, _array(layer.bias)])


def conv(layer: nn.Conv2d) -> Any:
    keras = _keras()
    padding = "same" if layer.padding[0] == layer.kernel_size[0] // 2 and layer.padding[0] else "valid"
    weights = [_array(layer.weight).transpose(2, 3, 1, 0), _array(layer.bias)]
    if layer.groups == layer.in_channels and layer.groups > 1:
        return keras.layers.DepthwiseConv2D(layer.kernel_size, padding=padding,
                                            weights=[_array(layer.weight).transpose(2, 3, 0, 1), _array(layer.bias)])
    return keras.layers.Conv2D(layer.out_channels, layer.kernel_size, padding=padding, weights=weights)


def batch_norm(layer: nn.BatchNorm2d) -> Any:
    keras = _keras()
    return keras.layers.BatchNormalization(
        epsilon=layer.eps, weights=[_array(layer.weight), _array(layer.bias), _array(layer.running_mean),
                                    _array(layer.running_var)])


@twin("mlp")
def mlp(model: nn.Module, shape: tuple[int, ...]) -> Any:
    """A Sequential model (the other twins are Functional)."""
    keras = _keras()
    return keras.Sequential([keras.Input(shape), dense(model.fc1, "relu"), dense(model.fc2, "relu"), dense(model.fc3)])


@twin("conv_bn_relu")
def conv_bn_relu(model: nn.Module, shape: tuple[int, ...]) -> Any:
    keras = _keras()
    x = inputs = keras.Input(_channels_last(shape))
    for c, b in ((model.conv1, model.bn1), (model.conv2, model.bn2)):
        x = keras.layers.ReLU()(batch_norm(b)(conv(c)(x)))
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


@twin("residual_add")
def residual_add(model: nn.Module, shape: tuple[int, ...]) -> Any:
    keras = _keras()
    inputs = keras.Input(_channels_last(shape))
    x = keras.layers.ReLU()(batch_norm(model.bn1)(conv(model.conv1)(inputs)))
    x = batch_norm(model.bn2)(conv(model.conv2)(x))
    return keras.Model(inputs, keras.layers.ReLU()(keras.layers.Add()([x, inputs])))


@twin("depthwise_separable")
def depthwise_separable(model: nn.Module, shape: tuple[int, ...]) -> Any:
    keras = _keras()
    inputs = keras.Input(_channels_last(shape))
    x = keras.layers.ReLU(max_value=6.0)(batch_norm(model.bn1)(conv(model.dw)(inputs)))
    x = batch_norm(model.bn2)(conv(model.pw)(x))
    # hardswish(x) = x * relu6(x + 3) / 6, in layers the converter and tfmot know
    gate = keras.layers.Rescaling(1 / 6)(keras.layers.ReLU(max_value=6.0)(keras.layers.Rescaling(1.0, offset=3.0)(x)))
    return keras.Model(inputs, keras.layers.Multiply()([x, gate]))


@twin("lstm_classifier")
def lstm_classifier(model: nn.Module, shape: tuple[int, ...]) -> Any:
    keras = _keras()
    rnn = model.rnn
    lstm = keras.layers.LSTM(rnn.hidden_size, weights=[
        _array(rnn.weight_ih_l0).T, _array(rnn.weight_hh_l0).T, _array(rnn.bias_ih_l0 + rnn.bias_hh_l0)])
    # A fixed batch size: TFLite's converter needs static TensorList shapes to fuse the LSTM.
    inputs = keras.Input(shape, batch_size=BATCH)
    return keras.Model(inputs, dense(model.fc)(lstm(inputs)))
