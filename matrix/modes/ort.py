"""ONNX Runtime's own quantizer: the float model exported to ONNX, then quantized by ORT.

The baseline "what would I get if I let ONNX Runtime quantize". Stages: capture is
``torch.onnx.export`` (dynamo) of the float model; prepare is ORT's recommended
``quant_pre_process`` (shape inference and graph optimization); convert is
``quantize_static`` with a calibration data reader over the calibration batches
(it calibrates and writes the quantized model) or ``quantize_dynamic``. The qspec
picks the format (QDQ, ORT's default, or QOperator) and the weight granularity.

The simulation of a static cell is the QDQ model of the same calibration run with
every ORT graph optimization off (Q/DQ computed in float); of a dynamic cell,
PyTorch's dynamic simulation (weights QDQ, linear inputs fake-quantized per call).
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from matrix.contract import Quantized
from matrix.formats.float_artifacts import FloatArtifacts
from matrix.formats.onnx import PACKAGES as ONNX_PACKAGES
from matrix.formats.onnx import OnnxModel, export, input_names_of
from matrix.modes import Mode, of_family, register
from matrix.modes.simulation import dynamic_simulation
from matrix.vocabulary import Stage

if TYPE_CHECKING:
    from matrix.contract import CellContext

PER_CHANNEL = ("per_channel", "qoperator_per_channel")
# The float model's ONNX export, made once per process for all of its ort cells.
FLOAT_ONNX = FloatArtifacts()
QOPERATOR = ("qoperator", "qoperator_per_channel")


class CalibrationReader:
    """ORT's CalibrationDataReader over the cell's calibration batches."""

    def __init__(self, names: list[str], batches: list) -> None:
        self.feeds = iter([{n: t.numpy() for n, t in zip(names, batch)} for batch in batches])

    def get_next(self) -> dict | None:
        return next(self.feeds, None)


def input_names(path: Path) -> list[str]:
    import onnx

    return input_names_of(onnx.load(str(path)))


def quantize_static(source: Path, target: Path, ctx: CellContext, qoperator: bool, per_channel: bool) -> bytes:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    reader = type("Reader", (CalibrationReader, CalibrationDataReader), {})(input_names(source), ctx.data.calibration)
    quantize_static(
        str(source), str(target), reader,
        quant_format=QuantFormat.QOperator if qoperator else QuantFormat.QDQ, per_channel=per_channel,
    )
    return target.read_bytes()


def float_onnx(ctx: CellContext, path: Path) -> bytes:
    """The float model's ONNX export (the dynamo exporter), written to ``path`` when this
    process has not exported the same model yet: its bytes."""
    example = ctx.data.calibration[0]

    def exported() -> bytes:
        export(copy.deepcopy(ctx.float_model).eval(), example, path)
        return path.read_bytes()

    return FLOAT_ONNX.get(ctx.case.model, ctx.float_model, example, exported)


def quantize(ctx: CellContext) -> Quantized:
    from onnxruntime.quantization import quant_pre_process, quantize_dynamic

    per_channel, qoperator = ctx.qspec.variant.per_channel, ctx.qspec.variant.qoperator
    with tempfile.TemporaryDirectory(prefix="qmatrix-ort-") as folder:
        float_path, prepared, quantized = (Path(folder) / n for n in ("float.onnx", "prepared.onnx", "q.onnx"))
        with ctx.clock.stage(Stage.CAPTURE):
            float_path.write_bytes(float_onnx(ctx, float_path))
        with ctx.clock.stage(Stage.PREPARE), contextlib.chdir(folder):
            # in the cell's folder: when its shape inference gives up, ONNX Runtime writes the model
            # it got so far to sym_shape_infer_temp.onnx in the working directory
            quant_pre_process(str(float_path), str(prepared))
        with ctx.clock.stage(Stage.CONVERT):
            if ctx.scheme.name == "ptq_dynamic":
                quantize_dynamic(str(prepared), str(quantized), per_channel=per_channel)
                model = OnnxModel(quantized.read_bytes())
                return Quantized(model, dynamic_simulation(copy.deepcopy(ctx.float_model).eval()),
                                 "PyTorch's dynamic simulation: weights QDQ, linear inputs fake-quantized per call",
                                 stand_in=True)
            model = OnnxModel(quantize_static(prepared, quantized, ctx, qoperator, per_channel))
            simulation = model if not qoperator else OnnxModel(
                quantize_static(prepared, Path(folder) / "qdq.onnx", ctx, False, per_channel))
    return Quantized(model, simulation, "ORT's QDQ model of the same calibration, run with optimizations off")


def covers(backend, kind: str, scheme: str, qspec) -> bool:
    """On a backend that reads ONNX made for ONNX Runtime (OpenVINO), the reference models only:
    the operators' ort cells say on ONNX Runtime what the quantizer does with each op."""
    return backend.family == "onnx" or kind == "model"


register(Mode(
    "ort", "ONNX Runtime's quantizer (quantize_static / quantize_dynamic) on the float model exported to ONNX",
    reaches=of_family("onnx"), schemes=("ptq_static", "ptq_dynamic"), quantize=quantize,
    packages=ONNX_PACKAGES, extra="onnx", tools=("ONNX Runtime",), covers=covers,
))
