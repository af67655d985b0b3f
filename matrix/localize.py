"""First divergence: the first layer whose quantized output leaves its reference.

The reference is the float model, measured by SQNR (a cell whose output is too far from
float), or the mode's own simulation, measured in quantization steps (a cell whose output
is close enough to float but not to what its quantization recipe computes: the kernels,
not the recipe, depart). Both models run on the same inputs and every layer's output is
recorded by its module path: forward hooks on the leaf modules of a module (eager, FX),
or, for a graph (``torch.export``'s, FX's), the last value each module's nodes compute (a
quantize/dequantize node or an FX observer belongs to the module whose output it
quantizes). A deployed artifact that is not a PyTorch model (a .tflite, an OpenVINO
model) reports its own tensors by name through ``layer_outputs`` and is compared with
the same model's float artifact. Quantization fuses layers (conv, bn and relu become one
module, or the bn is folded away), so a quantized layer is matched with the reference
layer, from its own name up to the next quantized layer's, whose output it is closest to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from matrix.metrics import lsb_error, sqnr_db

# Wrappers the modes put around a float model (eager's QuantWrapper) and the attribute
# holding the model inside.
WRAPPER_PREFIXES = ("module.",)
QDQ_NAMESPACES = ("quantized_decomposed", "torchao")
# FX's observer and fake-quant modules, and its reference model's quantize/dequantize calls.
FX_OBSERVER_PREFIX = "activation_post_process"
QDQ_CALLS = ("quantize_per_tensor", "quantize_per_channel", "dequantize")
WHOLE_MODEL = " (the whole model)"


@dataclass(frozen=True)
class Measure:
    """How a quantized layer is compared with its reference layer."""

    metric: str
    unit: str
    against: str
    compute: Callable[[torch.Tensor, torch.Tensor], float]  # (reference, quantized)
    higher_is_better: bool

    def beyond(self, value: float, limit: float) -> bool:
        return value < limit if self.higher_is_better else value > limit

    def best(self, values: list[float]) -> float:
        return max(values) if self.higher_is_better else min(values)


SQNR = Measure("sqnr_db", "dB", "float", sqnr_db, higher_is_better=True)
STEPS = Measure("lsb_err_vs_sim", "steps", "simulation", lsb_error, higher_is_better=False)


@dataclass
class Divergence:
    """The per-layer series, in the reference's execution order, and the first layer beyond the limit."""

    measure: Measure = SQNR
    layers: list[tuple[str, float]] = field(default_factory=list)
    first: str | None = None
    value: float | None = None
    limit: float | None = None

    @property
    def layer_level(self) -> bool:
        """Whether layers were compared, not only the whole model."""
        return bool(self.layers) and not self.layers[0][0].endswith(WHOLE_MODEL)

    @property
    def worst(self) -> tuple[str, float] | None:
        if not self.layers:
            return None
        pick = min if self.measure.higher_is_better else max
        return pick(self.layers, key=lambda layer: layer[1])

    def as_record(self) -> dict:
        worst = self.worst
        return {
            "metric": self.measure.metric, "unit": self.measure.unit, "against": self.measure.against,
            "first": self.first, "value": self.value, "limit": self.limit,
            "worst": worst[0] if worst else None, "worst_value": round(worst[1], 3) if worst else None,
            "layers": [[name, round(value, 3)] for name, value in self.layers],
        }

    def summary(self) -> str:
        worst, unit = self.worst, self.measure.unit
        if self.measure is SQNR:
            if worst is None:
                return "no layer of the quantized model matched a layer of the float model"
            if self.first is None:
                return f"no layer below {self.limit:g} dB; lowest at {worst[0]} ({worst[1]:.1f} dB)"
            return f"first diverges at {self.first} (sqnr {self.value:.1f} dB)"
        if worst is None:
            return "no layer of the quantized model matched a layer of its simulation"
        if self.first is None:
            return (f"no layer beyond {self.limit:g} steps from the simulation; "
                    f"farthest at {worst[0]} ({worst[1]:.1f} {unit})")
        return f"first leaves its simulation at {self.first} ({self.value:.1f} {unit})"


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


def _quantizes(node: torch.fx.Node) -> bool:
    """A node that only quantizes (or observes) its input's value."""
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    if node.op == "call_module":
        return str(node.target).startswith(FX_OBSERVER_PREFIX)
    if node.op == "call_function":
        return str(node.target).startswith(QDQ_NAMESPACES) or target in QDQ_CALLS
    return node.op == "call_method" and target in QDQ_CALLS


