"""The model axis: reference models and single-operator models.

A model joins the matrix with one call to :func:`register`; importing this
package registers the built-in ones.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from matrix.cell import stable_seed
from matrix.vocabulary import KINDS

Inputs = tuple[torch.Tensor, ...]
Sampler = Callable[[torch.Generator, int], Inputs]

CALIBRATION_BATCHES = 8
BATCH = 16
EVALUATION_SIZE = 4 * BATCH


@dataclass(frozen=True)
class ModelData:
    """Calibration batches, evaluation inputs and, for real data, their labels.

    Every batch the suite runs has ``BATCH`` rows (evaluation runs in chunks of
    it), so a backend that specializes on shapes compiles once.
    """

    calibration: list[Inputs]
    evaluation: Inputs
    labels: torch.Tensor | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A model of the matrix: how to build it and what to feed it.

    ``sample(generator, n)`` draws ``n`` inputs; ``data`` replaces it for a
    model with real data. ``eager_fuse`` lists the module names eager mode
    fuses; ``eager_stubs`` says the model places its own QuantStub/DeQuantStub
    (otherwise eager mode wraps it with one of each). ``packages`` (module ->
    pip name) are what ``build`` imports beyond torch, installed by ``extra``:
    without them the model's cells are ``unavailable``. ``structure`` builds the
    same modules without what ``build`` spends filling their weights (training,
    say), for what reads only what the model is made of.
    """

    name: str
    build: Callable[[], nn.Module]
    description: str
    sample: Sampler | None = None
    data: Callable[[], ModelData] | None = None
    kind: str = "model"
    classifier: bool = False
    eager_fuse: tuple[tuple[str, ...], ...] = ()
    eager_stubs: bool = False
    tags: tuple[str, ...] = field(default_factory=tuple)
    source: str | None = None
    packages: dict[str, str] = field(default_factory=dict)
    extra: str | None = None
    structure: Callable[[], nn.Module] | None = None

    def unavailable_check(self) -> str | None:
        return None

    def from_source(self, source: str) -> ModelSpec:
        return dataclasses.replace(self, source=source)

    def instantiate(self) -> nn.Module:
        """The float model, with weights fixed by the model's name, in eval mode.

        Batch-norm running statistics are estimated on sampled inputs, so that
        a float model in eval mode matches the data it sees (as a trained one would).
        """
        model = self._seeded(self.build)
        if self.sample is not None and _has_batch_norm(model):
            _estimate_batch_norm(model, self.sample, stable_seed(self.name + "/batch-norm"))
        return model.eval()

    def made_of(self) -> nn.Module:
        """The model's modules, weights aside: ``structure`` when given, else the model as built
        (no batch-norm statistics estimated)."""
        return self._seeded(self.structure or self.build)

    def _seeded(self, build: Callable[[], nn.Module]) -> nn.Module:
        """``build()`` with torch's generator seeded by the model's name, the caller's left as it was."""
        with torch.random.fork_rng():
            torch.manual_seed(stable_seed(self.name))
            return build()

    def make_data(self) -> ModelData:
        if self.data is not None:
            return self.data()
        if self.sample is None:
            raise ValueError(f"model {self.name!r} has neither sample nor data")
        gen = torch.Generator().manual_seed(stable_seed(self.name + "/data"))
        calibration = [self.sample(gen, BATCH) for _ in range(CALIBRATION_BATCHES)]
        return ModelData(calibration=calibration, evaluation=self.sample(gen, EVALUATION_SIZE))


def _batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _has_batch_norm(model: nn.Module) -> bool:
    return bool(_batch_norms(model))


def _estimate_batch_norm(model: nn.Module, sample: Sampler, seed: int) -> None:
    """Running statistics as the cumulative average over a few sampled batches. Only the
    batch norms are in training mode: a dropout in training mode before one (EfficientNet's
    drop-connect on its residual) would make the statistics, and so the float model, differ
    from one instantiation to the next."""
    norms = _batch_norms(model)
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    for norm in norms:
        norm.train()
    with torch.no_grad():
        for _ in range(CALIBRATION_BATCHES):
            model(*sample(gen, BATCH))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
        norm.num_batches_tracked.zero_()


