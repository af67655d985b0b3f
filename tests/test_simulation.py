"""The eager simulation follows what eager convert builds."""

from __future__ import annotations

import torch
import torch.ao.quantization as tq
from torch import nn

from matrix.modes.simulation import static_simulation


class _QuantReLU6(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.quant, self.act, self.dequant = tq.QuantStub(), nn.ReLU6(), tq.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.act(self.quant(x)))


def test_eager_relu6_keeps_its_inputs_grid_in_the_simulation_as_convert_builds_it():
    """Eager convert builds nn.ReLU6 without its observer: the quantized ReLU6 puts out its
    input's qparams. With symmetric activations the input's range is set by its negative tail
    and ReLU6's observer by its positive maximum alone, so a simulation that fake-quantizes with
    the ReLU6's observer clips a value the deployed model keeps."""
    model = _QuantReLU6().eval()
    observer = tq.MinMaxObserver.with_args(dtype=torch.quint8, qscheme=torch.per_tensor_symmetric)
    model.qconfig = tq.QConfig(activation=observer, weight=tq.default_weight_observer)
    prepared = tq.prepare(model)
    prepared(torch.tensor([-4.2, 0.0, 3.9]))
    ceiling = float(prepared.act.activation_post_process.calculate_qparams()[0]) * 127
    step = float(prepared.quant.activation_post_process.calculate_qparams()[0])
    x = torch.tensor([1.0, 3.9, 4.1])
    deployed = tq.convert(prepared)(x)
    simulated = static_simulation(prepared)(x)
    assert float(deployed.max()) > ceiling + step  # the deployed ReLU6 is past its own observer's range
    assert float((deployed - simulated).abs().max()) <= step / 2 + 1e-6
