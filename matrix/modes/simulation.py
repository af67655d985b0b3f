"""Fake-quant simulations: eager mode has no reference (QDQ) conversion of its own,
and a QAT model's simulation is what it was trained as.

Static: the calibrated observers become fixed fake-quant modules, weights are
replaced by their quantize-dequantize, and a module that runs on quantized
tensors without an observer of its own (pooling, say) rounds its output to its
input's grid, as the quantized kernel does. Dynamic: weights are quantize-dequantized
and the inputs of linear layers fake-quantized per call from their own range.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.ao.nn.quantized.modules.utils import _quantize_weight
from torch.ao.quantization import DeQuantStub, default_dynamic_qconfig, disable_observer
from torch.ao.quantization.fake_quantize import FakeQuantizeBase
from torch.ao.quantization.observer import ObserverBase

WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Linear,
            nn.Embedding, nn.EmbeddingBag)
RECURRENT = (nn.LSTM, nn.GRU)
TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
GRID = "_qmatrix_grid"
# Modules whose eager quantized counterpart is built without their observer (from_float takes no
# qparams: torch/ao/nn/quantized/modules/activation.py ReLU6, dropout.py Dropout): they put out
# their input's grid, whatever the observer after them saw.
KEEP_INPUT_QPARAMS = (nn.ReLU6, nn.Dropout)


class FixedFakeQuant(nn.Module):
    """Quantize-dequantize with the qparams a calibrated observer computed, on the
    full range of its dtype: convert stores activations that way (``reduce_range``
    shrinks the scale, not the stored range)."""

    def __init__(self, observer: ObserverBase) -> None:
        super().__init__()
        scale, zero_point = observer.calculate_qparams()
        self.register_buffer("scale", scale.float().flatten())
        self.register_buffer("zero_point", zero_point.int().flatten())
        if observer.dtype == torch.qint32:  # a 16-bit grid (int16 activations) kept in qint32
            self.quant_min, self.quant_max = observer.quant_min, observer.quant_max
        else:
            info = torch.iinfo(observer.dtype)
            self.quant_min, self.quant_max = info.min, info.max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qparams = (float(self.scale[0]), int(self.zero_point[0]), self.quant_min, self.quant_max)
        return _on_grid(x, qparams)


def _on_grid(x: torch.Tensor, qparams: tuple[float, int, int, int]) -> torch.Tensor:
    """Fake-quantize ``x`` and remember the grid on the result."""
    y = torch.fake_quantize_per_tensor_affine(x, *qparams)
    setattr(y, GRID, qparams)
    return y


def _keep_input_grid(module: nn.Module, args: tuple, output: object) -> object:
    grid = next((getattr(a, GRID) for a in args if hasattr(a, GRID)), None)
    if grid is None or not isinstance(output, torch.Tensor):
        return output
    return _on_grid(output, grid)


def _fake_quant_weight(module: nn.Module, observer: ObserverBase) -> None:
    observer(module.weight.detach())
    module.weight.data = _quantize_weight(module.weight.detach().float(), observer).dequantize()


def _drop_observers_convert_drops(sim: nn.Module) -> None:
    """An eager module that convert rebuilds without its observer runs on its input's grid in
    the simulation too, its observer (or fake-quant) left out."""
    for module in list(sim.modules()):
        if isinstance(module, KEEP_INPUT_QPARAMS) and hasattr(module, "activation_post_process"):
            module.activation_post_process = nn.Identity()
            module.register_forward_hook(_keep_input_grid)


def static_simulation(prepared: nn.Module) -> nn.Module:
    """The calibrated eager model with observers turned into fixed fake-quants."""
    sim = copy.deepcopy(prepared)
    _drop_observers_convert_drops(sim)
    for module in sim.modules():
        observer = getattr(module, "activation_post_process", None)
        if isinstance(observer, ObserverBase) and observer.dtype in (torch.quint8, torch.qint8, torch.qint32):
            module.activation_post_process = FixedFakeQuant(observer)
        qconfig = getattr(module, "qconfig", None)
        if qconfig is not None and type(module) in WEIGHTED:
            _fake_quant_weight(module, qconfig.weight())
    _keep_grids(sim)
    return sim


def qat_simulation(trained: nn.Module) -> nn.Module:
    """What QAT trained: the trained model with its fake-quants frozen. Weights are
    observed once more and quantize-dequantized, as convert does (the optimizer
    moved them after their last observation); a conv-bn module keeps its
    on-the-fly fake-quant of the folded weight. Works on eager and FX QAT models."""
    sim = copy.deepcopy(trained).eval()
    _drop_observers_convert_drops(sim)
    for module in sim.modules():
        weight_fake_quant = getattr(module, "weight_fake_quant", None)
        if isinstance(weight_fake_quant, FakeQuantizeBase) and not hasattr(module, "bn"):
            weight_fake_quant(module.weight.detach())
            module.weight.data = _quantize_weight(module.weight.detach().float(), weight_fake_quant).dequantize()
            weight_fake_quant.disable_fake_quant()
    sim.apply(disable_observer)
    for module in sim.modules():
        if isinstance(module, FakeQuantizeBase):
            module.register_forward_hook(_mark_grid)
    _keep_grids(sim)
    return sim


def _mark_grid(fake_quant: FakeQuantizeBase, args: tuple, output: torch.Tensor) -> torch.Tensor:
    if fake_quant.scale.numel() == 1 and fake_quant.fake_quant_enabled[0]:
        grid = (float(fake_quant.scale), int(fake_quant.zero_point), fake_quant.quant_min, fake_quant.quant_max)
        setattr(output, GRID, grid)
    return output


def _keep_grids(sim: nn.Module) -> None:
    for module in sim.modules():
        leaf = not any(True for _ in module.children())
        computes = isinstance(module, (*WEIGHTED, *RECURRENT, FixedFakeQuant, FakeQuantizeBase, DeQuantStub))
        if leaf and not computes:
            module.register_forward_hook(_keep_input_grid)


def _dynamic_input_hook(module: nn.Module, args: tuple) -> tuple:
    x = args[0]
    low, high = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = max((high - low) / 255.0, 1e-8)
    zero_point = int(round(-low / scale))
    return (torch.fake_quantize_per_tensor_affine(x, scale, zero_point, 0, 255), *args[1:])


def dynamic_simulation(model: nn.Module) -> nn.Module:
    """Weights quantize-dequantized as ``quantize_dynamic`` stores them; linear inputs
    fake-quantized from their own range on every call. Recurrent layers get their
    weights quantized only."""
    sim = copy.deepcopy(model)
    for module in sim.modules():
        if type(module) is nn.Linear:
            _fake_quant_weight(module, default_dynamic_qconfig.weight())
            module.register_forward_pre_hook(_dynamic_input_hook)
        elif isinstance(module, RECURRENT):
            quantize_weights(module, default_dynamic_qconfig.weight)
    return sim


def quantize_weights(recurrent: nn.Module, observer: type[ObserverBase]) -> None:
    """A recurrent layer's weight matrices quantize-dequantized, each observed on its own."""
    for name, param in recurrent.named_parameters():
        if name.startswith("weight"):
            observing = observer()
            observing(param.detach())
            param.data = _quantize_weight(param.detach().float(), observing).dequantize()


def weight_only_simulation(model: nn.Module) -> nn.Module:
    """Weights of linear and conv layers quantize-dequantized per channel (symmetric int8);
    activations stay float."""
    from torch.ao.quantization import default_per_channel_weight_observer

    sim = copy.deepcopy(model)
    for module in sim.modules():
        if type(module) in WEIGHTED and not isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            _fake_quant_weight(module, default_per_channel_weight_observer())
    return sim


def fp16_simulation(model: nn.Module) -> nn.Module:
    """Every float parameter rounded to float16 and back."""
    sim = copy.deepcopy(model)
    with torch.no_grad():
        for param in sim.parameters():
            if param.is_floating_point():
                param.copy_(param.half().float())
    return sim
