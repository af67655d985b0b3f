"""The guide's FX -> PT2E transplant: an FX-prepared model captured by torch.export, FX's own
quantization modules put back into the captured graph, then convert_pt2e.

The guide ("PyTorch FX quantized to PT2E to TFLite quantized") captures the FX-prepared
model, finds each fake-quant node of the captured graph, and replaces it with a call of the
FX model's own fake-quant module (activations and weights), so that convert_pt2e turns the
FX model's quantization parameters into PT2E's Q/DQ ops. On today's API:

- FX's observers do not export (HistogramObserver's forward branches on tensor values), and
  a fused QAT module's weight fake-quant leaves no node torch.export can name. So before
  capture every FX quantization module is swapped for a marker (``qmatrix::fx_quant``, an
  identity op carrying the module's index), and each marker's node of the captured graph is
  replaced by the FX module itself: the guide's replacement, with the node found by index
  instead of by the name of its scale buffer.
- A PTQ model prepared by FX has no weight observers in its graph (``convert_fx`` makes them
  from each module's qconfig). As convert_fx does, each observed weighted module's qconfig
  makes one and observes the weight, and it is inserted after the weight in the captured graph.
- torchao's convert_pt2e recognizes only torchao's observer classes: each FX module is put in
  the graph inside an adapter of that class that calls it (torch.ao's own PT2E, on older
  torch, takes the module as it is).
- A QAT model is captured in training mode and stays a QAT model: it trains on in PT2E
  (``move_exported_model_to_train``) before convert_pt2e; the record says whether its loss moved.
- convert_pt2e gives each user of a shared dequantize its own copy (torchao's DuplicateDQPass),
  but only users a quantizer annotated, and the transplanted graph has no annotations: the
  copies are made after convert_pt2e instead (a residual's skip and its branch's first linear
  sharing one dequantize is a dependency cycle to ExecuTorch's XNNPACK partitioner).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import operator
from typing import TYPE_CHECKING

import torch
import torch.ao.quantization as tq

from matrix.contract import Quantized
from matrix.modes import QAT_STEPS, train
from matrix.modes import pt2e as pt2e_mode
from matrix.vocabulary import Stage

if TYPE_CHECKING:
    from matrix.contract import CellContext

# The float modules whose weights convert_fx quantizes with a weight observer of the module's qconfig.
WEIGHTED = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear,
            torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d)


@functools.cache
def _marker_op() -> object:
    @torch.library.custom_op("qmatrix::fx_quant", mutates_args=())
    def fx_quant(x: torch.Tensor, index: int) -> torch.Tensor:
        return x.clone()

    @fx_quant.register_fake
    def _(x: torch.Tensor, index: int) -> torch.Tensor:
        return torch.empty_like(x)

    return torch.ops.qmatrix.fx_quant.default


class Marker(torch.nn.Module):
    """Where an FX quantization module was, while torch.export captures the model."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index
        # Defined here, before any capture: torch 2.5's dynamo cannot trace the op's definition.
        self.op = _marker_op()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x, self.index)


