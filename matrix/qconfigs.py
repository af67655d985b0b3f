"""A qspec's knobs made concrete: a torch.ao QConfig (eager, FX) or a PT2E QuantizationConfig.

Each starts from the backend's own default (``get_default_qconfig(engine)``, the
backend quantizer's default config) and changes only what the qspec's knobs name,
so a cell differs from its ``default`` twin by exactly those knobs.

Knobs (``QSpec.knobs``):

- ``weights``: ``per_tensor`` | ``per_channel`` (symmetric int8 weights)
- ``weight_range``: ``restricted`` ([-127, 127]) | ``full`` ([-128, 127])
- ``weight_scheme``: ``affine`` (a zero point per tensor or channel instead of symmetric)
- ``activations``: ``symmetric`` | ``int8`` ([-128, 127]) | ``uint8`` ([0, 255]) |
  ``reduce_range`` ([0, 127]) | ``int16`` ([-32768, 32767])
- ``activation_observer``: ``minmax`` | ``moving_average`` | ``histogram``
- ``weight_observer``: ``per_channel_minmax`` | ``moving_average_per_channel``
- ``fake_quant`` (QAT): ``fake_quantize`` | ``fused`` | ``learnable``
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from matrix.cell import Unavailable
from matrix.qspecs import CLASS_KNOBS

EPS = 2**-12
ACTIVATION_RANGES = {
    "int8": (torch.qint8, torch.int8, -128, 127),
    "uint8": (torch.quint8, torch.uint8, 0, 255),
    "reduce_range": (torch.quint8, torch.uint8, 0, 127),
    "int16": (None, torch.int16, -32768, 32767),
}
WEIGHT_RANGES = {"restricted": (-127, 127), "full": (-128, 127)}


class Inexpressible(ValueError):
    """A knob this API has no way to say."""


def per_channel_only(knobs: dict[str, str], quantizer: str) -> bool:
    """For a quantizer whose config offers weight granularity and nothing else (litert-torch's,
    ExecuTorch's XNNPACK): whether the weights are per channel (its default) or per tensor."""
    rest = dict(knobs)
    per_channel = rest.pop("weights", "per_channel") == "per_channel"
    if rest:
        raise Inexpressible(f"{quantizer} config has no knob for {sorted(rest)}")
    return per_channel


# --- eager and FX: torch.ao.quantization QConfig ---------------------------------------------


def _split(partial: Any, qat: bool) -> tuple[type | None, type, dict]:
    """(fake-quant class or None, observer class, keyword arguments) of a qconfig entry."""
    cls, kwargs = partial.p.func, dict(partial.p.keywords)
    if qat:
        return cls, kwargs.pop("observer"), kwargs
    return None, cls, kwargs


def _join(fake_quant: type | None, observer: type, kwargs: dict) -> Any:
    if fake_quant is None:
        return observer.with_args(**kwargs)
    return fake_quant.with_args(observer=observer, **kwargs)


def torch_qconfig(knobs: dict[str, str], engine: str, qat: bool) -> Any:
    """The engine's default (QAT) qconfig with ``knobs`` applied."""
    import torch.ao.quantization as tq
    from torch.ao.quantization import observer as ob

    base = tq.get_default_qat_qconfig(engine, 1) if qat else tq.get_default_qconfig(engine)
    a_fq, a_obs, a = _split(base.activation, qat)
    w_fq, w_obs, w = _split(base.weight, qat)

    weights = knobs.get("weights")
    if weights == "per_tensor":
        w_obs, w["qscheme"] = (ob.MovingAverageMinMaxObserver if qat else ob.MinMaxObserver), torch.per_tensor_symmetric
        w.pop("ch_axis", None)
    elif weights == "per_channel":
        w_obs = ob.MovingAveragePerChannelMinMaxObserver if qat else ob.PerChannelMinMaxObserver
        w["qscheme"] = torch.per_channel_symmetric
    if "weight_range" in knobs:
        w["quant_min"], w["quant_max"] = WEIGHT_RANGES[knobs["weight_range"]]
        w["dtype"] = torch.qint8
    if knobs.get("weight_scheme") == "affine":
        per_channel = w.get("qscheme") in (torch.per_channel_symmetric, torch.per_channel_affine)
        w["qscheme"] = torch.per_channel_affine if per_channel else torch.per_tensor_affine

    activations = knobs.get("activations")
    if activations == "symmetric":
        a["qscheme"] = torch.per_tensor_symmetric
    elif activations in ACTIVATION_RANGES:
        dtype, _, low, high = ACTIVATION_RANGES[activations]
        if dtype is None:
            raise Inexpressible(f"torch.ao quantized tensors have no {activations} dtype")
        a.update(dtype=dtype, quant_min=low, quant_max=high, reduce_range=False)

    if "activation_observer" in knobs:
        a_obs = getattr(ob, CLASS_KNOBS["activation_observer"][knobs["activation_observer"]])
    if "weight_observer" in knobs:
        w_obs = getattr(ob, CLASS_KNOBS["weight_observer"][knobs["weight_observer"]])
        w["qscheme"] = torch.per_channel_symmetric

    fake_quant = knobs.get("fake_quant")
    if fake_quant and qat:
        from torch.ao.quantization import fake_quantize as fq

        if fake_quant == "learnable":
            from torch.ao.quantization._learnable_fake_quantize import _LearnableFakeQuantize

            a.setdefault("quant_min", 0)
            a.setdefault("quant_max", 255)
            for kwargs in (a, w):
                kwargs.update(scale=1.0, zero_point=0.0, use_grad_scaling=True)
            a_fq = w_fq = _LearnableFakeQuantize
        else:
            a_fq = w_fq = getattr(fq, CLASS_KNOBS["fake_quant"][fake_quant])
    return tq.QConfig(activation=_join(a_fq, a_obs, a), weight=_join(w_fq, w_obs, w))


# --- PT2E: a Quantizer's QuantizationConfig ---------------------------------------------------


def _pt2e_ctr(observer: type, fake_quant: type | None, **kwargs: Any) -> Any:
    if fake_quant is None:
        return observer.with_args(eps=EPS, **kwargs)
    return fake_quant.with_args(observer=observer, eps=EPS, **kwargs)


# Where PT2E's observer and fake-quant classes live, newest first (torchao, then torch.ao).
PT2E_OBSERVERS = (
    ("torchao.quantization.pt2e.observer", "torchao.quantization.pt2e.fake_quantize"),
    ("torch.ao.quantization.observer", "torch.ao.quantization.fake_quantize"),
)


def _pt2e_observers() -> tuple[Any, Any]:
    """The observer and fake-quant modules of the PT2E implementation the quantizers come from."""
    import importlib

    for observers, fake_quants in PT2E_OBSERVERS:
        try:
            return importlib.import_module(observers), importlib.import_module(fake_quants)
        except ImportError:
            continue
    raise Unavailable("no PT2E observers: neither torchao nor torch.ao.quantization has them")


def pt2e_config(base: Any, knobs: dict[str, str], qat: bool) -> Any:
    """A backend quantizer's default QuantizationConfig with ``knobs`` applied."""
    if not knobs:
        return base
    ob, fq = _pt2e_observers()

    fake_quant = None
    if qat:
        chosen = knobs.get("fake_quant", "fused")
        if chosen == "learnable":
            raise Inexpressible("torchao's PT2E has no learnable (LSQ) fake-quant")
        fake_quant = getattr(fq, CLASS_KNOBS["fake_quant"][chosen])
    chosen_observer = knobs.get("activation_observer")
    act_observer = (getattr(ob, CLASS_KNOBS["activation_observer"][chosen_observer]) if chosen_observer
                    else ob.MovingAverageMinMaxObserver if qat else ob.HistogramObserver)

    def activation(spec: Any) -> Any:
        if spec is None or spec.is_dynamic:
            return spec
        changes: dict[str, Any] = {"observer_or_fake_quant_ctr": _pt2e_ctr(act_observer, fake_quant)}
        activations = knobs.get("activations")
        if activations == "symmetric":
            changes["qscheme"] = torch.per_tensor_symmetric
        elif activations in ACTIVATION_RANGES:
            _, dtype, low, high = ACTIVATION_RANGES[activations]
            changes.update(dtype=dtype, quant_min=low, quant_max=high)
        return dataclasses.replace(spec, **changes)

    def weight(spec: Any) -> Any:
        if spec is None:
            return spec
        per_channel = spec.qscheme in (torch.per_channel_symmetric, torch.per_channel_affine)
        per_channel = {"per_tensor": False, "per_channel": True}.get(knobs.get("weights", ""), per_channel)
        if knobs.get("weight_observer") == "moving_average_per_channel" or (qat and per_channel):
            observer = ob.MovingAveragePerChannelMinMaxObserver
        elif per_channel:
            observer = ob.PerChannelMinMaxObserver
        else:
            observer = ob.MovingAverageMinMaxObserver if qat else ob.MinMaxObserver
        changes: dict[str, Any] = {
            "observer_or_fake_quant_ctr": _pt2e_ctr(observer, fake_quant),
            "qscheme": torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric,
            "ch_axis": 0 if per_channel else None,
        }
        if "weight_range" in knobs:
            changes["quant_min"], changes["quant_max"] = WEIGHT_RANGES[knobs["weight_range"]]
        if knobs.get("weight_scheme") == "affine":
            changes["qscheme"] = torch.per_channel_affine if per_channel else torch.per_tensor_affine
        return dataclasses.replace(spec, **changes)

    return dataclasses.replace(
        base, input_activation=activation(base.input_activation), output_activation=activation(base.output_activation),
        weight=weight(base.weight), is_qat=qat)
