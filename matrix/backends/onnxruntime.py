"""ONNX Runtime (CPU execution provider): the quantized model exported to ONNX and run there.

Export is ``torch.onnx.export(dynamo=True)`` on the first calibration batch (every
batch the suite runs has the same number of rows); the format, its sessions and their
inspection are :mod:`matrix.formats.onnx`. The ``ort`` mode hands over a model ONNX
Runtime's quantizer already wrote (:class:`~matrix.formats.onnx.OnnxModel`).
"""

from __future__ import annotations

import functools
import importlib
import tempfile
from pathlib import Path
from typing import Any

import torch

from matrix.backends import Backend, converting_under, register
from matrix.cell import first_location
from matrix.contract import Deployed
from matrix.formats import onnx
from matrix.formats.compiled import CompiledGraph
from matrix.qconfigs import pt2e_config
from matrix.qspecs import QSpec
from matrix.vocabulary import Stage

# The qconfigs and BackendConfig that eager and FX use when they target ONNX Runtime.
ENGINE = "x86"


def deploy(ctx, model: torch.nn.Module) -> Deployed:
    with tempfile.TemporaryDirectory(prefix="qmatrix-onnx-") as folder:
        path = Path(folder) / "model.onnx"
        try:
            if isinstance(model, onnx.OnnxModel):
                path.write_bytes(model.serialized)
            else:
                with ctx.clock.stage(Stage.EXPORT), torch.no_grad():
                    onnx.export(model, ctx.data.calibration[0], path, ctx.qspec.variant.onnx_exporter)
            deployed = onnx.deploy_file(ctx, path)
        finally:
            onnx.keep(Path(folder), ctx.artifacts)
    if isinstance(model, torch.fx.GraphModule):
        example, exporter = ctx.data.calibration[0], ctx.qspec.variant.onnx_exporter
        deployed.run = CompiledGraph(deployed.run, model, lambda graph: onnx.exported_session(graph, example, exporter))
    return deployed


# (XNNPACKQuantizer's module, the PT2E quantizer classes' module), in the pt2e mode's order: torchao's,
# then torch.ao's, where PT2E lived before torchao carried it.
QUANTIZER_LOCATIONS = (
    ("torchao.testing.pt2e._xnnpack_quantizer", "torchao.quantization.pt2e.quantizer"),
    ("torch.ao.quantization.quantizer.xnnpack_quantizer", "torch.ao.quantization.quantizer"),
)


@functools.cache
def quantizer_api() -> tuple[Any, Any]:
    return first_location(QUANTIZER_LOCATIONS, lambda xnnpack, classes: (xnnpack, classes),
                          "XNNPACKQuantizer not found")


def pt2e_quantizer(scheme: str, qspec: QSpec):
    """XNNPACKQuantizer (torchao's, or torch.ao's on older torch), symmetric int8, per-channel weights.

    Its Q/DQ pattern is what ONNX Runtime's QDQ fusions look for: int8 activations,
    symmetric int8 weights (ORT's recommended S8S8 for QDQ on x86) and plain
    quantize/dequantize_per_tensor (and per_channel) ops, which the exporter writes as
    QuantizeLinear/DequantizeLinear. X86InductorQuantizer targets Inductor's oneDNN
    fusions (uint8 activations, patterns Inductor lowers) instead.
    """
    xnnpack, classes = quantizer_api()
    config = pt2e_config(xnnpack.get_symmetric_quantization_config(
        is_per_channel=True, is_qat=scheme == "qat", is_dynamic=scheme == "ptq_dynamic"
    ), qspec.knobs, scheme == "qat")
    quantizer = xnnpack.XNNPACKQuantizer().set_global(config)
    if not qspec.variant.share_split_qparams:
        return quantizer
    composable = importlib.import_module(f"{classes.__name__}.composable_quantizer")
    return composable.ComposableQuantizer([split_sharing_quantizer(config), quantizer])


def split_sharing_quantizer(config: Any) -> Any:
    """A PT2E quantizer that quantizes a split's input and gives every output of the split
    the input's quantization parameters (SharedQuantizationSpec): what ONNX Runtime wants
    of the guide's split -> convs -> cat. XNNPACKQuantizer leaves split unannotated."""
    import operator

    classes = quantizer_api()[1]
    QuantizationAnnotation, Quantizer = classes.QuantizationAnnotation, classes.Quantizer
    SharedQuantizationSpec = classes.SharedQuantizationSpec
    splits = (torch.ops.aten.split.Tensor, torch.ops.aten.split_with_sizes.default)

    class SplitSharing(Quantizer):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            for node in model.graph.nodes:
                if node.op != "call_function" or node.target not in splits:
                    continue
                source = node.args[0]
                node.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map={source: config.input_activation}, _annotated=True)
                for user in node.users:
                    if user.target is operator.getitem:
                        user.meta["quantization_annotation"] = QuantizationAnnotation(
                            output_qspec=SharedQuantizationSpec((source, node)), _annotated=True)
            return model

        def validate(self, model: torch.fx.GraphModule) -> None:
            pass

    return SplitSharing()


register(Backend(
    "onnxruntime", "onnx",
    "exported to ONNX (torch.onnx.export, dynamo) and run by ONNX Runtime's CPU execution provider",
    deploy=deploy, packages=onnx.PACKAGES, extra="onnx", activate=functools.partial(converting_under, ENGINE),
    pt2e_quantizer=pt2e_quantizer, pt2e_knobs="all", engine=ENGINE, takes_fx_reference=True,
    tools=("ONNX Runtime", "torchao's XNNPACKQuantizer", "XNNPACKQuantizer"),
))
