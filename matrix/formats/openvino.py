"""OpenVINO: a model (``ov.Model``) compiled and run by the OpenVINO CPU plugin, inspected and
read layer by layer.

A model (:class:`OpenVinoModel`) is compiled
with the CPU plugin's float precision at f32 (the default on a bf16-capable CPU would
run float layers in bf16) and with snippets off, so that every layer stays a node of
the runtime model (with snippets a small quantized MLP becomes one opaque f32 node; the
outputs are the same). Inspection reads each runtime layer's ``runtimePrecision``: a
convolution, fully connected, matmul or RNN layer that runs in i8/u8 on an i8/u8
input is integer compute; one that runs in i8/u8 weights on a float input is a
weight-only layer and counts as float; any other layer but data movement (eltwise,
pooling, an activation) counts by the precision it ran in.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from matrix.contract import Inspection, by_base_name
from matrix.formats.layers import CHANGES_OUTPUT, MODEL_OUTPUT, LayerOutputs, output_unchanged, read_exposed

PACKAGES = {"openvino": "openvino"}
COMPUTE = {"Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul", "RNNSeq", "RNNCell",
           "TensorIterator"}
# Runtime layers that only hold, move, reshape or convert data (FakeQuantize is the quantize step itself).
DATA_LAYERS = {"Input", "Output", "Parameter", "Result", "Const", "Constant", "Reorder", "Reshape", "Transpose",
               "Concatenation", "Convert", "FakeQuantize", "Gather", "Split", "StridedSlice", "Squeeze", "Unsqueeze",
               "ShapeOf", "Broadcast", "Pad", "Tile", "Slice"}
INTEGER = {"i8", "u8"}
# NNCF names the FakeQuantize it puts after an op "<op>/fq_output_<i>"; the converter names
# an op after its module "__module.<path>/...".
FQ_SUFFIX, MODULE_PREFIX = "/fq_output_0", "__module."
DEQUANTIZATION = "/Dequantization"
COMPILE_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "SNIPPETS_MODE": "DISABLE"}


def compile_config(precision: str = "f32") -> dict:
    """COMPILE_CONFIG at this inference precision, with the worker's share of the cores as the
    plugin's threads."""
    return {**COMPILE_CONFIG, "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": torch.get_num_threads()}


@functools.cache
def openvino() -> Any:
    import openvino as ov

    return ov


