"""PT2E models lowered by ``torch.compile`` (Inductor) on the CPU.

Freezing is on, as PyTorch's x86 Inductor PT2E tutorial asks: without it
Inductor compiles the Q/DQ pattern in float and no int8 kernel runs. The
generated code is the artifact: the oneDNN int8 kernels it calls (and the integer
matmul, ``_int_mm``, of torchao's int8 dynamic linears) are the quantized ops; float
convolutions and matmuls are the float ops.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any
from unittest import mock

import torch

from matrix.backends import Backend, register
from matrix.cell import Unavailable
from matrix.contract import Deployed, Inspection
from matrix.formats.compiled import CompiledGraph
from matrix.formats.pytorch import serialized_bytes, time_split
from matrix.qconfigs import pt2e_config
from matrix.qspecs import QSpec
from matrix.vocabulary import Stage

# oneDNN's int8 kernels (PT2E's Q/DQ patterns), and the integer matmul torchao's int8 dynamic
# linears lower to.
QUANTIZED_CALL = re.compile(r"torch\.ops\.onednn\.(q\w+)|extern_kernels\.(_int_mm)\b")
FLOAT_CALL = re.compile(
    r"(extern_kernels\.(?:mm|addmm|bmm|baddbmm|convolution)"
    r"|torch\.ops\.mkldnn\.(?:_convolution_pointwise|_linear_pointwise|_convolution_transpose_pointwise)"
    r"|torch\.ops\.mkl\.\w+)"
)


def inspect_code(sources: list[str]) -> Inspection:
    found = Inspection()
    for source in sources:
        for line in source.splitlines():
            if line.lstrip().startswith(("#", "import", "from", "assert")):
                continue
            found.quantized += Counter(onednn or integer for onednn, integer in QUANTIZED_CALL.findall(line))
            found.floating += Counter(m.split(".")[-1] for m in FLOAT_CALL.findall(line))
    return found


def compiled(model: torch.nn.Module) -> Callable[..., Any]:
    """``model`` compiled as deployed: freezing on, no autograd."""
    from torch._inductor import config as inductor_config

    compiled_model = torch.compile(model)

    def run(*inputs: torch.Tensor) -> Any:
        with inductor_config.patch(freezing=True), torch.no_grad():
            return compiled_model(*inputs)

    return run


def generated_code(run: Callable[..., Any], *inputs: torch.Tensor) -> list[str]:
    """Run ``run`` once and return the code Inductor generated for it: what
    ``torch._inductor.utils.run_and_get_code`` does, without the ``torch._dynamo.reset()`` it
    starts with, which throws away every model compiled before (the float model a cell is timed
    against among them). A model compiled afresh is compiled whatever came before."""
    from torch._inductor.graph import GraphLowering

    codes: list[str] = []
    with mock.patch.object(GraphLowering, "save_output_code", codes.append):
        run(*inputs)
    return codes


def deploy(ctx, model: torch.nn.Module) -> Deployed:
    with ctx.clock.stage(Stage.EXPORT):
        if not isinstance(model, torch.fx.GraphModule):
            # A module not yet captured (the float model it is timed against) is captured the
            # way PT2E captures one, so it compiles as a graph of its own.
            model = torch.export.export(model, ctx.data.calibration[0]).module()
        run = compiled(model)
        sources = generated_code(run, *ctx.data.calibration[0])
        size = serialized_bytes(model)
    inspection = inspect_code(sources)
    if isinstance(model, torch.fx.GraphModule):
        run = CompiledGraph(run, model, compiled)
    return Deployed(run, inspection, size_bytes=size, profile=lambda inputs: time_split(run, inputs))


def pt2e_quantizer(scheme: str, qspec: QSpec):
    try:
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86q
    except ImportError:
        try:
            from torch.ao.quantization.quantizer import x86_inductor_quantizer as x86q
        except ImportError as exc:
            raise Unavailable(f"X86InductorQuantizer not found: {exc}") from exc
    config = x86q.get_default_x86_inductor_quantization_config(
        is_qat=scheme == "qat", is_dynamic=scheme == "ptq_dynamic"
    )
    return x86q.X86InductorQuantizer().set_global(pt2e_config(config, qspec.knobs, scheme == "qat"))


def unavailable_reason() -> str | None:
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    if "onednn" not in torch.backends.quantized.supported_engines:
        return "this torch build has no oneDNN quantized engine for Inductor's int8 kernels"
    return None


register(Backend(
    "inductor", "torch_compile",
    "PT2E model lowered by torch.compile (Inductor, freezing on) to oneDNN int8 kernels",
    deploy=deploy, unavailable_check=unavailable_reason, pt2e_quantizer=pt2e_quantizer, pt2e_knobs="all",
    tools=("Inductor", "X86InductorQuantizer", "oneDNN", "onednn"),
))
