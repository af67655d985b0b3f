"""Float PyTorch models quantized on the way to, or after, TFLite.

``litert_recipe``: ``litert_torch.convert`` with one of litert-torch's quantization
recipes (the guide's "float model, quantized during conversion"): dynamic-range int8,
int8 weight-only, float16 weights. The conversion itself happens in the backend's
export stage; the mode picks the recipe.

``aeq``: the float model converted to .tflite, then quantized by ai-edge-quantizer
(LiteRT's counterpart of ONNX Runtime's quantizer) with a recipe per scheme:
``static_wi8_ai8`` (``static_wi8_ai16`` for the ``a_int16`` qspec), ``dynamic_wi8_afp32``,
``weight_only_wi8_afp32``. Static recipes calibrate on the cell's calibration batches
with min/max statistics (``min_max_update``; the Quantizer's own default
averages per-batch ranges).
"""

from __future__ import annotations

import copy
import inspect
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np

from matrix.cell import Unavailable, first_line
from matrix.contract import Quantized
from matrix.formats.float_artifacts import FloatArtifacts
from matrix.formats.tflite import PACKAGES as LITERT_PACKAGES
from matrix.formats.tflite import QUANT_CONFIG, TFLiteModel, convert, litert_torch_part
from matrix.modes import Mode, of_family, register
from matrix.modes.eager import recipe_simulation
from matrix.modes.simulation import RECURRENT, dynamic_simulation, fp16_simulation, weight_only_simulation
from matrix.qspecs import int16_activations
from matrix.vocabulary import Stage

if TYPE_CHECKING:
    from matrix.contract import CellContext

# Each scheme's recipe by its names, newest first (ai-edge-torch 0.4 called the int8 ones full_int8_*).
LITERT_RECIPES = {"ptq_dynamic": ("full_dynamic_recipe", "full_int8_dynamic_recipe"),
                  "weight_only": ("full_weight_only_recipe", "full_int8_weight_only_recipe"),
                  "fp16": ("full_fp16_recipe",)}
AEQ_RECIPES = {"ptq_static": "static_wi8_ai8", "ptq_dynamic": "dynamic_wi8_afp32",
               "weight_only": "weight_only_wi8_afp32"}
# The float model's .tflite, converted once per process for all of its aeq cells.
FLOAT_TFLITE = FloatArtifacts()


class StandInUnbuilt(RuntimeError):
    """The harness's own simulation of a quantizer that works outside PyTorch cannot be built for
    the model: the cell is an error of the harness, never a finding about the quantizer."""


def simulation_for(ctx: CellContext, activation_bits: int = 8) -> tuple:
    """The stand-in simulation of the cell's recipe, and what it is. Called outside every stage:
    it is the harness's, and a failure of it (a layer eager prepare refuses and the simulation
    has no way around) is raised as :class:`StandInUnbuilt`."""
    try:
        return _simulation(ctx, activation_bits)
    except Exception as exc:
        cause = getattr(exc, "cause", exc)  # a stage the simulation opened (calibrate) wraps it
        raise StandInUnbuilt(f"the harness's stand-in simulation of the recipe (PyTorch eager fake-quant of the "
                             f"float model) cannot be built for this model: {type(cause).__name__}: "
                             f"{first_line(cause)}") from cause


def _simulation(ctx: CellContext, activation_bits: int) -> tuple:
    model = copy.deepcopy(ctx.float_model).eval()
    scheme = ctx.scheme.name
    if scheme == "ptq_dynamic":
        return dynamic_simulation(model), "PyTorch's dynamic simulation: weights QDQ, inputs fake-quantized per call"
    if scheme == "weight_only":
        return weight_only_simulation(model), "weights quantize-dequantized per channel, activations float"
    if scheme == "fp16":
        return fp16_simulation(model), "parameters rounded to float16"
    kind = f"PyTorch fake-quant of the recipe: MinMax int{activation_bits} activations, per-channel int8 weights"
    if any(isinstance(module, RECURRENT) for module in model.modules()):
        kind += "; a recurrent layer's weights only (its activations stay float in the simulation)"
    return recipe_simulation(ctx, activation_bits), kind


def quantize_litert_recipe(ctx: CellContext) -> Quantized:
    with ctx.clock.stage(Stage.PREPARE):
        quant_recipes = litert_torch_part("generative.quantize.quant_recipes")
        ctx.handoff[QUANT_CONFIG] = _recipe(quant_recipes, LITERT_RECIPES[ctx.scheme.name])()
    simulation, kind = simulation_for(ctx)
    return Quantized(copy.deepcopy(ctx.float_model).eval(), simulation, kind, stand_in=True)


