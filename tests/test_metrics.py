import math

import pytest
import torch

from matrix.metrics import SQNR_CEILING_DB, compare, cosine, lsb_error, output_step, sqnr_db


def test_sqnr_of_known_noise():
    reference = torch.tensor([1.0, -1.0, 1.0, -1.0])
    output = reference + torch.tensor([0.1, -0.1, 0.1, -0.1])
    # signal power 4, noise power 0.04: 20 dB
    assert sqnr_db(reference, output) == pytest.approx(20.0)
    assert sqnr_db(reference, reference) == SQNR_CEILING_DB


def test_cosine_and_compare_fields():
    reference = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    output = torch.tensor([[1.0, 0.5], [0.0, 2.0]])
    assert cosine(reference, output) == pytest.approx(5.0 / math.sqrt(5.0 * 5.25))
    metrics = compare(reference, output, reference, classifier=True, labels=torch.tensor([0, 1]))
    assert metrics["max_abs_err"] == pytest.approx(0.5)
    assert metrics["mean_abs_err"] == pytest.approx(0.125)
    assert metrics["top1_agree"] == 1.0
    assert metrics["accuracy"] == 1.0
    assert metrics["sqnr_sim_db"] == SQNR_CEILING_DB


def test_lsb_error_counts_steps_of_the_output_grid():
    simulation = torch.tensor([0.0, 0.25, 0.5, 1.0])  # on a grid of step 0.25
    assert output_step(simulation) == pytest.approx(0.25)
    output = simulation + torch.tensor([0.0, 0.0, 0.5, 0.25])
    assert lsb_error(simulation, output) == pytest.approx(2.0)


def test_lsb_error_off_grid_uses_an_8bit_step_of_the_range():
    simulation = torch.linspace(0.0, 2.55, 1000)
    assert output_step(simulation) == pytest.approx(0.01)
    assert lsb_error(simulation, simulation + 0.03) == pytest.approx(3.0, rel=1e-4)


def test_compare_rejects_a_shape_change():
    with pytest.raises(ValueError, match="shape"):
        compare(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 3))


def test_few_float_values_are_not_mistaken_for_a_grid():
    simulation = torch.tensor([0.0, 0.001, 0.5, 1.0])  # 4 values, but gaps far finer than 1/255 of the range
    assert output_step(simulation) == pytest.approx(1.0 / 255)