def from_pt2e(model: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> OpenVinoModel:
    """A PT2E model (Q/DQ ops around float ones, weights left as quantize ops) captured by
    torch.export and read by OpenVINO's PyTorch frontend, which turns each Q/DQ pair into a
    FakeQuantize; the CPU plugin then runs the ops between them in integers."""
    return OpenVinoModel(openvino().convert_model(torch.export.export(model, example)))


def from_onnx(path: Path) -> OpenVinoModel:
    """An ONNX file (Q/DQ, or ONNX Runtime's QOperator ops) read by OpenVINO's ONNX frontend,
    which turns each QuantizeLinear/DequantizeLinear pair into a FakeQuantize."""
    return OpenVinoModel(openvino().convert_model(str(path)))


class OpenVinoModel(torch.nn.Module):
    """An OpenVINO model (ov.Model) as a module; compiled on first use with COMPILE_CONFIG at its
    inference precision (f32, or f16 for an fp16 cell)."""

    def __init__(self, model: Any, precision: str = "f32") -> None:
        super().__init__()
        self.ov_model = model
        self.precision = precision
        self._compiled = None

    def compiled(self) -> Any:
        if self._compiled is None:
            self._compiled = openvino().Core().compile_model(self.ov_model, "CPU", compile_config(self.precision))
        return self._compiled

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        result = self.compiled()([t.detach().numpy() for t in inputs])
        return torch.from_numpy(np.asarray(result[0]).copy())

    def layer_outputs(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every op's output but data movement and weight preparation, in topological order, by
        layer name (the module path the converter wrote into the op's name, and the op type). A
        FakeQuantize NNCF put after an op stands for that op: its output is the op's output as
        the next layer sees it.

        The outputs are read by making them model outputs, which changes what the CPU plugin
        compiles: in an int8 attention block, exposing one MatMul's output turns the model's own
        output to zeros (OpenVINO 2026.4). So an instrumented model counts only if its own
        output is still what the model computes; if not, each layer is exposed alone, and a
        layer whose exposure changes the output is left out.
        """
        arrays = [t.detach().numpy() for t in inputs]
        expected = np.asarray(self.compiled()(arrays)[0])
        layers = self._layers()
        values, unread = read_exposed([op for op, *_ in layers], lambda ops: self._exposed(ops, arrays, expected))
        outputs = LayerOutputs()
        for op, layer, kind, read_by in layers:
            if op in unread:
                outputs.unread[f"{layer} ({kind})"] = unread[op]
            if op in values and values[op].dtype.kind == "f":
                outputs.put(layer, kind, torch.from_numpy(values[op].astype(np.float32, copy=True)), read_by)
        return outputs

    def _layers(self) -> list[tuple[str, str, str, set[str]]]:
        """(name of the op whose output is read, its layer, its kind, the layers of the ops that
        read it) in topological order. A FakeQuantize NNCF put after an op counts as that op."""
        layers = []
        constant: set[str] = set()  # ops on weights alone (NNCF's weight dequantization), not layers
        for op in self.ov_model.get_ordered_ops():
            kind, friendly = op.get_type_name(), op.get_friendly_name()
            feeds = [op.input_value(i).get_node().get_friendly_name() for i in range(op.get_input_size())]
            read_by = {_layer_of(target.get_node()) for target in op.output(0).get_target_inputs()} \
                if op.get_output_size() else set()
            if kind == "Constant" or (feeds and all(feed in constant for feed in feeds)):
                constant.add(friendly)
            elif kind == "FakeQuantize" and friendly.endswith(FQ_SUFFIX):
                source = op.input_value(0).get_node()
                layers.append((friendly, _layer_of(op), source.get_type_name(), read_by))
            elif kind not in DATA_LAYERS and op.get_output_size():
                layers.append((friendly, _layer_of(op), kind, read_by))
        return layers

    def _exposed(self, ops: list[str], arrays: list[np.ndarray], expected: np.ndarray) -> dict[str, np.ndarray] | str:
        """The outputs of ``ops`` (by name) from a copy of the model that outputs them too, or
        why not: that copy's own output is no longer ``expected``."""
        model = self.ov_model.clone()
        by_name = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
        model.add_outputs([by_name[op].output(0) for op in ops])  # an output already a result is not added again
        fed = [result.input_value(0).get_node().get_friendly_name() for result in model.get_results()]
        result = openvino().Core().compile_model(model, "CPU", compile_config(self.precision))(arrays)
        if not output_unchanged(torch.from_numpy(np.asarray(result[0])), torch.from_numpy(expected)):
            return CHANGES_OUTPUT
        return {op: np.asarray(result[fed.index(op)]) for op in ops}


def _layer_of(node: Any) -> str:
    """The layer an op belongs to: a FakeQuantize NNCF put after an op, that op's; a model
    output, none (``MODEL_OUTPUT``)."""
    if node.get_type_name() == "Result":
        return MODEL_OUTPUT
    if node.get_type_name() == "FakeQuantize" and node.get_friendly_name().endswith(FQ_SUFFIX):
        node = node.input_value(0).get_node()
    return layer_name(node.get_friendly_name())


def layer_name(friendly: str) -> str:
    """``__module.layer1.conv/aten::_convolution/Convolution`` as ``layer1.conv``; other names kept."""
    head = friendly.split("/")[0]
    return head[len(MODULE_PREFIX):] if head.startswith(MODULE_PREFIX) else friendly


def ir_bytes(ov_model: Any) -> int:
    """The model's OpenVINO IR (.xml and .bin) as saved with its weights as they are (save_model
    would compress float weights to fp16 by default)."""
    with tempfile.TemporaryDirectory(prefix="qmatrix-ov-") as folder:
        xml = Path(folder) / "model.xml"
        openvino().save_model(ov_model, str(xml), compress_to_fp16=False)
        return xml.stat().st_size + xml.with_suffix(".bin").stat().st_size


def inspect_compiled(compiled: Any, precision: str = "f32") -> Inspection:
    inspection = Inspection()
    layers: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        layers[kind] = layers.get(kind, 0) + 1
        if kind in DATA_LAYERS or _dequantization(info):
            continue
        precision = info["runtimePrecision"].astype(str).lower() if "runtimePrecision" in info else "?"
        if kind not in COMPUTE:
            # A layer without weights (eltwise, pooling, an activation) by the precision it ran in.
            (inspection.quantized if precision in INTEGER else inspection.floating)[f"{kind}[{precision}]"] += 1
            continue
        activation = op.get_input_element_type(0).get_type_name().lower() if op.get_input_size() else "?"
        if precision in INTEGER and activation in INTEGER:
            inspection.quantized[f"{kind}[{precision}]"] += 1
        elif precision in INTEGER:
            inspection.floating[f"{kind}[{activation} input, {precision} weights]"] += 1
        else:
            inspection.floating[f"{kind}[{precision}]"] += 1
    inspection.notes.update(runtime_layers=layers, compile_config=compile_config(precision))
    return inspection.beside_float_compute(by_base_name(COMPUTE))


def _dequantization(info: Any) -> bool:
    """A runtime layer made only of the dequantization steps OpenVINO's low-precision
    transformations put after a FakeQuantize (``<fq>/DequantizationSubtract``,
    ``.../DequantizationMultiply``): integers turned back into float, not compute."""
    names = info["originalLayersNames"].astype(str).split(",") if "originalLayersNames" in info else []
    return bool(names) and all(DEQUANTIZATION in name for name in names)
