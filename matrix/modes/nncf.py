"""NNCF post-training quantization (and QAT) for OpenVINO.

The qspec picks what NNCF quantizes: ``default`` the float model converted to OpenVINO
(``ov.convert_model`` then ``nncf.quantize`` on the ov.Model, NNCF's recommended path),
``nncf_torch`` the PyTorch module itself (``nncf.quantize`` on the nn.Module, then
converted), ``nncf_onnx`` the model exported to ONNX (``nncf.quantize`` on the
ModelProto, then read by OpenVINO). QAT trains the module ``nncf.quantize`` returned for
PyTorch (its fake-quant scales are parameters), as the PyTorch modes train, then converts.

The simulation is NNCF's quantization of the PyTorch module run in PyTorch (its
fake-quants): for the other paths, the same algorithm on the same calibration batches.

NNCF 2 (legacy tracing) wraps torch's functions and ``nn.Module.__call__`` for the whole process
when ``nncf.torch`` is imported: every later cell of the worker would then trace through NNCF's
wrappers, which dynamo cannot (``torch.export`` fails in any mode). Its torch work runs with the
wrappers on and they are taken off after; NNCF 3 traces without them.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from matrix.contract import Quantized
from matrix.formats.onnx import export, input_names_of
from matrix.formats.openvino import PACKAGES as OPENVINO_PACKAGES
from matrix.formats.openvino import OpenVinoModel, openvino
from matrix.modes import Mode, of_family, register, train
from matrix.vocabulary import Stage

if TYPE_CHECKING:
    from matrix.contract import CellContext

# What nncf.quantize is given (matrix/qspecs.py Variant.nncf_input).
TORCH, ONNX = "torch", "onnx"


# NNCF compiles a torch C++ extension on its first use and gives up after 60 s
# (NNCF_EXTENSION_LOAD_TIMEOUT): on two busy cores the build takes 45-75 s. The harness
# allows it this long, unless the user set the variable; the cell's time limit still bounds it.
EXTENSION_BUILD_SECONDS = 300


@functools.cache
def nncf() -> Any:
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", str(EXTENSION_BUILD_SECONDS))
    import nncf as module
    import rich

    module.set_log_level(logging.ERROR)
    rich.get_console().quiet = True
    return module


@contextlib.contextmanager
def legacy_patching() -> Iterator[bool]:
    """NNCF 2's torch wrappers on for the block and off after it (importing ``nncf.torch`` puts them
    on); yields whether this NNCF has them."""
    try:
        from nncf.torch.dynamic_graph import patch_pytorch
    except ImportError:
        yield False
        return
    patch_pytorch.patch_torch_operators()
    try:
        yield True
    finally:
        patch_pytorch.unpatch_torch_operators()


class Patched(torch.nn.Module):
    """An NNCF 2 model (NNCFNetwork) whose calls run with NNCF's wrappers on: its quantizers are
    hooks of the wrapped functions, so without them it would compute in float."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        with legacy_patching():
            return self.inner(*args)


def _convert(model: torch.nn.Module, example: tuple[torch.Tensor, ...]):
    """``ov.convert_model`` of a module, traced without autograd: with it, nn.MultiheadAttention
    leaves its fast path between the tracer's two runs and the trace check fails."""
    with torch.no_grad():
        return openvino().convert_model(model, example_input=example, input=[tuple(t.shape) for t in example])


def quantize(ctx: CellContext) -> Quantized:
    with legacy_patching() as legacy:
        quantized = _quantize(ctx)
    return dataclasses.replace(quantized, simulation=Patched(quantized.simulation)) if legacy else quantized


def _quantize(ctx: CellContext) -> Quantized:
    nncf_ = nncf()
    example = ctx.data.calibration[0]
    batches = ctx.data.calibration
    float_model = copy.deepcopy(ctx.float_model).eval()
    path = TORCH if ctx.scheme.trains else ctx.qspec.variant.nncf_input
    if path == TORCH:
        with ctx.clock.stage(Stage.CALIBRATE):
            quantized = nncf_.quantize(float_model, nncf_.Dataset([tuple(b) for b in batches]))
        if ctx.scheme.trains:
            train(quantized, ctx)
        with ctx.clock.stage(Stage.CONVERT):
            simulation = copy.deepcopy(quantized).eval()
            ov_model = _convert(quantized.eval(), example)
        return Quantized(OpenVinoModel(ov_model), simulation, "the NNCF-quantized module run in PyTorch",
                         float_artifact=lambda: OpenVinoModel(_convert(copy.deepcopy(ctx.float_model).eval(), example)))
    if path == ONNX:
        import onnx

        with tempfile.TemporaryDirectory(prefix="qmatrix-nncf-") as folder:
            source, target = Path(folder) / "float.onnx", Path(folder) / "int8.onnx"
            with ctx.clock.stage(Stage.CAPTURE):
                model = export(float_model, example, source)
                names = input_names_of(model)
            with ctx.clock.stage(Stage.CALIBRATE):
                dataset = nncf_.Dataset(batches, lambda b: {n: t.numpy() for n, t in zip(names, b)})
                onnx.save(nncf_.quantize(model, dataset), str(target))
            with ctx.clock.stage(Stage.CONVERT):
                ov_model = openvino().convert_model(str(target))
            float_onnx = source.read_bytes()
        float_artifact = functools.partial(_onnx_artifact, float_onnx)
    else:
        with ctx.clock.stage(Stage.CAPTURE):
            float_ov = _convert(float_model, example)
        with ctx.clock.stage(Stage.CALIBRATE):
            ov_model = nncf_.quantize(float_ov, nncf_.Dataset(batches, lambda b: [t.numpy() for t in b]))
        float_artifact = functools.partial(OpenVinoModel, float_ov)
    with ctx.clock.stage(Stage.CONVERT):
        simulation = nncf_.quantize(copy.deepcopy(float_model), nncf_.Dataset([tuple(b) for b in batches])).eval()
    return Quantized(OpenVinoModel(ov_model), simulation,
                     "NNCF's quantization of the PyTorch module (same algorithm and calibration), run in PyTorch",
                     float_artifact=float_artifact, stand_in=True)


def _onnx_artifact(content: bytes) -> OpenVinoModel:
    """The float ONNX model read the way the quantized one is (``ov.convert_model`` of a file),
    made only when a cell is localized."""
    with tempfile.TemporaryDirectory(prefix="qmatrix-nncf-") as folder:
        path = Path(folder) / "float.onnx"
        path.write_bytes(content)
        return OpenVinoModel(openvino().convert_model(str(path)))


register(Mode(
    "nncf", "NNCF quantization of the model (as OpenVINO IR, PyTorch module or ONNX) for OpenVINO",
    reaches=of_family("openvino"), schemes=("ptq_static", "qat"), quantize=quantize,
    packages={**OPENVINO_PACKAGES, "nncf": "nncf"}, extra="openvino", tools=("NNCF",),
))
