"""The zoo tier: real architectures from transformers, their own tier of the run."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.ao.quantization as tq

from matrix.backends import BACKENDS
from matrix.cases import expand
from matrix.modes import MODES
from matrix.modes.eager import FloatInputsWrapper
from matrix.plugin import asks_for_zoo
from matrix.qspecs import QSPECS
from matrix.runner import run_cell
from matrix.schemes import SCHEMES
from matrix.thresholds import Thresholds
from models import MODELS, module_types, register
from models.zoo import ZOO


def test_the_zoo_holds_at_least_eight_architectures_of_kind_zoo():
    names = [architecture.name for architecture in ZOO]
    assert len(names) >= 8
    assert all(MODELS[name].kind == "zoo" and MODELS[name].packages == {"transformers": "transformers"}
               for name in names)


@pytest.mark.parametrize("name", [architecture.name for architecture in ZOO])
def test_each_architecture_is_its_librarys_class_with_seeded_weights(name):
    spec = MODELS[name]
    first, second = spec.instantiate(), spec.instantiate()
    assert type(first.model).__module__.startswith("transformers.models.")
    inputs = spec.make_data().calibration[0]
    with torch.no_grad():
        out = first(*inputs)
        assert torch.equal(out, second(*inputs))
    assert out.shape[0] == inputs[0].shape[0] and torch.isfinite(out).all()
    # A float model worth quantizing: its output depends on its input (untrained weights can
    # leave an architecture's activations vanishing, and its output the same for every input).
    assert out.std(dim=0).mean() > 1e-3
    assert "Linear" in module_types(first) or "Conv2d" in module_types(first)


def test_mobilenet_keeps_its_first_blocks_and_a_head_built_for_their_width():
    body = MODELS["mobilenet_v2"].instantiate().model.mobilenet_v2
    assert len(body.layer) == 4 and sum(block.use_residual for block in body.layer) == 2
    assert body.conv_1x1.convolution.in_channels == body.layer[-1].reduce_1x1.convolution.out_channels


def test_efficientnet_keeps_a_residual_add_and_a_pooler_kernel_litert_can_pad_to():
    model = MODELS["efficientnet"].instantiate().model
    assert any(m.apply_dropout for m in model.modules() if hasattr(m, "apply_dropout"))  # the residual add
    assert model.config.hidden_dim <= 128  # litert-torch pads the pooler's input to hidden_dim squared


def test_the_default_run_leaves_the_zoo_out_and_a_marker_or_a_name_brings_it_in():
    assert not asks_for_zoo("", None)
    assert not asks_for_zoo("kind_model and not scheme_qat", None)
    assert asks_for_zoo("kind_zoo", None)
    assert asks_for_zoo("model_resnet and backend_x86", None)
    assert asks_for_zoo("smoke", None)
    assert asks_for_zoo("", ("mlp", "bert"))
    assert not asks_for_zoo("", ("mlp",))
    assert not asks_for_zoo("kind_zoology", None)


def test_zoo_cells_cross_every_mode_like_a_reference_model():
    """Every mode but those with models of their own (keras: Keras twins of reference models)."""
    general = tuple(name for name, mode in MODES.items() if getattr(mode, "models", None) is None)
    cases = expand(MODELS, MODES, SCHEMES, BACKENDS, QSPECS,
                   select={"models": ("resnet", "residual_add"), "modes": general})
    crossed = {name: {(c.mode, c.scheme, c.backend) for c in cases if c.model == name and c.qspec == "default"}
               for name in ("resnet", "residual_add")}
    # Two exceptions, for the zoo tier's wall time: ONNX Runtime's quantized models on OpenVINO
    # (the ort mode's covers) and onnx2tf's conversions run for the reference models only.
    reference_only = {cell for cell in crossed["residual_add"]
                      if (cell[0] == "ort" and cell[2] == "openvino") or cell[0] == "onnx2tf"}
    assert {cell[0] for cell in reference_only} == {"ort", "onnx2tf"} and not reference_only & crossed["resnet"]
    assert crossed["resnet"] == crossed["residual_add"] - reference_only
    assert {c.kind for c in cases if c.model == "resnet"} == {"zoo"}


def test_without_transformers_a_zoo_cell_is_unavailable_and_names_the_extra(monkeypatch):
    spec = MODELS["resnet"]
    missing = dataclasses.replace(spec, packages={"transformers_not_installed": "transformers"})
    monkeypatch.setitem(MODELS, "resnet", missing)
    case = next(c for c in expand(MODELS, MODES, SCHEMES, BACKENDS, QSPECS, select={"models": ("resnet",)})
                if c.backend == "fbgemm")
    record = run_cell(case, Thresholds.load())
    assert record["status"] == "unavailable"
    assert "transformers" in record["reason"] and "qmatrix[zoo]" in record["reason"]


def test_a_zoo_cell_gets_the_zoo_time_limit():
    thresholds = Thresholds.load()
    assert thresholds.for_cell("qat", "resnet", "inductor", "zoo")["max_cell_seconds"] == 600
    assert thresholds.for_cell("qat", "mlp", "inductor", "model")["max_cell_seconds"] == 300
    assert thresholds.for_cell("qat", "resnet", "inductor", "zoo")["max_recompiled_layers"] == 0
    assert thresholds.for_cell("qat", "mlp", "inductor", "model")["max_recompiled_layers"] > 100


def test_an_unknown_kind_is_refused_by_name():
    with pytest.raises(ValueError, match="model, zoo, operator, not 'zoology'"):
        register(dataclasses.replace(MODELS["mlp"], name="odd", kind="zoology"))


def test_eager_wrapper_quantizes_float_inputs_and_passes_token_ids_through():
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(x)
            return x.float()

    def prepared(quantize_input: bool) -> FloatInputsWrapper:
        wrapper = FloatInputsWrapper(Probe(), quantize_input=quantize_input)
        wrapper.qconfig = tq.get_default_qconfig("x86")
        return tq.prepare(wrapper)

    ids_wrapper, float_wrapper = prepared(False), prepared(True)
    ids = torch.tensor([[1, 2, 3]])
    ids_wrapper(ids)  # an observer on integer ids would raise: histogram_cpu is not implemented for Long
    assert seen[-1] is ids and not torch.isfinite(ids_wrapper.quant.activation_post_process.min_val).any()
    float_wrapper(torch.full((2, 3), 4.0))
    assert float_wrapper.quant.activation_post_process.min_val == 4.0
    # The choice is made once, not on the traced value: FX traces the wrapper.
    torch.fx.symbolic_trace(FloatInputsWrapper(torch.nn.Linear(3, 2)))
