"""A per-process cache of the pattern graphs PT2E's QAT conv-bn fusion and folding export.

``prepare_qat_pt2e`` and ``convert_pt2e`` rewrite conv-bn with patterns they build by
running ``torch.export`` on small pattern functions: up to 96 exports per conversion,
12-25 s of a conv-bn QAT cell, the same graphs every time. The cache keys a pattern by
everything its export depends on (the pattern function's code and closure values, the
example inputs' shapes and dtypes, the keyword arguments, the device) and hands out a
copy of the exported graph; a pattern it cannot key (an unhashable closure value) is
exported as before. ``QMATRIX_PT2E_PATTERN_CACHE=0`` turns it off.
"""

from __future__ import annotations

import copy
import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import torch

# Where the pattern exporter is defined; modules that imported it by name (qat_utils, the
# quantizers' annotators: torchao's, ExecuTorch's, litert-torch's) hold the same function.
MODULES = ("torchao.quantization.pt2e.utils", "torch.ao.quantization.pt2e.utils")
NAME = "_get_aten_graph_module_for_pattern"


def _describe(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype, value.device.type)
    if isinstance(value, (tuple, list)):
        return tuple(_describe(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _describe(v)) for k, v in value.items()))
    hash(value)
    return value


def key(pattern: Callable, example_inputs: tuple, is_cuda: bool, kwargs: dict) -> Any:
    """What the exported pattern depends on; raises TypeError for a value it cannot key.
    A pattern comes as a function or wrapped in torchao's WrapperModule (``.fn``, no state)."""
    if isinstance(pattern, torch.nn.Module):
        if type(pattern).__name__ != "WrapperModule" or any(True for _ in pattern.parameters()):
            raise TypeError("a module with state")
        pattern = pattern.fn
    code = getattr(pattern, "__code__", None)
    if code is None:
        raise TypeError("not a plain function")
    closure = tuple(_describe(cell.cell_contents) for cell in pattern.__closure__ or ())
    return code, closure, _describe(tuple(example_inputs)), is_cuda, _describe(kwargs)


def cached(original: Callable) -> Callable:
    graphs: dict[Any, torch.fx.GraphModule] = {}

    @functools.wraps(original)
    def export(pattern: Callable, example_inputs: tuple, is_cuda: bool = False, **kwargs: Any):
        try:
            found = key(pattern, example_inputs, is_cuda, kwargs)
        except TypeError:
            return original(pattern, example_inputs, is_cuda, **kwargs)
        if found not in graphs:
            graphs[found] = original(pattern, example_inputs, is_cuda, **kwargs)
        return copy.deepcopy(graphs[found])

    export.qmatrix_cache = graphs
    return export


# Each original exporter (kept alive) and its wrapper, by the original's identity.
_WRAPPED: dict[int, tuple[Callable, Callable]] = {}


def install() -> None:
    """Wrap the pattern exporter of whichever PT2E implementation is loaded, and make every
    loaded module that imported it by name use the wrapper. Called again after a quantizer's
    modules were imported, it reaches those too."""
    if os.environ.get("QMATRIX_PT2E_PATTERN_CACHE", "1") == "0":
        return
    import importlib

    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        current = getattr(module, NAME, None)
        if current is not None and not hasattr(current, "qmatrix_cache"):
            _WRAPPED[id(current)] = current, cached(current)
    for module in list(sys.modules.values()):
        found = getattr(module, "__dict__", {}).get(NAME)
        if found is not None and id(found) in _WRAPPED:
            setattr(module, NAME, _WRAPPED[id(found)][1])