def _quantization_modules(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """FX's observers and fake-quants by every name they are reached by (a shared observer has
    several), not those inside another (a fake-quant's own observer)."""
    found: dict[str, torch.nn.Module] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if (name and isinstance(module, (tq.ObserverBase, tq.FakeQuantizeBase))
                and not any(name.startswith(outer + ".") for outer in found)):
            found[name] = module
    return found


def _weight_observers(prepared: torch.fx.GraphModule) -> dict[str, torch.nn.Module]:
    """Parameter name -> a weight observer that has seen it, for each weighted module FX
    observed without a weight fake-quant of its own (a PTQ model): convert_fx's rule."""
    attrs = prepared.meta.get("_observed_graph_module_attrs")
    observed = attrs.observed_node_names if attrs is not None else set()
    modules = dict(prepared.named_modules())
    found = {}
    for node in prepared.graph.nodes:
        if node.op != "call_module" or node.name not in observed:
            continue
        module = modules[node.target]
        qconfig = getattr(module, "qconfig", None)
        if qconfig is None or hasattr(module, "weight_fake_quant"):
            continue
        float_module, path = module, node.target
        if isinstance(module, torch.ao.nn.intrinsic._FusedModule):
            float_module, path = module[0], f"{node.target}.0"
        if not isinstance(float_module, WEIGHTED):
            continue
        observer = qconfig.weight()
        if observer.dtype not in (torch.qint8, torch.quint8):
            continue
        observer(float_module.weight.detach())
        found[f"{path}.weight"] = observer
    return found


@functools.cache
def _adapter() -> type:
    """torchao's ObserverBase around an FX module: the class torchao's convert_pt2e converts
    (imported on first use)."""
    from torchao.quantization.pt2e import ObserverBase

    class FXQuantization(ObserverBase):
        """An FX observer or fake-quant, in the class torchao's convert_pt2e converts."""

        def __init__(self, module: torch.nn.Module) -> None:
            super().__init__(dtype=module.dtype, is_dynamic=False)
            self.module = module
            for name in ("qscheme", "quant_min", "quant_max", "ch_axis"):
                if hasattr(module, name):
                    setattr(self, name, getattr(module, name))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.module(x)

        def calculate_qparams(self):
            return self.module.calculate_qparams()

    return FXQuantization


@functools.cache
def _torch_ao_converts() -> bool:
    """Whether this torch still carries torch.ao's PT2E (before 2.13): torchao's convert_pt2e hands a
    graph observed by torch.ao modules alone to it, and refuses one that mixes both packages'
    observers (torchao 0.14), which the adapter would make."""
    torch_ao_flow = pt2e_mode.LOCATIONS[-1][0]
    return importlib.util.find_spec(torch_ao_flow) is not None


def _in_graph(module: torch.nn.Module) -> torch.nn.Module:
    if pt2e_mode.api().source.startswith("torchao") and not _torch_ao_converts():
        return _adapter()(module)
    return module


def transplant(prepared: torch.fx.GraphModule, example: tuple, training: bool) -> tuple[torch.fx.GraphModule, int]:
    """(the captured graph with FX's quantization modules in it, how many were put back)."""
    work = copy.deepcopy(prepared).train(training)
    named = _quantization_modules(work)
    unique = list({id(m): m for m in named.values()}.values())
    index = {id(m): i for i, m in enumerate(unique)}
    markers = [Marker(i) for i in range(len(unique))]
    for name, module in named.items():
        parent, _, leaf = name.rpartition(".")
        setattr(work.get_submodule(parent) if parent else work, leaf, markers[index[id(module)]])
    weights = {} if training else _weight_observers(prepared)
    graph_module = pt2e_mode.export(work, example)
    # FX's record of what it prepared, which convert_pt2e asserts: the guide's last step. torch.export
    # carries the root module's meta itself from torch 2.6 on, torch 2.5 leaves it behind.
    graph_module.meta["_observed_graph_module_attrs"] = work.meta["_observed_graph_module_attrs"]
    graph = graph_module.graph
    placed = 0
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target == _marker_op():
            source = unique[node.args[1]]
        elif node.op == "get_attr" and node.target in weights:
            source = weights.pop(node.target)
        else:
            continue
        name = f"fx_quantization_{placed}"
        graph_module.add_submodule(name, _in_graph(source))
        with graph.inserting_after(node):
            call = graph.call_module(name, (node.args[0] if node.op == "call_function" else node,))
        node.replace_all_uses_with(call, delete_user_cb=functools.partial(operator.is_not, call))
        if node.op == "call_function":
            graph.erase_node(node)
        placed += 1
    graph.lint()
    graph_module.recompile()
    return graph_module, placed


def _train_on(graph_module: torch.fx.GraphModule, ctx: CellContext, pt2e) -> dict:
    """QAT steps on the transplanted PT2E model; whether its weights moved, and its mean loss
    against the float model on the calibration batches (the ones it trains on) before and
    after, in eval mode."""

    def loss() -> float:
        with ctx.clock.stage(Stage.TRAIN):  # part of the PT2E training: its failures are the stage's
            pt2e.to_eval(graph_module)
            with torch.no_grad():
                return round(sum(torch.nn.functional.mse_loss(graph_module(*batch), ctx.float_model(*batch)).item()
                                 for batch in ctx.data.calibration) / len(ctx.data.calibration), 8)

    before, weights = loss(), [p.detach().clone() for p in graph_module.parameters()]
    train(graph_module, ctx, to_train=pt2e.to_train, to_eval=pt2e.to_eval)
    moved = any(not torch.equal(a, b.detach()) for a, b in zip(weights, graph_module.parameters(), strict=True))
    return {"steps": QAT_STEPS, "weights_moved": moved, "loss_before": before, "loss_after": loss()}


def hand_off_static(ctx: CellContext) -> None:
    """Tell the backend's converter what a PT2E model quantized elsewhere is: static Q/DQ, as its
    own quantizer's would be (litert-torch's QuantConfig reads only its conversion mode, static
    or dynamic, from the quantizer it is given). The cell's qspec is a path or the default: it
    has no knobs, so the quantizer is the backend's default one."""
    if ctx.backend.pt2e_handoff is not None:
        ctx.handoff.update(ctx.backend.pt2e_handoff(ctx.backend.pt2e_quantizer(ctx.scheme.name, ctx.qspec)))


def carry(ctx: CellContext, prepared: torch.fx.GraphModule, how: str) -> Quantized:
    """An FX-observed model (calibrated or trained) carried to PT2E by the transplant, trained on
    in PT2E for QAT, and converted by convert_pt2e: the model a PT2E backend deploys."""
    pt2e = pt2e_mode.api()
    training = ctx.scheme.trains
    with ctx.clock.stage(Stage.CAPTURE):
        graph_module, placed = transplant(prepared, ctx.data.calibration[0], training)
    notes: dict = {"transplanted_modules": placed}
    if training:
        notes["pt2e_training"] = _train_on(graph_module, ctx, pt2e)
    with ctx.clock.stage(Stage.CONVERT):
        quantized = duplicate_dequantize(pt2e.convert_pt2e(graph_module, fold_quantize=ctx.backend.pt2e_fold_quantize))
    hand_off_static(ctx)
    return Quantized(quantized, quantized, f"the converted PT2E model run eagerly (Q/DQ in float), {how}",
                     notes=notes)


def duplicate_dequantize(graph_module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Each user of a dequantize node after the first given a copy of its own, as DuplicateDQPass
    does for annotated users: the same values, one dequantize per consumer."""
    decomposed = torch.ops.quantized_decomposed
    dequantize = {decomposed.dequantize_per_tensor.default, decomposed.dequantize_per_tensor.tensor,
                  decomposed.dequantize_per_channel.default}
    graph = graph_module.graph
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target in dequantize and len(node.users) > 1:
            for user in list(node.users)[1:]:
                with graph.inserting_after(node):
                    user.replace_input_with(node, graph.node_copy(node))
    graph.lint()
    graph_module.recompile()
    return graph_module