def quantize_aeq(ctx: CellContext) -> Quantized:
    example = ctx.data.calibration[0]
    with ctx.clock.stage(Stage.CAPTURE):
        float_tflite = FLOAT_TFLITE.get(ctx.case.model, ctx.float_model, example,
                                        lambda: convert(copy.deepcopy(ctx.float_model), example))
    bits = 16 if int16_activations(ctx.qspec) else 8
    with ctx.clock.stage(Stage.PREPARE):
        from ai_edge_quantizer import calibrator, quantizer, recipe

        quantizing = quantizer.Quantizer(float_tflite)
        name = "static_wi8_ai16" if bits == 16 else AEQ_RECIPES[ctx.scheme.name]
        quantizing.load_quantization_recipe(_recipe(recipe, (name,))())  # 0.1 has the dynamic ones only
    statistics = None
    if quantizing.need_calibration:
        with ctx.clock.stage(Stage.CALIBRATE):
            inputs = _inputs(float_tflite)
            feeds = [{name: t.numpy().astype(dtype) for (name, dtype), t in zip(inputs, batch)}
                     for batch in ctx.data.calibration]
            statistics = _min_max_statistics(calibrator, float_tflite, {"serving_default": feeds},
                                             quantizing._recipe_manager)
    with ctx.clock.stage(Stage.CONVERT):
        quiet = "enable_progress_report" in inspect.signature(quantizing.quantize).parameters
        result = quantizing.quantize(statistics, **({"enable_progress_report": False} if quiet else {}))
    simulation, kind = simulation_for(ctx, bits)
    return Quantized(TFLiteModel(bytes(result.quantized_model)), simulation, kind, stand_in=True,
                     float_artifact=lambda: TFLiteModel(float_tflite))


def _recipe(module: Any, names: tuple[str, ...]) -> Any:
    """The first of ``names`` that ``module`` has (a recipe by its names, newest first); a release
    that has none of them makes the cell unavailable, naming the release."""
    for name in names:
        if hasattr(module, name):
            return getattr(module, name)
    top = module.__name__.partition(".")[0]
    release = " ".join(f"{dist} {metadata.version(dist)}" for dist in metadata.packages_distributions().get(top, []))
    raise Unavailable(f"{module.__name__} ({release or 'release unknown'}) has no {' or '.join(names)} recipe")


def _min_max_statistics(calibrator, content: bytes, data: dict, recipe_manager) -> dict:
    """The calibration statistics, each tensor's range over all batches (min/max, not the default
    moving average). ai-edge-quantizer 0.10 takes the update function in the Calibrator
    (``qsv_utils``); earlier releases (0.4) take it in ``calibrate``, from ``calibration_utils``."""
    try:
        from ai_edge_quantizer.utils import qsv_utils
    except ImportError:
        from ai_edge_quantizer.utils import calibration_utils

        calibrating = calibrator.Calibrator(content, num_threads=1)
        calibrating.calibrate(data, recipe_manager, qsv_update_func=calibration_utils.min_max_update)
    else:
        calibrating = calibrator.Calibrator(content, num_threads=1, qsv_update_func=qsv_utils.min_max_update)
        calibrating.calibrate(data, recipe_manager)
    return calibrating.get_model_qsvs()


def _inputs(content: bytes) -> list[tuple[str, np.dtype]]:
    """(name, dtype) of the serving signature's inputs, in order (token ids are int32 there)."""
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_content=content).get_signature_runner("serving_default").get_input_details()
    return [(name, np.dtype(detail["dtype"])) for name, detail in details.items()]


register(Mode(
    "litert_recipe", "litert_torch.convert of the float model with a litert-torch quantization recipe",
    reaches=of_family("tflite"), schemes=tuple(LITERT_RECIPES), quantize=quantize_litert_recipe,
    packages=LITERT_PACKAGES, extra="litert", tools=("litert-torch", "ai-edge-torch", "ai-edge-quantizer"),
))
register(Mode(
    "aeq", "ai-edge-quantizer on the float model's .tflite (static / dynamic / weight-only recipes)",
    reaches=of_family("tflite"), schemes=tuple(AEQ_RECIPES), quantize=quantize_aeq,
    packages={**LITERT_PACKAGES, "ai_edge_quantizer": "ai-edge-quantizer"}, extra="litert",
    tools=("ai-edge-quantizer",),
))
