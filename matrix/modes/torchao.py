"""torchao's ``quantize_(model, config)``: the linears' weights swapped for torchao's tensor
subclasses, the API PyTorch's docs now point to for LLM-style linear layers.

The config comes from the scheme and the qspec's weight width (``Variant.torchao_weight``):

- ``weight_only``: ``Int8WeightOnlyConfig`` (int8 per row); ``intx4``: ``IntxWeightOnlyConfig``
  (int4 in groups of 32); ``int4``: ``Int4WeightOnlyConfig`` (int4 in groups of 32, its
  default packing).
- ``ptq_dynamic``: ``Int8DynamicActivationInt8WeightConfig`` (int8 weights per row, activations
  per token, quantized per call); ``intx4``: ``Int8DynamicActivationIntxWeightConfig`` (int4
  weights in groups of 32).
- ``float8``: ``Float8WeightOnlyConfig`` and ``Float8DynamicActivationFloat8WeightConfig`` (e4m3).

A config the installed torchao lacks is unavailable with the import error. The simulation is
the same numerics in float, made from the quantized model's own tensors: every quantized
weight replaced by its dequantized value and, for a dynamic config, every quantized linear's
input quantized and dequantized per call by the activation quantizer torchao itself applies.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import torch
from torch import nn

from matrix.cell import Unavailable
from matrix.contract import CellContext, Quantized
from matrix.modes import Mode, register
from matrix.vocabulary import Stage

FAMILIES = ("torch_eager", "torch_compile", "executorch")
# Weights in groups of 32 input features, the group ExecuTorch's XNNPACK delegation needs at the
# least (a multiple of 32) and Int4WeightOnlyConfig's smallest; the qspecs run them on the models
# whose every linear is a multiple of 32 features wide.
GROUP = 32
# Configs whose kernels torchao offers on a GPU only, with what torchao's own check asks for.
NEEDS_GPU = {("ptq_dynamic", "float8"): "Float8DynamicActivationFloat8WeightConfig needs CUDA compute capability "
                                        "8.9 or more, an MI300 or an XPU (torchao's check in its float8 workflow)"}


def config(scheme: str, weight: str) -> Any:
    """torchao's config for a scheme and a weight width ("int8", "intx4", "int4", "float8")."""
    try:
        from torchao.quantization import quant_api as api
        from torchao.quantization.granularity import PerGroup
    except ImportError as exc:
        raise Unavailable(f"torchao's quantize_ API not found: {exc}") from exc
    made = {
        ("weight_only", "int8"): lambda: api.Int8WeightOnlyConfig(),
        ("weight_only", "intx4"): lambda: api.IntxWeightOnlyConfig(weight_dtype=torch.int4,
                                                                    granularity=PerGroup(GROUP)),
        ("weight_only", "int4"): lambda: api.Int4WeightOnlyConfig(group_size=GROUP),
        ("ptq_dynamic", "int8"): lambda: api.Int8DynamicActivationInt8WeightConfig(),
        ("ptq_dynamic", "intx4"): lambda: api.Int8DynamicActivationIntxWeightConfig(
            weight_dtype=torch.int4, weight_granularity=PerGroup(GROUP)),
        ("weight_only", "float8"): lambda: api.Float8WeightOnlyConfig(),
        ("ptq_dynamic", "float8"): lambda: api.Float8DynamicActivationFloat8WeightConfig(),
    }
    if (scheme, weight) in NEEDS_GPU and not torch.cuda.is_available():
        raise Unavailable(f"{NEEDS_GPU[(scheme, weight)]}; this machine has no GPU")
    try:
        return made[(scheme, weight)]()
    except AttributeError as exc:
        raise Unavailable(f"the installed torchao has no config for {scheme} with {weight} weights: {exc}") from exc


@functools.cache
def _quantize_() -> Any:
    from torchao.quantization import quantize_

    return quantize_


def _activation_fake_quant(weight: Any) -> Any:
    """The per-call activation quantize-dequantize a quantized weight applies to its linear's
    input, as torchao applies it; None for a weight-only one."""
    kwargs = getattr(weight, "act_quant_kwargs", None)
    if kwargs is not None:  # Int8Tensor: per-token int8, symmetric or not
        from torchao.quantization.quantize_.common import _choose_quant_func_and_quantize_tensor

        return lambda x: _choose_quant_func_and_quantize_tensor(x, kwargs).dequantize()
    if hasattr(weight, "input_quant_func"):  # LinearActivationQuantizedTensor (torchao before 0.15)
        return lambda x: weight.input_quant_func(x, **weight.quant_kwargs).dequantize()
    if getattr(weight, "activation_quantization", None) is not None:  # IntxUnpackedToInt8Tensor
        from torchao.quantization.quantize_.workflows.intx import intx_unpacked_to_int8_tensor as intx

        return intx._apply_int8_act_asym_per_token_quant_dequant
    return None


def simulation(quantized: nn.Module) -> nn.Module:
    """``quantized`` in float: each subclass weight dequantized, each dynamic linear's input
    quantized and dequantized per call."""
    simulated = copy.deepcopy(quantized)
    for module in simulated.modules():
        weight = getattr(module, "weight", None)
        if weight is None or not hasattr(weight, "dequantize") or type(weight) in (torch.Tensor, nn.Parameter):
            continue
        fake_quant = _activation_fake_quant(weight)
        # A LinearActivationQuantizedTensor has no dequantize of its own: its weight has.
        inner = getattr(weight, "original_weight_tensor", weight)
        module.weight = nn.Parameter(inner.dequantize().detach(), requires_grad=False)
        if fake_quant is not None:
            module.register_forward_pre_hook(lambda _m, args, fq=fake_quant: (fq(args[0]), *args[1:]))
    return simulated


def quantize(ctx: CellContext) -> Quantized:
    chosen = config(ctx.scheme.name, ctx.qspec.variant.torchao_weight)
    with ctx.clock.stage(Stage.CONVERT):
        model = copy.deepcopy(ctx.float_model).eval()
        try:
            _quantize_()(model, chosen)
        except ImportError as exc:  # a kernel package the config needs (mslk's GPU kernels, say)
            raise Unavailable(f"{type(chosen).__name__} needs a package this environment lacks: {exc}") from exc
        simulated = simulation(model)
    ctx.handoff["torchao_config"] = type(chosen).__name__
    return Quantized(model, simulated, f"{type(chosen).__name__}'s numerics in float (dequantized weights"
                     + (", activations quantized per call)" if ctx.scheme.name == "ptq_dynamic" else ")"))


register(Mode(
    "torchao", "torchao's quantize_ with a config (int8 / int4 weight-only, int8 dynamic activations)",
    reaches=lambda backend: backend.family in FAMILIES, schemes=("weight_only", "ptq_dynamic"), quantize=quantize,
    packages={"torchao": "torchao"}, tools=("torchao's quantize_",), own_models_only=False,
    # The suite's models with linears, the zoo's transformers (linears are most of their compute), and
    # the linear, matmul, attention and embedding operators; a user's model (--models-from) runs too.
    models=("mlp", "digits_mlp", "embedding_linear", "transformer_encoder", "sigmoid_softmax_head",
            "vit", "bert", "llama", "whisper_encoder",
            "op_linear", "op_matmul", "op_multihead_attention", "op_embedding"),
))