def _module_path(node: torch.fx.Node, owners: dict[torch.fx.Node, str]) -> str | None:
    if _quantizes(node):
        source = node.args[0] if node.args else None
        return owners.get(source) if isinstance(source, torch.fx.Node) else None
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack")
    if stack:
        path = list(stack.values())[-1][0]
        return path or None
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
    own = getattr(model, "layer_outputs", None)
    if callable(own):  # an artifact that reports its own tensors
        return own(*inputs)
    graph = isinstance(model, torch.fx.GraphModule)
    outputs = graph_outputs(model, inputs) if graph else hooked_outputs(model, inputs)
    return {_unwrapped(name): value for name, value in outputs.items()}


def _unwrapped(name: str) -> str:
    for prefix in WRAPPER_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


Outputs = dict[str, torch.Tensor]


def _as_layout_of(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor | None:
    """``tensor`` in ``shape``: as it is, or a channels-last activation (a .tflite's NHWC)
    permuted to channels-first; None when neither fits."""
    if tensor.shape == shape:
        return tensor
    if tensor.dim() == 4 and tensor.permute(0, 3, 1, 2).shape == shape:
        return tensor.permute(0, 3, 1, 2)
    return None


class LayerOutputs(dict):
    """An artifact's outputs by ``layer (OP)``, with the names of ops whose output only the
    same layer's ops read (a partial sum inside a decomposed pooling, say): those are not the
    layer's output."""

    def __init__(self) -> None:
        super().__init__()
        self.internal: set[str] = set()

    def put(self, layer: str, op: str, value: torch.Tensor, read_by: set[str]) -> None:
        """The output of an ``op`` of ``layer``, read by ops of the layers ``read_by`` (none for
        a model output). A later op of the same layer and kind replaces it, value and all."""
        name = f"{layer} ({op})"
        self.pop(name, None)
        self[name] = value
        if read_by == {layer}:
            self.internal.add(name)
        else:
            self.internal.discard(name)


def by_layer(outputs: Outputs) -> Outputs:
    """Outputs named ``layer (OP)`` (an artifact's ops) by their layer alone: the layer's
    output is its last op's whose output leaves the layer, as for a PyTorch module."""
    found: Outputs = {}
    internal = getattr(outputs, "internal", set())
    for name, value in outputs.items():
        if name in internal:
            continue
        layer = name.rsplit(" (", 1)[0] if name.endswith(")") else name
        found.pop(layer, None)
        found[layer] = value
    return found


def match(reference_outputs: Outputs, quantized_outputs: Outputs, measure: Measure = SQNR) -> list[tuple[str, float]]:
    """(quantized layer, its measure against the closest reference layer), in reference order.

    A quantized layer is compared with the reference layers from its own name up to, not
    including, the next quantized layer's name: the layers a fusion may have absorbed.
    When no name is common, an artifact's ops are taken by their layer (``conv1 (CONV_2D)``
    as ``conv1``), so that a .tflite can be compared with a PyTorch model.
    """
    if not set(reference_outputs) & set(quantized_outputs):
        reference_outputs, quantized_outputs = by_layer(reference_outputs), by_layer(quantized_outputs)
    order = list(reference_outputs)
    named = [name for name in order if name in quantized_outputs]
    series = []
    for index, name in enumerate(named):
        end = order.index(named[index + 1]) if index + 1 < len(named) else len(order)
        window = order[order.index(name) : end]
        values = []
        for reference in (reference_outputs[r] for r in window):
            quantized = _as_layout_of(quantized_outputs[name], reference.shape)
            if quantized is not None:
                values.append(measure.compute(reference, quantized))
        if values:
            series.append((name, measure.best(values)))
    return series


def localize(reference: nn.Module, quantized_model: nn.Module, inputs: tuple[torch.Tensor, ...],
             limit: float, measure: Measure = SQNR) -> Divergence:
    """The per-layer ``measure`` of ``quantized_model`` against ``reference`` and its first layer beyond ``limit``."""
    expected, found = layer_outputs(reference, inputs), layer_outputs(quantized_model, inputs)
    layers = match(expected, found, measure)
    if not layers and len(expected) == len(found) and all(
            e.shape == f.shape for e, f in zip(expected.values(), found.values())):
        # No name in common (a converter numbered the ops anew) but the same layers, shape for
        # shape: they are paired in order, under the reference's names.
        layers = [(name, measure.compute(e, f)) for (name, e), f in zip(expected.items(), found.values())]
    if not layers:
        # No layer to match (a model of one functional op, an artifact whose tensors have other
        # names): the whole model is the one layer compared, and the name says so.
        with torch.no_grad():
            whole, quantized = _tensor(reference(*inputs)), _tensor(quantized_model(*inputs))
        if whole is not None and quantized is not None and whole.shape == quantized.shape:
            layers = [(f"{type(reference).__name__}{WHOLE_MODEL}", measure.compute(whole, quantized))]
    first = next(((name, value) for name, value in layers if measure.beyond(value, limit)), None)
    return Divergence(measure, layers, first[0] if first else None, round(first[1], 3) if first else None, limit)
