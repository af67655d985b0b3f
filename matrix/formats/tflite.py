"""TFLite: a .tflite flatbuffer made by ``litert_torch.convert``, run by the LiteRT interpreter
(``ai-edge-litert``), inspected and read layer by layer.

A PyTorch model reaches it through ``litert_torch.convert`` (a PT2E model quantized by
litert-torch's own PT2EQuantizer is converted with that quantizer in its QuantConfig; a
float model with a recipe the mode chose); the ``keras`` and ``aeq`` modes hand over a
.tflite they already made (:class:`TFLiteModel`). The interpreter runs with its builtin
kernels only (no default XNNPACK delegate), so the op list is what runs.

Inspection reads every op's input tensors: a weighted op (conv, fully connected, batch
matmul, LSTM, ...) whose activation input is int8 or int16 computes in integers; one whose
activation is float but whose weight is int8 is a dynamic-range (hybrid) kernel, which
quantizes its input per call and counts as quantized; a float op fed by a DEQUANTIZE of
int8 or float16 weights (weight-only, fp16) computes in float. Any other op (add, pooling,
an activation) computes in integers or in float by its first input; ops that only move
data (reshape, transpose, concatenation, quantize, dequantize, ...) count as neither.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import os
import warnings
from collections import Counter
from typing import Any

import numpy as np
import torch

from matrix.contract import Inspection, by_base_name
from matrix.formats.layers import MODEL_OUTPUT, LayerOutputs

# litert-torch's module, then the one of its earlier name (ai-edge-torch, which goes with older
# torch releases), by their pip names: whichever is installed serves, and the record names it.
LITERT_TORCH = {"litert_torch": "litert-torch", "ai_edge_torch": "ai-edge-torch"}


@functools.cache
def _litert_torch_module() -> str:
    return next((name for name in LITERT_TORCH if importlib.util.find_spec(name) is not None), "litert_torch")


PACKAGES = {(name := _litert_torch_module()): LITERT_TORCH[name], "ai_edge_litert": "ai-edge-litert"}
COMPUTE_OPS = {
    "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_3D", "TRANSPOSE_CONV", "FULLY_CONNECTED", "BATCH_MATMUL",
    "UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "LSTM", "UNIDIRECTIONAL_SEQUENCE_RNN",
    "SVDF", "EMBEDDING_LOOKUP",
}
INTEGER = {np.dtype(np.int8): "int8", np.dtype(np.uint8): "uint8", np.dtype(np.int16): "int16x8"}
# Ops that only move, reshape or convert data: neither integer nor float compute.
DATA_OPS = {
    "QUANTIZE", "DEQUANTIZE", "RESHAPE", "TRANSPOSE", "CONCATENATION", "SQUEEZE", "EXPAND_DIMS", "GATHER",
    "GATHER_ND", "SLICE", "STRIDED_SLICE", "SPLIT", "SPLIT_V", "PACK", "UNPACK", "PAD", "PADV2", "CAST", "SHAPE",
    "FILL", "BROADCAST_TO", "TILE", "DELEGATE", "WHILE", "CALL_ONCE", "VAR_HANDLE", "READ_VARIABLE",
    "ASSIGN_VARIABLE",
}
# Handed from a mode to this backend through CellContext.handoff.
QUANT_CONFIG = "litert_quant_config"


def quiet() -> None:
    """Before TensorFlow or litert-torch is imported: their C++ and progress logging off."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "0")
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
    warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")


@functools.cache
def litert_torch() -> Any:
    """litert-torch, or ai-edge-torch where that is what is installed."""
    quiet()
    return importlib.import_module(_litert_torch_module())


def litert_torch_part(path: str) -> Any:
    """A module of litert-torch by its path inside the package (``quantize.quant_config``)."""
    return importlib.import_module(f"{litert_torch().__name__}.{path}")


