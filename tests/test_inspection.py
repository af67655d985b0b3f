import pytest
import torch
from torch import nn
from torch.ao.nn.quantized import Dropout as QuantizedDropout
from torch.ao.nn.quantized import FloatFunctional, QFunctional
from torch.ao.nn.quantized import Linear as QuantizedLinear
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

from matrix.backends.inductor import inspect_code
from matrix.backends.native import inspect_module, trace_run


def test_float_module_has_no_quantized_ops():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    found = inspect_module(model)
    assert found.quantized_ops == 0
    assert dict(found.floating) == {"Conv2d": 1, "Linear": 1}


def test_quantized_kernels_are_counted_once_and_functional_holders_are_not():
    model = nn.Sequential(QuantizedLinear(4, 4), DynamicLinear(4, 2), QFunctional(), FloatFunctional(),
                          QuantizedDropout(0.5), nn.Linear(2, 2))
    found = inspect_module(model)
    assert dict(found.quantized) == {"Linear": 2}
    assert dict(found.floating) == {"Linear": 1}


def test_a_run_counts_compute_on_int8_but_not_data_movement():
    """QFunctional's add computes, its cat joins data; a transpose, view or pad of an int8
    tensor moves data; a quantized ReLU computes (LiteRT and ONNX Runtime count the same way)."""

    class Ops(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.functional = QFunctional()

        def forward(self, x):
            joined = self.functional.cat([x, x], dim=1)
            moved = nn.functional.pad(joined.transpose(0, 1).reshape(2, 4), (1, 1))
            return self.functional.add(moved, moved), torch.relu(x)

    data = torch.quantize_per_tensor(torch.randn(2, 2), 0.1, 128, torch.quint8)
    trace = trace_run(Ops(), (data,))
    assert dict(trace.computed) == {"quantized.add": 1, "aten.relu": 1}


def test_fx_graph_functions_are_counted():
    class Quantized(nn.Module):
        def forward(self, x, y):
            return torch.ops.quantized.add(x, y, 0.1, 0)

    class Float(nn.Module):
        def forward(self, x, y):
            return torch.matmul(x, y)

    assert inspect_module(torch.fx.symbolic_trace(Quantized())).quantized_ops == 1
    assert dict(inspect_module(torch.fx.symbolic_trace(Float())).floating) == {"matmul": 1}


CODE = """
from torch._inductor.select_algorithm import extern_kernels
_quantized = torch.ops._quantized
buf4 = torch.ops.onednn.qconv_pointwise.tensor(buf0, x_scale, x_zp, w, ws, wz, b, [1, 1])
buf9 = torch.ops.onednn.qlinear_pointwise.tensor(buf8, x_scale_0, x_zp_0, w, ws, wz, b, 1.0, 0)
buf11 = extern_kernels.convolution(buf8, buf9, buf10, stride=(1, 1))
assert_size_stride(buf11, (16, 8, 12, 12), (1152, 1, 96, 8), 'torch.ops.aten.convolution.default')
buf12 = extern_kernels.addmm(b, x, w)
"""


def test_inductor_code_inspection():
    found = inspect_code([CODE])
    assert dict(found.quantized) == {"qconv_pointwise": 1, "qlinear_pointwise": 1}
    assert dict(found.floating) == {"convolution": 1, "addmm": 1}
    assert inspect_code(["buf1 = extern_kernels.mm(a, b)"]).quantized_ops == 0


def test_executorch_inspection_reads_what_each_xnnpack_delegate_runs_on_int8():
    """XNNPACK runs an op on int8 when the partitioner folded the quantize/dequantize nodes around
    it into its tensors: the convolution (with the ReLU fused into it) and the add; the GELU it
    reaches through an explicit conversion runs in float; the concatenation only joins data."""
    pytest.importorskip("executorch")
    from matrix.backends.executorch import inspect_lowered, lower, pt2e_quantizer
    from matrix.modes.pt2e import api
    from matrix.qspecs import QSPECS

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)

        def forward(self, x, y):
            summed = torch.relu(self.conv(x)) + y
            return torch.cat([summed, nn.functional.gelu(summed)], dim=1)

    torch.manual_seed(0)
    example = (torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 4))
    pt2e = api()
    model = pt2e.prepare_pt2e(torch.export.export(Block().eval(), example).module(),
                              pt2e_quantizer("ptq_static", QSPECS["default"]))
    model(*example)
    with torch.no_grad():
        found = inspect_lowered(lower(pt2e.convert_pt2e(model), example).exported_program().graph_module)
    assert dict(found.quantized) == {"aten::convolution[XnnpackBackend]": 1, "aten::add[XnnpackBackend]": 1}
    assert dict(found.floating) == {"aten::gelu[XnnpackBackend]": 1}
    assert found.notes["delegated"]["aten::cat"] == 1


