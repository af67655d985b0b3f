"""The zoo: real architectures, built from Hugging Face transformers' own code.

Each model is its library's class built from a config, with random weights seeded by the
model's name (PyTorch's default initialization, see :func:`default_init`; nothing is
downloaded), batch-norm statistics estimated on its inputs, and run as that code is: no QuantStub, no
FloatFunctional, no fusion list, no hand refactoring. The only wrapper returns the one output
tensor the matrix compares (``logits``, or the last hidden state of an encoder).

Sizes are small so that the tier's 528 cells fit in 15 minutes on two cores (one transformer
layer, MobileNetV2's first 4 blocks, EfficientNet-B0's first 4 stages), but every architecture
keeps the blocks that make it what it is (inverted residuals, squeeze-excitation, patch
embeddings, attention with rotary embeddings, ...): what breaks on a real model breaks on these.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from models import ModelSpec, Sampler, images, register, sequences, tokens

PACKAGES = {"transformers": "transformers"}
EXTRA = "zoo"


def default_init(model: nn.Module) -> nn.Module:
    """Every torch module of ``model`` re-initialized the way PyTorch initializes it (as the
    reference models are). transformers' own initialization is made for training from scratch
    and leaves some architectures degenerate untrained: EfficientNet's batch-norm weights drawn
    from N(0, 0.02) shrink its activations to 1e-35 by the last block, a float model whose output
    is zero for every input. Modules of transformers' own classes (RMSNorm, say) keep theirs."""
    for module in model.modules():
        if type(module).__module__.startswith("torch.nn") and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model


class OutputField(nn.Module):
    """A transformers model returning one field of its output (a ``ModelOutput``) as a tensor."""

    def __init__(self, model: nn.Module, field: str) -> None:
        super().__init__()
        self.model = model
        self.field = field

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.model(x), self.field)


def first_blocks(count: int) -> Callable[[nn.Module], nn.Module]:
    """MobileNetV2 with the first ``count`` of its 16 inverted-residual blocks. transformers'
    class builds all 16 whatever its config says (it has no depth setting), so the others are
    dropped after building, and the 1x1 convolution after the blocks is built again by the same
    class (``MobileNetV2ConvLayer``) for the width of the last block kept."""

    def trim(model: nn.Module) -> nn.Module:
        from transformers.models.mobilenet_v2.modeling_mobilenet_v2 import MobileNetV2ConvLayer

        body = model.mobilenet_v2
        body.layer = body.layer[:count]
        head = body.conv_1x1.convolution
        body.conv_1x1 = MobileNetV2ConvLayer(
            model.config, in_channels=body.layer[-1].reduce_1x1.convolution.out_channels,
            out_channels=head.out_channels, kernel_size=1)
        return model

    return trim


@dataclass(frozen=True)
class Architecture:
    """One zoo model as data: the transformers class, its config, why it has this size and,
    where the class cannot be made smaller by its config, how it is cut down (``trim``)."""

    name: str
    model_class: str
    config_class: str
    config: dict[str, Any]
    sample: Sampler
    description: str
    output: str = "logits"
    classifier: bool = True
    trim: Callable[[nn.Module], nn.Module] | None = None

    def build(self) -> nn.Module:
        transformers = importlib.import_module("transformers")
        config = getattr(transformers, self.config_class)(**self.config)
        model = getattr(transformers, self.model_class)(config)
        if self.trim is not None:
            model = self.trim(model)
        return OutputField(default_init(model), self.output)

    def spec(self) -> ModelSpec:
        return ModelSpec(self.name, self.build, self.description, sample=self.sample, kind="zoo",
                         classifier=self.classifier, packages=PACKAGES, extra=EXTRA,
                         tags=(f"transformers.{self.model_class}",))


