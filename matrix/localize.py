"""First divergence: the first layer whose quantized output leaves the float model's.

Both models run on the same inputs and every layer's output is recorded by its
module path: forward hooks on the leaf modules of a module (eager, FX), or, for
a graph captured by ``torch.export`` (PT2E), the last value each module's nodes
compute (a quantize/dequantize node belongs to the module whose output it
quantizes). Quantization fuses layers (conv, bn and relu become one module, or
the bn is folded away), so a quantized layer is matched with the float layer,
from its own name up to the next quantized layer's, whose output it is closest to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from matrix.metrics import sqnr_db

# Wrappers the modes put around a float model (eager's QuantWrapper) and the attribute
# holding the model inside.
WRAPPER_PREFIXES = ("module.",)
QDQ_NAMESPACES = ("quantized_decomposed", "torchao")


@dataclass
class Divergence:
    """The per-layer SQNR series, in float execution order, and the first layer below the limit."""

    layers: list[tuple[str, float]] = field(default_factory=list)
    first: str | None = None
    sqnr_db: float | None = None
    limit_db: float | None = None

    @property
    def lowest(self) -> tuple[str, float] | None:
        return min(self.layers, key=lambda layer: layer[1]) if self.layers else None

    def as_record(self) -> dict:
        lowest = self.lowest
        return {
            "first": self.first, "sqnr_db": self.sqnr_db, "limit_db": self.limit_db,
            "lowest": lowest[0] if lowest else None, "lowest_sqnr_db": round(lowest[1], 3) if lowest else None,
            "layers": [[name, round(value, 3)] for name, value in self.layers],
        }

    def summary(self) -> str:
        lowest = self.lowest
        if lowest is None:
            return "no layer of the quantized model matched a layer of the float model"
        if self.first is None:
            return f"no layer below {self.limit_db:g} dB; lowest at {lowest[0]} ({lowest[1]:.1f} dB)"
        return f"first diverges at {self.first} (sqnr {self.sqnr_db:.1f} dB)"


def _tensor(value: object) -> torch.Tensor | None:
    """The first tensor of a layer's output (an LSTM returns a tuple), dequantized, as float."""
    if isinstance(value, (tuple, list)):
        value = next((v for v in value if isinstance(v, torch.Tensor)), None)
    if not isinstance(value, torch.Tensor):
        return None
    if value.is_quantized:
        value = value.dequantize()
    return value.detach().float() if value.is_floating_point() else None


def hooked_outputs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    """The output of every submodule, by path, in the order they finished.

    An ``nn.Identity`` is skipped: it is what eager fusion leaves where a fused layer
    (a batch-norm, a ReLU) was, and it would only repeat the fused module's output.
    """
    outputs: dict[str, torch.Tensor] = {}

    def recorder(name: str) -> Callable:
        def hook(module: nn.Module, args: object, output: object) -> None:
            tensor = _tensor(output)
            if tensor is not None:
                outputs.pop(name, None)  # a module called twice counts at its last call
                outputs[name] = tensor

        return hook

    handles = [module.register_forward_hook(recorder(name)) for name, module in model.named_modules()
               if name and not isinstance(module, nn.Identity)]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def _module_path(node: torch.fx.Node, owners: dict[torch.fx.Node, str]) -> str | None:
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack")
    if stack:
        path = list(stack.values())[-1][0]
        return path or None
    target = str(getattr(node, "target", ""))
    if node.op == "call_function" and target.startswith(QDQ_NAMESPACES) and node.args:
        source = node.args[0]
        return owners.get(source) if isinstance(source, torch.fx.Node) else None
    return None


def graph_outputs(model: torch.fx.GraphModule, inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    """For an FX graph (``torch.export``'s or FX's): the last value computed by each module's
    nodes, a ``call_module`` node counting for its module."""
    owners: dict[torch.fx.Node, str] = {}
    outputs: dict[str, torch.Tensor] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node: torch.fx.Node) -> object:
            value = super().run_node(node)
            path = _module_path(node, owners) if node.op in ("call_function", "call_module", "call_method") else None
            tensor = _tensor(value) if path else None
            if tensor is not None:
                owners[node] = path
                outputs.pop(path, None)
                outputs[path] = tensor
            return value

    with torch.no_grad():
        Recorder(model).run(*inputs)
    return outputs


def layer_outputs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    graph = isinstance(model, torch.fx.GraphModule)
    outputs = graph_outputs(model, inputs) if graph else hooked_outputs(model, inputs)
    return {_unwrapped(name): value for name, value in outputs.items()}


def _unwrapped(name: str) -> str:
    for prefix in WRAPPER_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


Outputs = dict[str, torch.Tensor]


def match(float_outputs: Outputs, quantized_outputs: Outputs) -> list[tuple[str, float]]:
    """(quantized layer, SQNR against its closest float layer), in float execution order.

    A quantized layer is compared with the float layers from its own name up to, not
    including, the next quantized layer's name: the layers a fusion may have absorbed.
    """
    order = list(float_outputs)
    named = [name for name in order if name in quantized_outputs]
    series = []
    for index, name in enumerate(named):
        end = order.index(named[index + 1]) if index + 1 < len(named) else len(order)
        quantized = quantized_outputs[name]
        window = order[order.index(name) : end]
        candidates = [float_outputs[f] for f in window if float_outputs[f].shape == quantized.shape]
        if candidates:
            series.append((name, max(sqnr_db(c, quantized) for c in candidates)))
    return series


def localize(float_model: nn.Module, quantized_model: nn.Module, inputs: tuple[torch.Tensor, ...],
             limit_db: float) -> Divergence:
    """The per-layer SQNR of ``quantized_model`` against ``float_model`` and its first layer below ``limit_db``."""
    layers = match(layer_outputs(float_model, inputs), layer_outputs(quantized_model, inputs))
    if not layers:
        # No layer to match (a model of one functional op, an artifact that is not a torch model):
        # the whole model is the one layer compared, and the name says so.
        with torch.no_grad():
            reference, quantized = _tensor(float_model(*inputs)), _tensor(quantized_model(*inputs))
        if reference is not None and quantized is not None and reference.shape == quantized.shape:
            layers = [(f"{type(float_model).__name__} (the whole model)", sqnr_db(reference, quantized))]
    first = next(((name, value) for name, value in layers if value < limit_db), None)
    return Divergence(layers, first[0] if first else None, round(first[1], 3) if first else None, limit_db)
