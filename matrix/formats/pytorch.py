"""A PyTorch module as an artifact: the bytes of what it deploys."""

from __future__ import annotations

import io

import torch
from torch import nn


def deployed_state(module: nn.Module) -> dict[str, object]:
    """The tensors (and packed parameters) ``module`` computes with. A graph module counts only
    what its graph reads: PT2E's convert folds int8 weights into new constants and leaves the
    float parameters registered, unused."""
    if not isinstance(module, torch.fx.GraphModule):
        return dict(module.state_dict())
    state: dict[str, object] = {}
    for node in module.graph.nodes:
        if node.op not in ("get_attr", "call_module"):
            continue
        found = module.get_submodule(node.target) if node.op == "call_module" else _attribute(module, node.target)
        if isinstance(found, nn.Module):
            state.update({f"{node.target}.{name}": value for name, value in deployed_state(found).items()})
        elif isinstance(found, (torch.Tensor, torch.ScriptObject)):
            state[node.target] = found
    return state


def _attribute(module: nn.Module, target: str) -> object:
    found: object = module
    for part in target.split("."):
        found = getattr(found, part)
    return found


def serialized_bytes(module: nn.Module) -> int:
    """The size of ``module``'s deployed state as ``torch.save`` writes it."""
    buffer = io.BytesIO()
    torch.save(deployed_state(module), buffer)
    return buffer.getbuffer().nbytes
