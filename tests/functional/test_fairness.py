"""Tests of `lightning_cgs.functional.fairness`: Pearson correlation with undefined cases, individual rationality."""

import warnings

import numpy as np
import pytest
import torch

from lightning_cgs.functional import individual_rationality, pearson_correlation

NAN = float("nan")
INF = float("inf")


def test_pearson_correlation_hand_worked():
    # x - mean = (-1, 0, 1), y - mean = (-1, 1, 0): covariance sum 1, squared deviations 2 and 2 -> 1 / 2
    assert pearson_correlation(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 3.0, 2.0])) == pytest.approx(0.5)
    assert pearson_correlation(torch.tensor([1, 2, 3]), torch.tensor([3, 2, 1])) == pytest.approx(-1.0)


@pytest.mark.parametrize("seed", range(5))
def test_pearson_correlation_matches_numpy(seed):
    generator = np.random.default_rng(seed)
    x = generator.normal(size=12)
    y = 0.5 * x + generator.normal(size=12)
    expected = float(np.corrcoef(x, y)[0, 1])
    result = pearson_correlation(torch.from_numpy(x), torch.from_numpy(y).float())
    assert isinstance(result, float)
    assert result == pytest.approx(expected, abs=1e-6)


def test_pearson_correlation_is_clamped_for_perfectly_correlated_input():
    x = torch.tensor([0.1, 0.2, 0.3, 0.7]) * 3
    result = pearson_correlation(x, x * 7 + 1)
    assert -1.0 <= result <= 1.0 and result == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([0.8, 0.8, 0.8], [0.5, 0.6, 0.9]),
        ([0.5, 0.6, 0.9], [0.7, 0.7, 0.7]),
        ([1.0, 1.0], [1.0, 1.0]),
        ([0.5], [0.3]),
        ([], []),
        ([0.5, NAN, 0.7], [0.1, 0.2, 0.3]),
        ([0.5, 0.6, 0.7], [0.1, INF, 0.3]),
    ],
)
def test_pearson_correlation_is_none_where_undefined_and_does_not_warn(x, y):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pearson_correlation(torch.tensor(x), torch.tensor(y)) is None


def test_pearson_correlation_leaves_inputs_unchanged():
    x, y = torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0.0, 1.0, 0.5])
    pearson_correlation(x, y)
    assert x.tolist() == [1.0, 2.0, 4.0] and y.tolist() == [0.0, 1.0, 0.5]


def test_individual_rationality_hand_worked():
    final = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    standalone = torch.tensor([0.85, 0.8, 0.75, 0.5, 0.55])
    # agent 0 gains, agent 1 ties (counts), agent 2 loses, agent 3 gains, agent 4 loses -> 3 / 5
    assert individual_rationality(final, standalone) == pytest.approx(0.6)
    assert individual_rationality(standalone, standalone) == 1.0
    assert individual_rationality(torch.tensor([0.1]), torch.tensor([0.2])) == 0.0


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: pearson_correlation(torch.ones(3), torch.ones(4)),
            ValueError,
            "Expected arguments `x` and `y` to have the same length, but got 3 and 4.",
        ),
        (lambda: pearson_correlation([1.0, 2.0], torch.ones(2)), TypeError, "`x` to be a torch.Tensor, but got list."),
        (lambda: pearson_correlation(torch.ones(2), torch.ones(2, 1)), ValueError, r"`y` to be a 1-D tensor"),
        (
            lambda: pearson_correlation(torch.ones(2, dtype=torch.bool), torch.ones(2)),
            TypeError,
            "`x` to have a real dtype, but got torch.bool.",
        ),
        (
            lambda: individual_rationality(torch.ones(3), torch.ones(2)),
            ValueError,
            "`final_accuracy` and `standalone_accuracy` to have the same length, but got 3 and 2.",
        ),
        (
            lambda: individual_rationality(torch.zeros(0), torch.zeros(0)),
            ValueError,
            "`final_accuracy` to have at least one entry, but got an empty tensor.",
        ),
        (
            lambda: individual_rationality(torch.tensor([0.5, NAN]), torch.ones(2)),
            ValueError,
            "Expected argument `final_accuracy` to be finite, but got nan at index 1.",
        ),
        (
            lambda: individual_rationality(torch.ones(2), torch.tensor([INF, 0.5])),
            ValueError,
            "`standalone_accuracy` to be finite, but got inf at index 0.",
        ),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