def module_types(model: nn.Module) -> frozenset[str]:
    """The names of torch's own module classes ``model`` is built of, each with its bases (a
    NonDynamicallyQuantizableLinear is a Linear too), and each module's own torch class after
    ``=`` (``=Linear``: an nn.Linear itself): what expectations by module type read."""
    held = set()
    for module in model.modules():
        torch_classes = [cls for cls in type(module).__mro__
                         if cls.__module__.startswith("torch.nn") and issubclass(cls, nn.Module)]
        held.update(cls.__name__ for cls in torch_classes)
        if torch_classes and torch_classes[0] is type(module):
            held.add("=" + type(module).__name__)
    return frozenset(held)


# The layers whose weights a converter quantizes (a norm's scale or an embedding table are not).
COMPUTE_LAYERS = (nn.Linear, nn.modules.conv._ConvNd, nn.RNNBase, nn.MultiheadAttention)


def largest_weight(model: nn.Module) -> int:
    """The element count of the largest weight of ``model``'s compute layers (0 without any)."""
    return max((p.numel() for m in model.modules() if isinstance(m, COMPUTE_LAYERS)
                for name, p in m.named_parameters(recurse=False) if "weight" in name), default=0)


# Parts of a model that name no layer of their own.
NOT_LAYERS = ("QuantStub", "DeQuantStub", "Identity", "Dropout", "FloatFunctional", "QFunctional")
# Layers taken whole: their submodules are their own (an attention's out_proj).
WHOLE_LAYERS = (nn.RNNBase, nn.MultiheadAttention)
SHOWN_NAMES = 4


def layers(model: nn.Module) -> dict[str, dict]:
    """The model's layers of torch's own classes by class name, each with how many the model
    holds and the names of the first few: ``{"Conv2d": {"count": 3, "names": ["conv1", ...]}}``.
    A layer is a leaf module, or a recurrent or attention layer whole."""
    found: dict[str, dict] = {}
    wholes: list[str] = []
    for name, module in model.named_modules():
        cls = type(module)
        if any(name.startswith(whole + ".") for whole in wholes):
            continue
        if isinstance(module, WHOLE_LAYERS):
            wholes.append(name)
        elif any(True for _ in module.children()):
            continue
        if not cls.__module__.startswith("torch.nn") or cls.__name__ in NOT_LAYERS:
            continue
        layer = found.setdefault(cls.__name__, {"count": 0, "names": []})
        layer["count"] += 1
        if len(layer["names"]) < SHOWN_NAMES:
            layer["names"].append(name or "(the model)")
    return found


def operator_models() -> dict[str, str]:
    """The registered operator model of each layer class: the operator models that hold one
    class of layer only (``op_conv2d``: Conv2d), by that class's name."""
    by_layer: dict[str, str] = {}
    for spec in MODELS.values():
        if spec.kind == "operator":
            held = layers(spec.build())
            if len(held) == 1:
                by_layer.setdefault(next(iter(held)), spec.name)
    return by_layer


MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in MODELS:
        raise ValueError(f"model {spec.name!r} is registered twice")
    if spec.kind not in KINDS:
        raise ValueError(f"model {spec.name!r}: kind must be one of {', '.join(KINDS)}, not {spec.kind!r}")
    MODELS[spec.name] = spec
    return spec


def images(channels: int, height: int, width: int) -> Sampler:
    def sample(gen: torch.Generator, n: int) -> Inputs:
        return (torch.randn(n, channels, height, width, generator=gen),)

    return sample


def vectors(features: int) -> Sampler:
    def sample(gen: torch.Generator, n: int) -> Inputs:
        return (torch.randn(n, features, generator=gen),)

    return sample


def sequences(steps: int, features: int) -> Sampler:
    def sample(gen: torch.Generator, n: int) -> Inputs:
        return (torch.randn(n, steps, features, generator=gen),)

    return sample


def tokens(vocabulary: int, steps: int) -> Sampler:
    def sample(gen: torch.Generator, n: int) -> Inputs:
        return (torch.randint(0, vocabulary, (n, steps), generator=gen),)

    return sample



# One line per module that registers entries; their order is the order of the axis.
MODEL_MODULES = ("reference", "digits", "operators", "zoo")
for _module in MODEL_MODULES:
    importlib.import_module(f"models.{_module}")
