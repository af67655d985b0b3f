"""onnx2tf: the float model's ONNX export converted to TensorFlow, then quantized by TensorFlow's
converter and run on LiteRT.

Capture is the float model's ONNX export (the dynamo exporter, shared with the ``ort`` mode);
onnx2tf converts it to a SavedModel, once per model and process, with every input kept in
the layout ONNX gives it (``keep_shape_absolutely_input_names``: a sequence is not taken for
channels-first), so the cell's batches feed it as they are; a rank-4 output comes back
channels last and is permuted to the PyTorch model's layout. Convert is
``tf.lite.TFLiteConverter.from_saved_model``: no optimization (``float``, the path's float
parity), float16 weights (``fp16``), dynamic range (``ptq_dynamic``), or full integer with
the calibration batches as the representative dataset (``ptq_static``; int16 activations
with int8 weights under the ``a_int16`` qspec: 16x8).

onnx2tf pins exact releases of TensorFlow, ONNX and ONNX Runtime older than this suite's, so it
installs without its dependencies (:data:`INSTALL`; it runs on the suite's TensorFlow). When
its inputs look like images, onnx2tf fetches sample images from the network to check its
conversion; here it gets the cell's own calibration inputs instead (nothing is downloaded).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from matrix.contract import Quantized
from matrix.formats.float_artifacts import FloatArtifacts
from matrix.formats.onnx import PACKAGES as ONNX_PACKAGES
from matrix.formats.tflite import TFLiteModel
from matrix.modes import Mode, of_family, register
from matrix.modes.keras import PACKAGES as TENSORFLOW_PACKAGES
from matrix.modes.keras import channels_last, optimized, tensorflow
from matrix.modes.litert import simulation_for
from matrix.modes.ort import float_onnx, input_names
from matrix.qspecs import int16_activations
from matrix.vocabulary import Stage

if TYPE_CHECKING:
    from matrix.contract import CellContext

INSTALL = "pip install --no-deps onnx2tf==1.29.24 onnx-graphsurgeon==0.6.1 sng4onnx==2.0.1"
PACKAGES = {"onnx2tf": "onnx2tf", "onnx_graphsurgeon": "onnx-graphsurgeon", "sng4onnx": "sng4onnx",
            **TENSORFLOW_PACKAGES, **ONNX_PACKAGES}
# The SavedModel onnx2tf made of each model, in a folder that lives as long as the process.
SAVED_MODELS = FloatArtifacts()


@functools.cache
def _folder() -> Path:
    folder = tempfile.TemporaryDirectory(prefix="qmatrix-onnx2tf-")
    atexit.register(folder.cleanup)
    return Path(folder.name)


@contextlib.contextmanager
def _sample_images(ctx: CellContext):
    """onnx2tf's sample images (which it would download) replaced by the cell's calibration inputs."""
    import onnx2tf.onnx2tf as converter

    images = np.concatenate([channels_last(batch[0]) for batch in ctx.data.calibration]).astype(np.float32)
    fetch = converter.download_test_image_data
    converter.download_test_image_data = lambda: images
    try:
        yield
    finally:
        converter.download_test_image_data = fetch


def saved_model(ctx: CellContext) -> Path:
    """The float model's SavedModel by onnx2tf (made once per model and process)."""
    example = ctx.data.calibration[0]

    def made() -> Path:
        import onnx2tf

        tensorflow()
        target = Path(tempfile.mkdtemp(prefix=f"{ctx.case.model}-", dir=_folder()))
        path = target / "float.onnx"
        path.write_bytes(float_onnx(ctx, path))
        with _sample_images(ctx):
            onnx2tf.convert(input_onnx_file_path=str(path), output_folder_path=str(target / "saved_model"),
                            non_verbose=True, keep_shape_absolutely_input_names=input_names(path))
        return target / "saved_model"

    return SAVED_MODELS.get(ctx.case.model, ctx.float_model, example, made)


def output_order(content: bytes, ctx: CellContext) -> tuple[int, ...] | None:
    """How the converted model's output is permuted back to the PyTorch model's layout: None when it
    already is; channels last to channels first when it comes back as onnx2tf writes it."""
    example = ctx.data.calibration[0]
    with torch.no_grad():
        expected = tuple(ctx.float_model(*example).shape)
    got = tuple(TFLiteModel(content)(*example).shape)
    if got == expected:
        return None
    order = (0, len(got) - 1, *range(1, len(got) - 1))
    if tuple(got[i] for i in order) == expected:
        return order
    raise ValueError(f"onnx2tf's model returns shape {got}, the PyTorch model {expected}")


def quantize(ctx: CellContext) -> Quantized:
    with ctx.clock.stage(Stage.CAPTURE):
        folder = saved_model(ctx)
    tf = tensorflow()
    with ctx.clock.stage(Stage.CONVERT):
        float_content = tf.lite.TFLiteConverter.from_saved_model(str(folder)).convert()
        order = output_order(float_content, ctx)
        batches = [[t.detach().numpy() for t in batch] for batch in ctx.data.calibration]
        content = float_content if not ctx.scheme.quantizes else optimized(
            tf.lite.TFLiteConverter.from_saved_model(str(folder)), ctx, batches).convert()
    if not ctx.scheme.quantizes:
        simulation: Any = ctx.float_model
        kind = "the float model itself"
    else:
        simulation, kind = simulation_for(ctx, 16 if int16_activations(ctx.qspec) else 8)
    return Quantized(TFLiteModel(content, output_order=order), simulation, kind, stand_in=ctx.scheme.quantizes,
                     float_artifact=lambda: TFLiteModel(float_content, output_order=order))


register(Mode(
    "onnx2tf", "the float model's ONNX export converted by onnx2tf to a SavedModel, then by tf.lite.TFLiteConverter "
    "(float, float16, dynamic range, int8 or 16x8)",
    reaches=of_family("tflite"), schemes=("float", "ptq_dynamic", "ptq_static", "fp16"), quantize=quantize,
    packages=PACKAGES, extra=INSTALL, tools=("onnx2tf", "TFLiteConverter"),
    covers=lambda backend, kind, scheme, qspec: kind == "model",
))