def interpreter(content: bytes, keep_tensors: bool = False) -> Any:
    """An interpreter on the builtin kernels; ``keep_tensors`` keeps every intermediate tensor readable."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    found = Interpreter(model_content=content, experimental_preserve_all_tensors=keep_tensors,
                        num_threads=torch.get_num_threads(),  # the worker's share of the cores
                        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    found.allocate_tensors()
    return found


def inspect_tflite(found: Any, content: bytes | None = None) -> Inspection:
    """Integer and float compute ops of a loaded model, by op name (``FULLY_CONNECTED[hybrid]``
    for a dynamic-range kernel), the ops of every subgraph of ``content`` counted too (a WHILE
    loop's body: onnx2tf's recurrent layers); I/O dtypes and the op list's shape in the notes."""
    tensors = {t["index"]: t for t in found.get_tensor_details()}
    inspection = Inspection()
    kinds: Counter[str] = Counter()
    _count(found._get_ops_details(), lambda i: np.dtype(tensors[i]["dtype"]) if i >= 0 else None, inspection, kinds)
    for ops, dtype_of in _subgraphs(content) if content is not None else ():
        _count(ops, dtype_of, inspection, kinds)
    inspection.notes.update(
        inputs=[np.dtype(d["dtype"]).name for d in found.get_input_details()],
        outputs=[np.dtype(d["dtype"]).name for d in found.get_output_details()],
        ops=dict(kinds),
    )
    return inspection.beside_float_compute(by_base_name(COMPUTE_OPS))


def _count(ops: list[dict], dtype_of: Any, inspection: Inspection, kinds: Counter[str]) -> None:
    """Count one subgraph's ops (``op_name``, ``inputs``, ``outputs``; ``dtype_of`` a tensor index)."""
    producers = {out: op for op in ops for out in op["outputs"]}
    for op in ops:
        name = op["op_name"]
        kinds[name] += 1
        if name in DATA_OPS or not len(op["inputs"]):
            continue
        if name not in COMPUTE_OPS:
            # An op without weights (add, pooling, an activation, ...) computes on whatever its
            # first input is: integers when the model quantized it, float when not.
            dtype = dtype_of(op["inputs"][0])
            if dtype in INTEGER:
                inspection.quantized[f"{name}[{INTEGER[dtype]}]"] += 1
            elif dtype is not None and dtype.kind == "f":
                inspection.floating[name] += 1
            continue
        dtypes = [dtype_of(i) for i in op["inputs"]]
        activation = dtypes[0] if name != "EMBEDDING_LOOKUP" else (dtypes[1] if len(dtypes) > 1 else None)
        weight = dtypes[1] if len(dtypes) > 1 and name != "EMBEDDING_LOOKUP" else None
        if activation in INTEGER:
            inspection.quantized[f"{name}[{INTEGER[activation]}]"] += 1
        elif weight in INTEGER:
            inspection.quantized[f"{name}[hybrid]"] += 1
        else:
            source = producers.get(op["inputs"][1]) if len(op["inputs"]) > 1 else None
            via = ""
            if source is not None and source["op_name"] == "DEQUANTIZE":
                via = "[dequantized " + dtype_of(source["inputs"][0]).name + " weights]"
            inspection.floating[name + via] += 1


# TFLite's TensorType codes as numpy dtypes (schema.fbs), for the tensors of subgraphs the
# interpreter does not list.
TENSOR_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16,
                9: np.int8, 10: np.float64}


