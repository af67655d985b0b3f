import torch
from torch import nn
from torch.ao.nn.quantized import FloatFunctional, QFunctional
from torch.ao.nn.quantized import Linear as QuantizedLinear
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

from matrix.backends.inductor import inspect_code
from matrix.backends.native import inspect_module


def test_float_module_has_no_quantized_ops():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    found = inspect_module(model)
    assert found.quantized_ops == 0
    assert dict(found.floating) == {"Conv2d": 1, "Linear": 1}


def test_quantized_kernels_are_counted_once_and_float_functional_is_not():
    model = nn.Sequential(QuantizedLinear(4, 4), DynamicLinear(4, 2), QFunctional(), FloatFunctional(),
                          nn.Linear(2, 2))
    found = inspect_module(model)
    assert dict(found.quantized) == {"Linear": 2, "QFunctional": 1}
    assert dict(found.floating) == {"Linear": 1}


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
