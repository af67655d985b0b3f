"""ONNX: ``torch.onnx.export`` (the dynamo exporter, or the legacy TorchScript one), ONNX
Runtime sessions on the CPU execution provider, and inspection of the graphs.

A session saves the graph it optimized (``SessionOptions.optimized_model_filepath``), and
both graphs are inspected: the exported one for its Q/DQ pairs, the optimized one for what
ORT really runs. Only the optimized graph's integer kernels (QLinear* but concat, QGemm,
ConvInteger, MatMulInteger, ...) count as quantized compute: Q/DQ pairs that ORT left
around a float Conv or MatMul mean ORT ran float.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from matrix.cell import first_line
from matrix.contract import HALF_TAG, Deployed, Inspection
from matrix.vocabulary import Stage

if TYPE_CHECKING:
    from matrix.contract import CellContext

PACKAGES = {"onnx": "onnx", "onnxruntime": "onnxruntime", "onnxscript": "onnxscript"}
# Integer kernels of ONNX Runtime (default and com.microsoft domains) that compute.
QUANTIZED_OPS = {
    "ConvInteger", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM",
    "QGemm", "QAttention", "QEmbedLayerNormalization", "MatMulNBits",
}
QUANTIZED_PREFIXES = ("QLinear",)
# The QLinear ops that are compute (with weights, or a matmul); QLinearAdd, QLinearAveragePool
# and the like are weightless.
QUANTIZED_COMPUTE_PREFIXES = ("QLinearConv", "QLinearMatMul")
# QLinear ops that only join or select int8 data: a model whose convs run in float beside
# an int8 concat did not run quantized.
NOT_COMPUTE = {"QLinearConcat", "QLinearWhere"}
FLOAT_OPS = {
    "Conv", "ConvTranspose", "MatMul", "Gemm", "LSTM", "GRU", "RNN", "FusedConv", "FusedGemm",
    "FusedMatMul", "NchwcConv", "Attention", "MultiHeadAttention",
}
PROVIDERS = ["CPUExecutionProvider"]
TORCHSCRIPT_OPSET = 17
ANSI = re.compile(r"\x1b\[[0-9;]*m")



def is_quantized_op(op_type: str) -> bool:
    return op_type in QUANTIZED_OPS or (op_type.startswith(QUANTIZED_PREFIXES) and op_type not in NOT_COMPUTE)


def qdq_pairs(graph: Any) -> int:
    """QuantizeLinear nodes whose output feeds a DequantizeLinear: the Q/DQ pairs of a graph."""
    dequantized = {name for node in graph.node if node.op_type == "DequantizeLinear" for name in node.input[:1]}
    return sum(1 for node in graph.node if node.op_type == "QuantizeLinear" and node.output[0] in dequantized)


def count_ops(graph: Any, half: set[str] = frozenset()) -> tuple[Counter[str], Counter[str]]:
    """(quantized compute ops, float compute ops) of an ONNX graph, by op type; a float op whose
    first input is one of the ``half`` values (float16) as ``OP[f16]``."""
    quantized: Counter[str] = Counter()
    floating: Counter[str] = Counter()
    for node in graph.node:
        if is_quantized_op(node.op_type):
            quantized[node.op_type] += 1
        elif node.op_type in FLOAT_OPS:
            floating[node.op_type + (f"[{HALF_TAG}]" if node.input and node.input[0] in half else "")] += 1
    return quantized, floating


def half_values(model: Any) -> set[str]:
    """The names of a model's float16 values (inputs, initializers and inferred intermediates);
    none when nothing in it is float16, without inferring shapes."""
    import onnx

    float16 = onnx.TensorProto.FLOAT16
    holds_half = any(i.data_type == float16 for i in model.graph.initializer) or any(
        a.name == "to" and a.i == float16 for node in model.graph.node for a in node.attribute)
    if not holds_half:
        return set()
    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    return ({v.name for v in values if v.type.tensor_type.elem_type == float16}
            | {i.name for i in model.graph.initializer if i.data_type == float16})


def summarize(model: Any) -> dict[str, Any]:
    """Op counts, Q/DQ pairs and opset of an ONNX model, for the record."""
    quantized, floating = count_ops(model.graph)
    int8_data = Counter(n.op_type for n in model.graph.node if n.op_type in NOT_COMPUTE)
    return {
        "quantized": dict(quantized), "float": dict(floating), "int8_data": dict(int8_data),
        "qdq_pairs": qdq_pairs(model.graph),
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
    }


def inspect_models(exported: Any, optimized: Any) -> Inspection:
    """What the optimized graph computes in int8 and in float; both graphs in the notes."""
    quantized, floating = count_ops(optimized.graph, half_values(optimized))
    exported_summary = summarize(exported)
    notes = {"opset": exported_summary["opset"], "exported": exported_summary, "optimized": summarize(optimized)}
    splits = split_qparams(exported.graph, optimized.graph)
    if splits:
        notes["split"] = splits
    return Inspection(quantized, floating, notes=notes).beside_float_compute(
        lambda op: op in FLOAT_OPS or op in QUANTIZED_OPS or op.startswith(QUANTIZED_COMPUTE_PREFIXES))


def _constant(graph: Any, name: str) -> float | None:
    from onnx import numpy_helper

    for tensor in graph.initializer:
        if tensor.name == name:
            return float(numpy_helper.to_array(tensor).flatten()[0])
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name and node.attribute:
            return float(numpy_helper.to_array(node.attribute[0].t).flatten()[0])
    return None


def split_qparams(exported: Any, optimized: Any) -> list[dict[str, Any]]:
    """For every Split (the guide's split -> convs -> cat example): the scale of the Q/DQ on its
    input and on each output in the exported graph, whether they are shared, and whether the
    Split runs on int8 in the optimized graph (its input made by a QuantizeLinear or QLinear op)."""
    producers = {out: node for graph in (exported, optimized) for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in exported.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def scale_in(name: str) -> float | None:
        node = producers.get(name)
        return _constant(exported, node.input[1]) if node is not None and node.op_type == "DequantizeLinear" else None

    def scale_out(name: str) -> float | None:
        q = [n for n in consumers.get(name, []) if n.op_type == "QuantizeLinear"]
        return _constant(exported, q[0].input[1]) if q else None

    found = []
    for node in (n for n in exported.node if n.op_type == "Split"):
        input_scale, output_scales = scale_in(node.input[0]), [scale_out(o) for o in node.output]
        shared = input_scale is not None and all(
            s is not None and abs(s - input_scale) <= 1e-9 * max(1.0, abs(input_scale)) for s in output_scales)
        found.append({"input_scale": input_scale, "output_scales": output_scales, "shared_qparams": shared})
    int8_splits = [n for n in optimized.node if n.op_type == "Split"
                   and getattr(producers.get(n.input[0]), "op_type", "").startswith(("QuantizeLinear", "QLinear"))]
    for entry in found:
        entry["int8_splits_in_optimized_graph"] = len(int8_splits)
    return found


@functools.cache
def _torchlib_registry(opset_version: int) -> Any:
    from torch.onnx._internal.exporter import _registration

    return _registration.ONNXRegistry._qmatrix_from_torchlib(opset_version)


def reuse_torchlib_registry() -> None:
    """The dynamo exporter builds its registry of ONNX functions anew for every export (half of
    a small model's export time: it compiles ~500 torchlib functions). Within a process it is
    built once per opset and each export gets a copy of its table; the table is the same, so
    is the export. A torch without this registry is left alone."""
    try:
        from torch.onnx._internal.exporter import _registration
    except ImportError:
        return
    registry = getattr(_registration, "ONNXRegistry", None)
    # torch 2.5's registry has no opset argument (nor _constants): left alone too.
    if registry is None or not hasattr(_registration, "_constants") or hasattr(registry, "_qmatrix_from_torchlib") \
            or not hasattr(registry, "from_torchlib"):
        return
    registry._qmatrix_from_torchlib = registry.from_torchlib

    def from_torchlib(cls, opset_version: int = _registration._constants.TORCHLIB_OPSET) -> Any:
        built = _torchlib_registry(opset_version)
        fresh = cls()
        fresh._opset_version = built._opset_version
        fresh.functions = {target: list(functions) for target, functions in built.functions.items()}
        return fresh

    registry.from_torchlib = classmethod(from_torchlib)


def export(model: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path, exporter: str = "dynamo") -> Any:
    """``torch.onnx.export`` with the dynamo exporter (or the legacy TorchScript one, at
    ``TORCHSCRIPT_OPSET``); returns the loaded ONNX model."""
    import onnx

    reuse_torchlib_registry()
    # Fresh tensors, not views of a data set's tensor: torch 2.5's exporter, when torch.export fails,
    # retraces the model from a TorchScript trace, and that retrace fails on a view as an input.
    example = tuple(t.contiguous().clone() if isinstance(t, torch.Tensor) else t for t in example)
    try:
        if exporter == "torchscript":
            torch.onnx.export(model, example, str(path), dynamo=False, opset_version=TORCHSCRIPT_OPSET)
        else:
            torch.onnx.export(model, example, dynamo=True, verbose=False, external_data=False).save(str(path))
    except Exception as exc:
        raise exporter_error(exc) from exc
    return onnx.load(str(path))


def input_names_of(model: Any) -> list[str]:
    """The names of an ONNX model's real inputs (initializers listed as inputs left out)."""
    initializers = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers]


def exporter_error(exc: Exception) -> Exception:
    """The exporter's error, same type, with its first line naming the exception at the root
    of the chain (the exporter's own first line only says which of its steps failed)."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    if root is exc:
        return exc
    message = f"{type(root).__name__}: {first_line(root)} ({first_line(exc)})"
    try:
        return type(exc)(ANSI.sub("", message))
    except Exception:
        return exc


def load_session(path: Path, optimized_path: Path) -> Any:
    """An InferenceSession on the CPU EP that saves the graph it optimized to ``optimized_path``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(optimized_path)
    options.log_severity_level = 3
    options.intra_op_num_threads = torch.get_num_threads()  # the worker's share of the cores
    return ort.InferenceSession(str(path), options, providers=PROVIDERS)


def session_runner(session: Any, every_output: bool = False):
    """The session as a function of tensors: its first output, or all of them."""
    names = [i.name for i in session.get_inputs()]

    def run(*inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        feeds = {name: tensor.detach().numpy() for name, tensor in zip(names, inputs)}
        outputs = tuple(torch.from_numpy(output) for output in session.run(None, feeds))
        return outputs if every_output else outputs[0]

    return run


QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}


def op_class(op_type: str) -> str:
    """Which share of a profile (formats.pytorch.SPLIT) an ONNX Runtime kernel's time counts as."""
    if is_quantized_op(op_type):
        return "quantized"
    if op_type in QDQ_OPS:
        return "qdq"
    return "float" if op_type in FLOAT_OPS else "other"


def time_split(content: bytes, inputs: tuple[torch.Tensor, ...]) -> dict[str, float]:
    """The share of the model's time on ``inputs`` by kind of kernel, from ONNX Runtime's own
    profiler: a session like the deployed one, with profiling on, over a few calls."""
    import onnxruntime as ort

    from matrix.formats.pytorch import PROFILED_CALLS, shares

    with tempfile.TemporaryDirectory(prefix="qmatrix-ort-profile-") as folder:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = torch.get_num_threads()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = ort.InferenceSession(content, options, providers=PROVIDERS)
        run = session_runner(session)
        for _ in range(PROFILED_CALLS):
            run(*inputs)
        events = json.loads(Path(session.end_profiling()).read_text())
    kernels = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")
               and (e.get("args") or {}).get("op_name")]
    return shares((op_class(e["args"]["op_name"]), e.get("dur", 0) / 1e6) for e in kernels)


