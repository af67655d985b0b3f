"""The qspec axis: which knobs cross which modes, backends and models, and what config each makes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.ao.quantization as tq

from matrix.cases import expand
from matrix.plugin import AXES
from matrix.qconfigs import Inexpressible, pt2e_config, torch_qconfig
from matrix.qspecs import KNOB_MODELS, QSPECS

SUITE = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cases():
    return expand(AXES["models"], AXES["modes"], AXES["schemes"], AXES["backends"], AXES["qspecs"])


def test_every_knob_appears_and_only_on_its_models(cases):
    knobs = [name for name, q in QSPECS.items() if q.knobs]
    for name in knobs:
        mine = [c for c in cases if c.qspec == name]
        assert mine, f"qspec {name} has no cell"
        assert {c.model for c in mine} <= set(KNOB_MODELS)


def test_knobs_are_crossed_only_where_expressible(cases):
    by = {(c.qspec, c.mode, c.backend, c.scheme) for c in cases if c.model == "mlp"}
    assert ("a_int16", "pt2e", "inductor", "ptq_static") in by
    assert not any(q == "a_int16" and m in ("eager", "fx") for q, m, _, _ in by), "torch.ao has no int16 dtype"
    assert ("fq_learnable", "eager", "fbgemm", "qat") in by
    assert not any(q == "fq_learnable" and m == "pt2e" for q, m, _, _ in by), "torchao has no LSQ"
    assert ("w_per_tensor", "pt2e", "litert", "ptq_static") in by
    assert not any(q == "a_symmetric" and b == "litert" for q, _, b, _ in by), "litert-torch has no such knob"
    assert not any(q.startswith("obs_") and s == "qat" for q, _, _, s in by)
    assert ("a_int16", "keras", "litert", "ptq_static") in by
    assert ("a_int16", "keras", "litert", "qat") not in by


def _keywords(partial):
    return partial.p.func, dict(partial.p.keywords)


def test_torch_qconfig_changes_only_the_named_knob():
    default = tq.get_default_qconfig("x86")
    changed = torch_qconfig({"weights": "per_tensor"}, "x86", qat=False)
    assert _keywords(changed.activation) == _keywords(default.activation)
    cls, kwargs = _keywords(changed.weight)
    assert cls is tq.MinMaxObserver and kwargs["qscheme"] == torch.per_tensor_symmetric
    signed = torch_qconfig({"activations": "int8"}, "x86", qat=False).activation()
    assert (signed.dtype, signed.quant_min, signed.quant_max) == (torch.qint8, -128, 127)
    with pytest.raises(Inexpressible):
        torch_qconfig({"activations": "int16"}, "x86", qat=False)


def test_qat_fake_quant_classes_are_swapped():
    from torch.ao.quantization._learnable_fake_quantize import _LearnableFakeQuantize

    plain = torch_qconfig({"fake_quant": "fake_quantize"}, "qnnpack", qat=True)
    assert type(plain.activation()) is tq.FakeQuantize and type(plain.weight()) is tq.FakeQuantize
    learnable = torch_qconfig({"fake_quant": "learnable", "weights": "per_tensor"}, "qnnpack", qat=True)
    assert type(learnable.activation()) is _LearnableFakeQuantize


def test_pt2e_config_applies_int16_and_keeps_the_rest():
    from torchao.testing.pt2e._xnnpack_quantizer import get_symmetric_quantization_config

    base = get_symmetric_quantization_config(is_per_channel=True)
    changed = pt2e_config(base, {"activations": "int16"}, qat=False)
    assert changed.input_activation.dtype == torch.int16
    assert (changed.output_activation.quant_min, changed.output_activation.quant_max) == (-32768, 32767)
    assert changed.weight.qscheme == base.weight.qscheme
    assert pt2e_config(base, {}, qat=False) is base


def test_a_torch_only_cell_imports_no_other_framework():
    code = (
        "import sys\n"
        "from matrix.cases import Case\n"
        "from matrix.runner import run_cell\n"
        "from matrix.thresholds import Thresholds\n"
        "record = run_cell(Case('mlp', 'model', 'eager', 'ptq_static', 'default', 'fbgemm'), Thresholds.load())\n"
        "assert record['status'] == 'pass', record\n"
        "heavy = [m for m in ('tensorflow', 'litert_torch', 'executorch', 'openvino', 'nncf', 'onnxruntime') "
        "if m in sys.modules]\n"
        "print(heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=SUITE, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
