"""Error metrics of a deployed output against the float model and the simulation."""

from __future__ import annotations

import math

import torch

from matrix.cell import SQNR_CEILING_DB

OUTPUT_LEVELS = 255


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.detach().double().flatten()


def sqnr_db(reference: torch.Tensor, output: torch.Tensor) -> float:
    ref, out = _flat(reference), _flat(output)
    noise = float(((ref - out) ** 2).sum())
    signal = float((ref**2).sum())
    if noise == 0.0:
        return SQNR_CEILING_DB
    if signal == 0.0:
        return -SQNR_CEILING_DB
    return min(10.0 * math.log10(signal / noise), SQNR_CEILING_DB)


def cosine(reference: torch.Tensor, output: torch.Tensor) -> float:
    ref, out = _flat(reference), _flat(output)
    denominator = float(ref.norm() * out.norm())
    return float(ref @ out) / denominator if denominator else float("nan")


def output_step(simulation: torch.Tensor) -> float:
    """The output quantization step: the unit of ``lsb_err_vs_sim``.

    A simulated output whose distinct values fit on a grid of at most 256 levels
    (its range is at most 255 of its smallest gaps) is on its quantization grid,
    whose step is that gap. Any other output (the float output of dynamic
    quantization) gets one 8-bit step of its range.
    """
    sim = _flat(simulation)
    span = float(sim.max() - sim.min())
    levels = torch.unique(sim)
    if len(levels) > 1:
        gap = float(levels.diff().min())
        if span / gap <= OUTPUT_LEVELS * (1 + 1e-6):
            return gap
    return span / OUTPUT_LEVELS


def lsb_error(simulation: torch.Tensor, output: torch.Tensor) -> float:
    """Largest distance of the deployed output from the simulation, in output steps."""
    step = output_step(simulation)
    distance = float((_flat(simulation) - _flat(output)).abs().max())
    if step == 0.0:
        return 0.0 if distance == 0.0 else math.inf
    return distance / step


def top1(output: torch.Tensor) -> torch.Tensor:
    return output.reshape(output.shape[0], -1).argmax(dim=1)


def compare(
    reference: torch.Tensor,
    output: torch.Tensor,
    simulation: torch.Tensor,
    classifier: bool = False,
    labels: torch.Tensor | None = None,
) -> dict[str, float]:
    """Every metric of the contract for one cell."""
    if output.shape != reference.shape:
        raise ValueError(f"output shape {tuple(output.shape)} != float shape {tuple(reference.shape)}")
    error = (_flat(reference) - _flat(output)).abs()
    metrics = {
        "sqnr_db": sqnr_db(reference, output),
        "max_abs_err": float(error.max()),
        "mean_abs_err": float(error.mean()),
        "cosine": cosine(reference, output),
        "sqnr_sim_db": sqnr_db(reference, simulation),
        "lsb_err_vs_sim": lsb_error(simulation, output),
    }
    if classifier:
        metrics["top1_agree"] = float((top1(reference) == top1(output)).double().mean())
    if labels is not None:
        metrics["accuracy"] = float((top1(output) == labels).double().mean())
        metrics["float_accuracy"] = float((top1(reference) == labels).double().mean())
    return {k: round(v, 6) if math.isfinite(v) else v for k, v in metrics.items()}
