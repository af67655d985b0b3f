"""The zoo: real architectures, built from Hugging Face transformers' own code.

Each model is its library's class built from a config, with random weights seeded by the
model's name (PyTorch's default initialization, see :func:`default_init`; nothing is
downloaded), batch-norm statistics estimated on its inputs, and run as that code is: no QuantStub, no
FloatFunctional, no fusion list, no hand refactoring. The only wrapper returns the one output
tensor the matrix compares (``logits``, or the last hidden state of an encoder).

Sizes are small so that a cell stays cheap on two cores, but every architecture keeps the
blocks that make it what it is (inverted residuals, squeeze-excitation, patch embeddings,
attention with rotary embeddings, ...): what breaks on a real model breaks on these.
"""

from __future__ import annotations

import importlib
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


@dataclass(frozen=True)
class Architecture:
    """One zoo model as data: the transformers class, its config and why it has this size."""

    name: str
    model_class: str
    config_class: str
    config: dict[str, Any]
    sample: Sampler
    description: str
    output: str = "logits"
    classifier: bool = True

    def build(self) -> nn.Module:
        transformers = importlib.import_module("transformers")
        config = getattr(transformers, self.config_class)(**self.config)
        return OutputField(default_init(getattr(transformers, self.model_class)(config)), self.output)

    def spec(self) -> ModelSpec:
        return ModelSpec(self.name, self.build, self.description, sample=self.sample, kind="zoo",
                         classifier=self.classifier, packages=PACKAGES, extra=EXTRA,
                         tags=(f"transformers.{self.model_class}",))


ZOO = (
    Architecture(
        "mobilenet_v2", "MobileNetV2ForImageClassification", "MobileNetV2Config",
        {"image_size": 64, "depth_multiplier": 0.35, "num_labels": 10}, images(3, 64, 64),
        "MobileNetV2 (all 17 inverted-residual blocks, ReLU6, depthwise convs), width 0.35, 64x64, 0.41 M parameters",
    ),
    Architecture(
        "resnet", "ResNetForImageClassification", "ResNetConfig",
        {"embedding_size": 16, "hidden_sizes": [16, 32, 64, 128], "depths": [1, 1, 1, 1], "layer_type": "basic",
         "num_labels": 10},
        images(3, 64, 64), "ResNet with basic blocks (residual adds, max pool), one block per stage, 64x64, 0.31 M",
    ),
    Architecture(
        "efficientnet", "EfficientNetForImageClassification", "EfficientNetConfig",
        {"image_size": 64, "width_coefficient": 0.25, "depth_coefficient": 0.25, "hidden_dim": 320,
         "num_labels": 10},
        images(3, 64, 64), "EfficientNet (MBConv, squeeze-excitation, SiLU), width and depth 0.25, 64x64",
    ),
    Architecture(
        "convnext", "ConvNextForImageClassification", "ConvNextConfig",
        {"hidden_sizes": [16, 32, 64, 128], "depths": [1, 1, 1, 1], "num_labels": 10, "image_size": 64},
        images(3, 64, 64), "ConvNeXt (7x7 depthwise convs, LayerNorm, GELU, layer scale), one block per stage, 64x64",
    ),
    Architecture(
        "vit", "ViTForImageClassification", "ViTConfig",
        {"image_size": 32, "patch_size": 8, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
         "intermediate_size": 128, "num_labels": 10},
        images(3, 32, 32), "ViT (patch embedding, class token, attention), 2 layers of width 64, 32x32 in 8x8 patches",
    ),
    Architecture(
        "bert", "BertForSequenceClassification", "BertConfig",
        {"vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
         "intermediate_size": 128, "max_position_embeddings": 64, "num_labels": 4},
        tokens(1000, 16), "BERT encoder with a pooler and a classifier, 2 layers of width 64, 16 tokens",
    ),
    Architecture(
        "llama", "LlamaForCausalLM", "LlamaConfig",
        # use_cache=False: LlamaForCausalLM returns a DynamicCache otherwise, which torch.export
        # cannot flatten (it has no pytree); a user exporting a decoder sets it too.
        {"vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
         "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64, "use_cache": False},
        tokens(1000, 16),
        "Llama decoder (RMSNorm, rotary embeddings, grouped-query attention, SwiGLU), 2 layers of width 64, "
        "16 tokens, use_cache=False; logits over a 1,000-token vocabulary",
        classifier=False,
    ),
    Architecture(
        "whisper_encoder", "WhisperForAudioClassification", "WhisperConfig",
        {"d_model": 64, "encoder_layers": 2, "encoder_attention_heads": 2, "encoder_ffn_dim": 128,
         "num_mel_bins": 16, "max_source_positions": 50, "decoder_layers": 1, "decoder_attention_heads": 2,
         "decoder_ffn_dim": 128, "num_labels": 10},
        sequences(16, 100),
        "Whisper's audio encoder (two Conv1d, GELU, attention) with a classification head, 2 layers of width 64, "
        "16 mel bins x 100 frames",
    ),
)

for _architecture in ZOO:
    register(_architecture.spec())
