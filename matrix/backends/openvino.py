"""OpenVINO: a model NNCF quantized, compiled and run by the OpenVINO CPU plugin.

The ``nncf`` mode hands over an OpenVINO model (:class:`~matrix.formats.openvino.OpenVinoModel`);
its compilation, inspection and layer reading are :mod:`matrix.formats.openvino`.
"""

from __future__ import annotations

import torch

from matrix.backends import Backend, register
from matrix.contract import Deployed
from matrix.formats import openvino
from matrix.vocabulary import Stage

# The backend runs what NNCF made: both install with its extra.
PACKAGES = {**openvino.PACKAGES, "nncf": "nncf"}


def deploy(ctx, model: torch.nn.Module) -> Deployed:
    if not isinstance(model, openvino.OpenVinoModel):
        raise TypeError(f"the openvino backend deploys an OpenVINO model, not {type(model).__name__}")
    with ctx.clock.stage(Stage.LOAD):
        compiled = model.compiled()
        inspection = openvino.inspect_compiled(compiled)
    if ctx.artifacts is not None:
        ctx.artifacts.mkdir(parents=True, exist_ok=True)
        openvino.openvino().save_model(model.ov_model, str(ctx.artifacts / "model.xml"), compress_to_fp16=False)
    return Deployed(model, inspection, size_bytes=openvino.ir_bytes(model.ov_model))


register(Backend(
    "openvino", "openvino",
    "quantized by NNCF and run by the OpenVINO CPU plugin (f32 float precision, snippets off)",
    deploy=deploy, packages=PACKAGES, extra="openvino", tools=("OpenVINO", "oneDNN"),
))
