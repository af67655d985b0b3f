"""A graph as a backend compiled it whole (Inductor's generated code, an ONNX Runtime session of
its export): run as deployed, and read layer by layer from copies compiled with the layers'
outputs as extra outputs."""

from __future__ import annotations

from collections.abc import Callable

import torch

from matrix.formats.graph import GUARD, QDQ_NAMESPACES, last_nodes
from matrix.formats.layers import CHANGES_OUTPUT, LayerOutputs, as_tensor, output_unchanged, read_exposed


class CompiledGraph:
    """A graph as a backend compiled it whole (Inductor's code, an ONNX Runtime session of its
    export), with no layer left to read. ``layer_outputs`` compiles a copy of the graph, by the
    same ``build``, whose outputs are the model's own output and each module's last value;
    where that value is the dequantization of an int8 tensor, the int8 tensor itself is the
    output (exposing the float value would keep the backend from fusing the quantized op) and
    is dequantized here.

    An extra output can change what the backend compiles (it may keep a float value alive
    that a fused int8 kernel would not produce), so the copy counts only if its own output
    is still the deployed output; if not, each layer is exposed alone, and a layer whose
    exposure changes the output is left out.
    """

    def __init__(self, run: Callable[..., torch.Tensor], model: torch.fx.GraphModule,
                 build: Callable[[torch.fx.GraphModule], Callable[..., tuple[torch.Tensor, ...]]]) -> None:
        self.run, self.model, self.build = run, model, build

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.run(*inputs)

    def layer_outputs(self, *inputs: torch.Tensor) -> LayerOutputs:
        expected = self.run(*inputs)
        layers = {path: _read_point(node) for path, node in last_nodes(self.model).items()}
        values, unread = read_exposed(
            list(layers), lambda paths: self._exposed({path: layers[path] for path in paths}, inputs, expected))
        found = LayerOutputs()
        found.update((path, values[path]) for path in layers if path in values)
        found.unread = unread
        self._drop_unwritten(found, layers, inputs)
        return found

    def _drop_unwritten(self, found: LayerOutputs, layers: dict[str, tuple[torch.fx.Node, torch.fx.Node | None]],
                        inputs: tuple[torch.Tensor, ...]) -> None:
        """A layer the backend returned as all zeros where the graph run in PyTorch has a nonzero
        value is not read: a buffer the compiled code never wrote (ExecuTorch's XNNPACK delegate
        does this), not a layer's output."""
        with torch.no_grad():
            _, *values = _exposing(self.model, [node for node, _ in layers.values()])(*inputs)
        for (path, (_, dequantize)), value in zip(layers.items(), values):
            if path not in found or found[path].any():
                continue
            graph_value = _read_value(value, dequantize)
            if graph_value is not None and graph_value.any():
                del found[path]
                found.unread[path] = "the backend returned zeros where the graph run in PyTorch does not"

    def _exposed(self, layers: dict[str, tuple[torch.fx.Node, torch.fx.Node | None]],
                 inputs: tuple[torch.Tensor, ...], expected: torch.Tensor) -> dict[str, torch.Tensor] | str:
        """The values of ``layers`` from a copy that outputs them too, or why there are none: the
        copy did not compile or run (the error), or its own output is no longer ``expected``."""
        try:
            own, *values = self.build(_exposing(self.model, [node for node, _ in layers.values()]))(*inputs)
        except Exception as exc:  # a copy the backend cannot build is a layer not read, never a finding
            return f"exposing it failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if not output_unchanged(own, expected):
            return CHANGES_OUTPUT
        found = {}
        for (path, (_, dequantize)), value in zip(layers.items(), values):
            tensor = _read_value(value, dequantize)
            if tensor is not None:
                found[path] = tensor
        return found


def _read_value(value: object, dequantize: torch.fx.Node | None) -> torch.Tensor | None:
    """An exposed value as a float tensor, dequantized by ``dequantize`` (see :func:`_read_point`)."""
    if dequantize is not None:
        value = dequantize.target(value, *dequantize.args[1:], **dequantize.kwargs)
    return as_tensor(value)


def _read_point(node: torch.fx.Node) -> tuple[torch.fx.Node, torch.fx.Node | None]:
    """(the node to output for a layer whose last node is ``node``, the dequantization to apply
    to it): a decomposed dequantize of a quantize node with constant parameters is read as the
    quantize node's int8 output and dequantized here."""
    source = node.args[0] if node.args else None
    if (node.op == "call_function" and str(node.target).startswith(QDQ_NAMESPACES) and "dequantize" in str(node.target)
            and isinstance(source, torch.fx.Node) and source.op == "call_function"
            and str(source.target).startswith(QDQ_NAMESPACES) and ".quantize" in str(source.target)
            and not any(isinstance(arg, torch.fx.Node) for arg in (*node.args[1:], *node.kwargs.values()))):
        return source, node
    return node, None


def _exposing(model: torch.fx.GraphModule, nodes: list[torch.fx.Node]) -> torch.fx.GraphModule:
    """A copy of ``model`` that returns (its own output, the value of each of ``nodes``), with no
    input or output conversion (an exported module's pytree specs and guard are dropped)."""
    graph = torch.fx.Graph()
    copies: dict[torch.fx.Node, torch.fx.Node] = {}
    output = graph.graph_copy(model.graph, copies)
    own = output[0] if isinstance(output, (tuple, list)) else output
    graph.output((own, *(copies[node] for node in nodes)))
    for node in list(graph.nodes):
        if node.op == "call_module" and node.target == GUARD:
            graph.erase_node(node)
    return torch.fx.GraphModule(model, graph)
