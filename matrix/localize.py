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
the same model's float artifact. A graph compiled whole (by Inductor, or exported to
ONNX Runtime) is read from copies compiled with its layers' outputs as extra outputs
(:class:`matrix.formats.compiled.CompiledGraph`). Quantization fuses layers (conv, bn and relu become one
module, or the bn is folded away), so a quantized layer is matched with the reference
layer, from its own name up to the next quantized layer's, whose output it is closest to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from matrix.formats.graph import owners
from matrix.formats.layers import MODEL_OUTPUT, as_tensor
from matrix.metrics import lsb_error, sqnr_db

# Wrappers the modes put around a float model (eager's QuantWrapper) and the attribute
# holding the model inside.
WRAPPER_PREFIXES = ("module.",)
WHOLE_MODEL = " (the whole model)"
# The layer that stands for the ops between the last layer and the model's output.
OUTPUT_AFTER = "the output, after "


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
    unread: dict[str, str] = field(default_factory=dict)  # layers of the subject left out, and why

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
            **({"unread": self.unread} if self.unread else {}),
        }

    def summary(self) -> str:
        unread = f"; not read: {', '.join(self.unread)}" if self.unread else ""
        return self._finding() + unread

    def _finding(self) -> str:
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


def hooked_outputs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    """The output of every submodule, by path, in the order they finished.

    An ``nn.Identity`` is skipped: it is what eager fusion leaves where a fused layer
    (a batch-norm, a ReLU) was, and it would only repeat the fused module's output.
    """
    outputs: dict[str, torch.Tensor] = {}

    def recorder(name: str) -> Callable:
        def hook(module: nn.Module, args: object, output: object) -> None:
            tensor = as_tensor(output)
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


def graph_outputs(model: torch.fx.GraphModule, inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    """For an FX graph (``torch.export``'s or FX's): the last value computed by each module's
    nodes, a ``call_module`` node counting for its module."""
    owned = owners(model)
    outputs: dict[str, torch.Tensor] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node: torch.fx.Node) -> object:
            value = super().run_node(node)
            tensor = as_tensor(value) if node in owned else None
            if tensor is not None:
                outputs.pop(owned[node], None)
                outputs[owned[node]] = tensor
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
    """``tensor`` in ``shape``: as it is, a channels-last activation (a .tflite's NHWC) permuted
    to channels-first, or a sequence-first one (a converted attention's or RNN's) made
    batch-first; None when none fits."""
    if tensor.shape == shape:
        return tensor
    if tensor.dim() == 4 and tensor.permute(0, 3, 1, 2).shape == shape:
        return tensor.permute(0, 3, 1, 2)
    if tensor.dim() == 3 and tensor.transpose(0, 1).shape == shape:
        return tensor.transpose(0, 1)
    return None


def by_layer(outputs: Outputs) -> Outputs:
    """Outputs named ``layer (OP)`` (an artifact's ops) by their layer alone: the layer's
    output is its last op's whose output leaves the layer, as for a PyTorch module. The
    model output's own op is left out: :func:`localize` compares the output whole."""
    found: Outputs = {}
    internal = getattr(outputs, "internal", set())
    for name, value in outputs.items():
        if name in internal:
            continue
        layer = name.rsplit(" (", 1)[0] if name.endswith(")") else name
        if layer == MODEL_OUTPUT:
            continue
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


def _runs(outputs: Outputs) -> list[list[tuple[str, torch.Tensor]]]:
    """Consecutive outputs of one shape, grouped."""
    runs: list[list[tuple[str, torch.Tensor]]] = []
    for name, value in outputs.items():
        if runs and runs[-1][-1][1].shape == value.shape:
            runs[-1].append((name, value))
        else:
            runs.append([(name, value)])
    return runs


def aligned(reference_outputs: Outputs, quantized_outputs: Outputs, measure: Measure = SQNR) -> list[tuple[str, float]]:
    """(quantized layer, its measure against the closest reference layer) for layers with no
    name in common (a converter that named the ops anew, a Keras twin, a decomposed op).

    As many layers on both sides, of the same shapes, are paired in order. Else both sides
    are cut into runs of consecutive layers of one shape, and each quantized run is paired,
    in order, with the next reference run of its shape: the layers of a run are one layer
    and what a fusion or a decomposition made of it (conv, bn and relu; the partial sums of
    a pooling). A run's last layer, its output, is compared with the closest
    layer of the reference run, under whose name it is listed (the last of equals: the
    module rather than its observer).

    Layers are named as in the reference: a PyTorch model's module paths rather than a
    converter's op names."""
    if len(reference_outputs) == len(quantized_outputs) and all(
            _as_layout_of(value, reference.shape) is not None
            for reference, value in zip(reference_outputs.values(), quantized_outputs.values())):
        # The same layers, shape for shape (a converter numbered them anew): paired in order.
        return [(name, measure.compute(reference, _as_layout_of(value, reference.shape)))
                for (name, reference), (_, value) in zip(reference_outputs.items(), quantized_outputs.items())]
    references, series, start = _runs(reference_outputs), [], 0
    for run in _runs(quantized_outputs):
        value = run[-1][1]
        for index in range(start, len(references)):
            fitted = _as_layout_of(value, references[index][0][1].shape)
            if fitted is not None:
                values = [(measure.compute(reference, fitted), name) for name, reference in references[index]]
                best = measure.best([v for v, _ in values])
                series.append((next(name for v, name in reversed(values) if v == best), best))
                start = index + 1
                break
    return series


def localize(reference: nn.Module, quantized_model: nn.Module, inputs: tuple[torch.Tensor, ...],
             limit: float, measure: Measure = SQNR, name: str | None = None) -> Divergence:
    """The per-layer ``measure`` of ``quantized_model`` against ``reference`` and its first layer
    beyond ``limit``. ``name`` names the model when the whole model is its one layer compared."""
    expected, found = layer_outputs(reference, inputs), layer_outputs(quantized_model, inputs)
    layers = match(expected, found, measure)
    if not layers and not set(by_layer(expected)) & set(by_layer(found)):
        layers = aligned(by_layer(expected), by_layer(found), measure)
    with torch.no_grad():
        whole, quantized = as_tensor(reference(*inputs)), as_tensor(quantized_model(*inputs))
    whole_value = measure.compute(whole, quantized) \
        if whole is not None and quantized is not None and whole.shape == quantized.shape else None
    if not layers and whole_value is not None:
        # No layer to match (a model of one functional op or operator module, an artifact whose
        # layers have neither the names nor the shapes of the reference's): the whole model is
        # the one layer compared, and the name says so.
        layers = [(f"{name or type(reference).__name__}{WHOLE_MODEL}", whole_value)]
    elif (layers and whole_value is not None and measure.beyond(whole_value, limit)
          and not any(measure.beyond(value, limit) for _, value in layers)):
        # Every layer within the limit but not the output: the departure is in the ops after
        # the last layer (a concatenation, a mean in the model's own forward).
        layers.append((f"{OUTPUT_AFTER}{layers[-1][0]}", whole_value))
    first = next(((name, value) for name, value in layers if measure.beyond(value, limit)), None)
    return Divergence(measure, layers, first[0] if first else None, round(first[1], 3) if first else None, limit,
                      dict(getattr(found, "unread", {})))