def _subgraphs(content: bytes) -> list[tuple[list[dict], Any]]:
    """The ops of every subgraph but the main one, read from the flatbuffer, each with a dtype lookup."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    found = []
    for index in range(1, model.SubgraphsLength()):
        graph = model.Subgraphs(index)
        types = {t: TENSOR_TYPES.get(graph.Tensors(t).Type()) for t in range(graph.TensorsLength())}
        ops = []
        for position in range(graph.OperatorsLength()):
            op = graph.Operators(position)
            code = codes[op.OpcodeIndex()]
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            ops.append({"op_name": names.get(builtin, str(builtin)),
                        "inputs": [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else [],
                        "outputs": [int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else []})
        found.append((ops, lambda i, types=types: np.dtype(types[i]) if i >= 0 and types.get(i) else None))
    return found


def _quantize(array: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f" or not scale:
        return array.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(array / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(array: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if np.dtype(detail["dtype"]).kind == "f" or not scale:
        return array.astype(np.float32)
    return ((array.astype(np.float32) - zero_point) * scale).astype(np.float32)


class TFLiteModel(torch.nn.Module):
    """A .tflite model as a module: quantizes integer inputs and dequantizes integer outputs
    with the parameters stored in the model. ``channels_last`` models (Keras twins) take and
    return NHWC: rank-4 tensors are permuted on the way in and out. ``output_order`` permutes
    the output's dimensions of a model that takes its inputs as they are but returns channels
    last (onnx2tf's)."""

    def __init__(self, content: bytes, channels_last: bool = False,
                 output_order: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.content = content
        self.channels_last = channels_last
        self.output_order = output_order
        self._interpreter = None

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self._interpreter is None:
            self._interpreter = interpreter(self.content)
        run = self._invoke(self._interpreter, inputs)
        detail = run.get_output_details()[0]
        output = _dequantize(run.get_tensor(detail["index"]), detail)
        if self.channels_last and output.ndim == 4:
            output = output.transpose(0, 3, 1, 2)
        if self.output_order is not None:
            output = output.transpose(self.output_order)
        return torch.from_numpy(np.ascontiguousarray(output))

    def layer_outputs(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every op's output but data movement, dequantized, in execution order, by layer name
        (the module path litert-torch or TensorFlow wrote into the tensor's name, and the op)."""
        run = self._invoke(interpreter(self.content, keep_tensors=True), inputs)
        tensors = {t["index"]: t for t in run.get_tensor_details()}
        ops = [op for op in run._get_ops_details() if len(op["outputs"])]
        outputs_named = tuple(tensors[detail["index"]]["name"] for detail in run.get_output_details())
        layer_of = {op["outputs"][0]: layer_name(tensors[op["outputs"][0]]["name"], outputs_named) for op in ops}
        readers: dict[int, set[str]] = {}
        for op in ops:
            for tensor in op["inputs"]:
                readers.setdefault(tensor, set()).add(layer_of[op["outputs"][0]])
        outputs = LayerOutputs()
        for op in ops:
            index = op["outputs"][0]
            detail = tensors[index]
            if op["op_name"] in DATA_OPS or np.dtype(detail["dtype"]).kind not in "fi":
                continue
            value = torch.from_numpy(np.ascontiguousarray(_dequantize(run.get_tensor(index), detail)))
            outputs.put(layer_of[index], op["op_name"], value, readers.get(index, set()))
        return outputs

    def _invoke(self, run: Any, inputs: tuple[torch.Tensor, ...]) -> Any:
        details = sorted(run.get_input_details(), key=lambda d: d["index"])
        for detail, tensor in zip(details, inputs):
            array = tensor.detach().numpy()
            if self.channels_last and array.ndim == 4:
                array = array.transpose(0, 2, 3, 1)
            if tuple(detail["shape"]) != array.shape:
                run.resize_tensor_input(detail["index"], array.shape)
                run.allocate_tensors()
            run.set_tensor(detail["index"], _quantize(array, detail))
        run.invoke()
        return run


def layer_name(tensor: str, outputs: tuple[str, ...] = ()) -> str:
    """A tensor name as the layer it belongs to. litert-torch writes the stacks of the modules
    an op computes (``pkg.Model/torch.nn.modules.conv.Conv2d_conv1``), several joined by ``;``
    when modules were fused: the first is the layer's name (``conv1``). A tensor named after
    one of the model's ``outputs`` (``serving_default_output_0``, or its int8 value
    ``StatefulPartitionedCall:0_int16`` before a dequantize) belongs to no layer
    (``MODEL_OUTPUT``); any other name (TensorFlow's) is kept up to its first ``;``."""
    entries = tensor.split(";")
    path = next((path for path in map(_module_path, entries) if path), None)
    return path or (MODEL_OUTPUT if outputs and tensor.startswith(outputs) else entries[0])


def _module_path(entry: str) -> str | None:
    parts = entry.split("/")
    if len(parts) < 2 or not all("_" in part and "." in part.split("_")[0] for part in parts[1:]):
        return None
    return ".".join(part.split("_", 1)[1] for part in parts[1:])


def convert(model: torch.nn.Module, example: tuple[torch.Tensor, ...], quant_config: Any = None) -> bytes:
    """``litert_torch.convert`` to .tflite bytes. A graph from torch.export is already in
    eval mode (PT2E moved it there); a plain module is put there."""
    if not isinstance(model, torch.fx.GraphModule):
        model.eval()
    edge = litert_torch().convert(model, example, quant_config=quant_config)
    # litert-torch 0.10 named it model_content; ai-edge-torch and earlier litert-torch, tflite_model.
    content = getattr(edge, "model_content", None) or edge.tflite_model
    return bytes(content())