def test_torch_cpu_counts_integer_matmuls_and_weight_only_kernels_apart():
    from collections import Counter

    from matrix.backends.torch_cpu import inspect_calls

    found = inspect_calls(Counter({"aten::_int_mm": 2, "aten::_weight_int8pack_mm": 1, "aten::mm": 1,
                                   "aten::relu": 3}))
    assert dict(found.quantized) == {"aten::_int_mm": 2}
    assert dict(found.floating) == {"aten::_weight_int8pack_mm[weight_only]": 1, "aten::mm": 1}


def test_torchao_dynamic_int8_runs_an_integer_matmul_and_weight_only_a_float_one():
    """Int8DynamicActivationInt8WeightConfig's linear calls aten._int_mm on int8 operands;
    Int8WeightOnlyConfig's converts the weight and calls a float matmul. The mode's simulation
    (dequantized weights, activations quantized per call) lands on the same outputs."""
    pytest.importorskip("torchao")
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

    from matrix.backends.torch_cpu import inspect_run
    from matrix.modes.torchao import simulation

    torch.manual_seed(0)
    x = torch.randn(4, 16)
    for config, quantized, floating in ((Int8DynamicActivationInt8WeightConfig(), {"aten::_int_mm": 1}, {}),
                                        (Int8WeightOnlyConfig(), {}, {"aten::mm": 1})):
        model = nn.Sequential(nn.Linear(16, 8)).eval()
        quantize_(model, config)
        found = inspect_run(model, (x,))
        assert dict(found.quantized) == quantized
        assert dict(found.floating) == floating
        with torch.no_grad():
            assert torch.allclose(simulation(model)(x), model(x), atol=1e-4)


def _openvino_conv_add(weights_int8: bool):
    """x -FQ-> Convolution -FQ-> Add(with the quantized x): the convolution's weights float, or
    int8 dequantized (Convert, Multiply) as a quantizer leaves them."""
    ov = pytest.importorskip("openvino")
    import numpy as np
    import openvino.opset13 as ops

    from matrix.formats.openvino import compile_config

    def fq(node):
        return ops.fake_quantize(node, np.float32(0), np.float32(4), np.float32(0), np.float32(4), 256)

    x = ops.parameter([1, 4, 8, 8], np.float32, name="x")
    weights = np.random.default_rng(0).normal(size=(4, 4, 3, 3)).astype(np.float32)
    w = ops.multiply(ops.convert(ops.constant(np.int8(weights * 40)), np.float32), ops.constant(np.float32(0.025))) \
        if weights_int8 else ops.constant(weights)
    q = fq(x)
    y = ops.add(fq(ops.convolution(q, w, [1, 1], [1, 1], [1, 1], [1, 1])), q)
    return ov.Core().compile_model(ov.Model([y], [x]), "CPU", compile_config())


def test_openvino_integer_add_beside_a_float_convolution_is_not_quantized_compute():
    from matrix.formats.openvino import inspect_compiled

    found = inspect_compiled(_openvino_conv_add(weights_int8=False))
    assert found.quantized_ops == 0 and found.floating == {"Convolution[f32]": 1}
    assert found.notes["integer_beside_float_compute"] == {"Eltwise[u8]": 1}
    found = inspect_compiled(_openvino_conv_add(weights_int8=True))
    assert found.quantized["Convolution[u8]"] == 1 and found.float_ops == 0


def test_tflite_inspection_reads_the_ops_inside_a_while_loop():
    """onnx2tf writes a recurrent layer as a WHILE loop: its body's kernels count too."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    import numpy as np

    from matrix.formats.tflite import inspect_tflite, interpreter
    from matrix.modes.keras import tensorflow

    tf = tensorflow()
    weight = tf.constant(np.random.default_rng(0).normal(size=(32, 32)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 32], tf.float32)])
    def looped(x):
        return tf.while_loop(lambda i, h: i < 3, lambda i, h: (i + 1, tf.nn.relu(tf.matmul(h, weight))), (0, x))[1]

    convert = tf.lite.TFLiteConverter.from_concrete_functions([looped.get_concrete_function()], looped)
    convert.optimizations = [tf.lite.Optimize.DEFAULT]  # dynamic range: the 1,024-element weight is int8
    content = convert.convert()
    main_only = inspect_tflite(interpreter(content))
    found = inspect_tflite(interpreter(content), content)
    assert "WHILE" in main_only.notes["ops"] and not main_only.quantized
    assert found.quantized["FULLY_CONNECTED[hybrid]"] == 1