ZOO = (
    Architecture(
        "mobilenet_v2", "MobileNetV2ForImageClassification", "MobileNetV2Config",
        {"image_size": 64, "depth_multiplier": 0.35, "num_labels": 10}, images(3, 64, 64),
        "MobileNetV2 (its stem, the first 4 of its 16 inverted-residual blocks, two of them with a residual add, "
        "ReLU6, depthwise convs, the 1x1 head), width 0.35, 64x64",
        # All 16 blocks made it the costliest zoo model by far: 800 s of its 63 cells' stage time
        # here (Inductor and ExecuTorch lower each block's kernels), against 260 s for BERT; with
        # 6 blocks it was still the costliest (410 s).
        trim=first_blocks(4),
    ),
    Architecture(
        "resnet", "ResNetForImageClassification", "ResNetConfig",
        {"embedding_size": 16, "hidden_sizes": [16, 32, 64, 128], "depths": [1, 1, 1, 1], "layer_type": "basic",
         "num_labels": 10},
        images(3, 64, 64), "ResNet with basic blocks (residual adds, max pool), one block per stage, 64x64, 0.31 M",
    ),
    Architecture(
        "efficientnet", "EfficientNetForImageClassification", "EfficientNetConfig",
        # The first four of EfficientNet-B0's seven stages (the config lists them), depth 0.5 so
        # that the last stage repeats its block and has EfficientNet's residual add (one block per
        # stage has none). hidden_dim is the top conv's width (round_filters(1280) at width 0.1)
        # and, in transformers' code, the kernel of its AvgPool2d(hidden_dim, ceil_mode=True)
        # pooler: litert-torch pads the pooler's input up to that kernel, a [16, 320, 320, 320]
        # float tensor (2 GB) at width 0.25, 134 GB at B0's 1280.
        {"image_size": 64, "width_coefficient": 0.1, "depth_coefficient": 0.5, "hidden_dim": 128,
         "in_channels": [32, 16, 24, 40], "out_channels": [16, 24, 40, 80], "kernel_sizes": [3, 3, 5, 3],
         "strides": [1, 2, 2, 2], "num_block_repeats": [1, 2, 2, 3], "expand_ratios": [1, 6, 6, 6],
         "num_labels": 10},
        images(3, 64, 64),
        "EfficientNet (MBConv, squeeze-excitation, SiLU, a residual add), B0's first four stages, width 0.1, "
        "depth 0.5, 64x64",
    ),
    Architecture(
        "convnext", "ConvNextForImageClassification", "ConvNextConfig",
        {"hidden_sizes": [16, 32, 64, 128], "depths": [1, 1, 1, 1], "num_labels": 10, "image_size": 64},
        images(3, 64, 64), "ConvNeXt (7x7 depthwise convs, LayerNorm, GELU, layer scale), one block per stage, 64x64",
    ),
    Architecture(
        "vit", "ViTForImageClassification", "ViTConfig",
        {"image_size": 32, "patch_size": 8, "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
         "intermediate_size": 128, "num_labels": 10},
        images(3, 32, 32), "ViT (patch embedding, class token, attention), 1 layer of width 64, 32x32 in 8x8 patches",
    ),
    Architecture(
        "bert", "BertForSequenceClassification", "BertConfig",
        {"vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
         "intermediate_size": 128, "max_position_embeddings": 64, "num_labels": 4},
        tokens(1000, 16), "BERT encoder with a pooler and a classifier, 1 layer of width 64, 16 tokens",
    ),
    Architecture(
        "llama", "LlamaForCausalLM", "LlamaConfig",
        # use_cache=False: LlamaForCausalLM returns a DynamicCache otherwise, which torch.export
        # cannot flatten (it has no pytree); a user exporting a decoder sets it too.
        {"vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
         "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64, "use_cache": False},
        tokens(1000, 16),
        "Llama decoder (RMSNorm, rotary embeddings, grouped-query attention, SwiGLU), 1 layer of width 64, "
        "16 tokens, use_cache=False; logits over a 1,000-token vocabulary",
        classifier=False,
    ),
    Architecture(
        "whisper_encoder", "WhisperForAudioClassification", "WhisperConfig",
        {"d_model": 64, "encoder_layers": 1, "encoder_attention_heads": 2, "encoder_ffn_dim": 128,
         "num_mel_bins": 16, "max_source_positions": 50, "decoder_layers": 1, "decoder_attention_heads": 2,
         "decoder_ffn_dim": 128, "num_labels": 10},
        sequences(16, 100),
        "Whisper's audio encoder (two Conv1d, GELU, attention) with a classification head, 1 layer of width 64, "
        "16 mel bins x 100 frames",
    ),
)

for _architecture in ZOO:
    register(_architecture.spec())