def deploy_file(ctx: CellContext, path: Path) -> Deployed:
    """Load an ONNX file already written (by export or by ONNX Runtime's quantizer), inspect, run."""
    import onnx

    optimized_path = path.with_name(path.stem + ".optimized.onnx")
    with ctx.clock.stage(Stage.LOAD):
        session = load_session(path, optimized_path)
        inspection = inspect_models(onnx.load(str(path)), onnx.load(str(optimized_path)))
    content = path.read_bytes()
    return Deployed(session_runner(session), inspection, size_bytes=len(content) + external_bytes(path),
                    profile=lambda inputs: time_split(content, inputs))


def external_bytes(path: Path) -> int:
    """The bytes of the external data files an ONNX file names beside it (none for a small model)."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    files = {ExternalDataInfo(t).location for t in model.graph.initializer if uses_external_data(t)}
    return sum((path.parent / name).stat().st_size for name in files)


class OnnxModel(torch.nn.Module):
    """An ONNX model already quantized (by ONNX Runtime's quantizer), as a module: the
    ``ort`` mode hands it to this backend, which deploys it without exporting again.

    Run as a module it is ONNX Runtime with every graph optimization off: Q/DQ computed
    in float, the simulation of a QDQ model.
    """

    def __init__(self, serialized: bytes) -> None:
        super().__init__()
        self.serialized = serialized
        self._session = None

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self._session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            options.log_severity_level = 3
            options.intra_op_num_threads = torch.get_num_threads()  # the worker's share of the cores
            self._session = ort.InferenceSession(self.serialized, options, providers=PROVIDERS)
        return session_runner(self._session)(*inputs)


def exported_session(model: torch.nn.Module, example: tuple[torch.Tensor, ...], exporter: str):
    """``model`` exported as deployed and run by ONNX Runtime, returning every output."""
    with tempfile.TemporaryDirectory(prefix="qmatrix-onnx-") as folder:
        path = Path(folder) / "model.onnx"
        with torch.no_grad():
            export(model, example, path, exporter)
        return session_runner(load_session(path, path.with_name("model.optimized.onnx")), every_output=True)


def keep(folder: Path, artifacts: Path | None) -> None:
    """Copy the exported and optimized models (as far as they were written) where the user asked."""
    if artifacts is None:
        return
    artifacts.mkdir(parents=True, exist_ok=True)
    for written in folder.glob("*.onnx*"):
        shutil.copy2(written, artifacts / written.name)
