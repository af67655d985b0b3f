"""What the nodes of a torch.fx graph (``torch.export``'s, FX's) compute for: the module each
belongs to, a quantize/dequantize node or an FX observer counting for the module whose
output it quantizes."""

from __future__ import annotations

import torch

QDQ_NAMESPACES = ("quantized_decomposed", "torchao")
# FX's observer and fake-quant modules, and its reference model's quantize/dequantize calls.
FX_OBSERVER_PREFIX = "activation_post_process"
QDQ_CALLS = ("quantize_per_tensor", "quantize_per_channel", "dequantize")
# The input check ``torch.export`` puts in the module it returns: no layer.
GUARD = "_guards_fn"


def quantizes(node: torch.fx.Node) -> bool:
    """A node that only quantizes (or observes) its input's value."""
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    if node.op == "call_module":
        return str(node.target).startswith(FX_OBSERVER_PREFIX)
    if node.op == "call_function":
        return str(node.target).startswith(QDQ_NAMESPACES) or target in QDQ_CALLS
    return node.op == "call_method" and target in QDQ_CALLS


def _module_path(node: torch.fx.Node, owners: dict[torch.fx.Node, str]) -> str | None:
    if quantizes(node):
        source = node.args[0] if node.args else None
        return owners.get(source) if isinstance(source, torch.fx.Node) else None
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack")
    if stack:
        path = list(stack.values())[-1][0]
        return path or None
    return None


def owners(model: torch.fx.GraphModule) -> dict[torch.fx.Node, str]:
    """The module path each node computes for, in graph order (a quantize/dequantize node or an
    FX observer, the module of the value it quantizes)."""
    owners: dict[torch.fx.Node, str] = {}
    for node in model.graph.nodes:
        computes = node.op in ("call_function", "call_method") or (node.op == "call_module" and node.target != GUARD)
        path = _module_path(node, owners) if computes else None
        if path:
            owners[node] = path
    return owners


def last_nodes(model: torch.fx.GraphModule) -> dict[str, torch.fx.Node]:
    """Each module's last node computing a tensor, by module path, in graph order (read from
    the graph, not run: a node known not to compute a tensor is left out)."""
    last: dict[str, torch.fx.Node] = {}
    for node, path in owners(model).items():
        value = node.meta.get("val", None)
        if value is None or isinstance(value, torch.Tensor) or quantizes(node):
            last.pop(path, None)
            last[path] = node
    return last
