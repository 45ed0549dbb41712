"""Tests of `lightning_cgs.functional.reputation`: moving average, floor, normalisation, broken contributions."""

import pytest
import torch

from lightning_cgs.functional import update_reputation

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
NAN = float("nan")
INF = float("inf")


@pytest.mark.parametrize("device", DEVICES)
def test_update_reputation_hand_worked(device):
    reputation = torch.tensor([0.5, 0.25, 0.25], device=device)
    contributions = torch.tensor([0.7, 0.35, -0.5], device=device)
    # 0.5 * (0.5, 0.25, 0.25) + 0.5 * (0.7, 0.35, -0.5) = (0.6, 0.3, -0.125); floor 0.1 gives (0.6, 0.3, 0.1),
    # which already sums to 1
    result = update_reputation(reputation, contributions, alpha=0.5, floor=0.1)
    torch.testing.assert_close(result, torch.tensor([0.6, 0.3, 0.1], device=device))


def test_update_reputation_from_zero_reputations():
    # first round: r = 0, so r' = (1 - alpha) psi = 0.05 * (0.8, 0.4, 0.2) = (0.04, 0.02, 0.01); sum 0.07
    result = update_reputation(torch.zeros(3, dtype=torch.float64), torch.tensor([0.8, 0.4, 0.2]), alpha=0.95)
    torch.testing.assert_close(result, torch.tensor([4 / 7, 2 / 7, 1 / 7], dtype=torch.float64))


def test_update_reputation_with_alpha_zero_forgets_the_past():
    # alpha = 0: r' = psi = (0.2, 0.6, -0.3) floored at 0.2 -> (0.2, 0.6, 0.2), normalised by 1.0
    result = update_reputation(torch.tensor([0.9, 0.05, 0.05]), torch.tensor([0.2, 0.6, -0.3]), alpha=0.0, floor=0.2)
    torch.testing.assert_close(result, torch.tensor([0.2, 0.6, 0.2]))


def test_update_reputation_never_gives_a_negative_weight():
    generator = torch.Generator().manual_seed(0)
    reputation = torch.full((6,), 1 / 6)
    for _ in range(20):
        contributions = torch.rand(6, generator=generator) * 2 - 1.5  # mostly negative cosines
        reputation = update_reputation(reputation, contributions, alpha=0.8)
        assert bool((reputation > 0).all())
        torch.testing.assert_close(reputation.sum(), torch.tensor(1.0))
    # all contributions negative: every agent sits at the floor, so the weights are equal
    result = update_reputation(torch.zeros(4), torch.tensor([-0.1, -0.5, -1.0, -0.2]), alpha=0.5)
    torch.testing.assert_close(result, torch.full((4,), 0.25))


def test_update_reputation_counts_non_finite_contributions_as_zero():
    # alpha = 0.5, r = 0: (NaN, 1, inf, -inf) counts as (0, 1, 0, 0) -> (0, 0.5, 0, 0) floored at 1e-3
    # -> (0.001, 0.5, 0.001, 0.001) / 0.503
    result = update_reputation(torch.zeros(4), torch.tensor([NAN, 1.0, INF, -INF]), alpha=0.5)
    torch.testing.assert_close(result, torch.tensor([0.001, 0.5, 0.001, 0.001]) / 0.503)


def test_update_reputation_promotes_dtypes_and_leaves_inputs_unchanged():
    reputation = torch.tensor([0.25, 0.75], dtype=torch.float32)
    contributions = torch.tensor([1.0, NAN], dtype=torch.float64)
    result = update_reputation(reputation, contributions, alpha=0.5)
    assert result.dtype == torch.float64
    # 0.5 * (0.25, 0.75) + 0.5 * (1, 0) = (0.625, 0.375)
    torch.testing.assert_close(result, torch.tensor([0.625, 0.375], dtype=torch.float64))
    assert reputation.tolist() == [0.25, 0.75] and contributions.isnan().tolist() == [False, True]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"alpha": 1.0}, ValueError, r"Expected argument `alpha` to be in \[0, 1\), but got 1.0\."),
        ({"alpha": 1.5}, ValueError, r"Expected argument `alpha` to be in \[0, 1\), but got 1.5\."),
        ({"alpha": -0.1}, ValueError, r"`alpha` to be in \[0, 1\), but got -0.1\."),
        ({"alpha": NAN}, ValueError, r"`alpha` to be in \[0, 1\), but got nan\."),
        ({"alpha": None}, TypeError, "`alpha` to be a real number, but got NoneType."),
        ({"alpha": 0.5, "floor": 0.0}, ValueError, r"`floor` to be in \(0, inf\), but got 0.0\."),
        ({"alpha": 0.5, "floor": INF}, ValueError, r"`floor` to be in \(0, inf\), but got inf\."),
        (
            {"alpha": 0.5, "reputation": torch.tensor([0.5, -0.1, 0.6])},
            ValueError,
            "`reputation` to be finite and non-negative, but got -0.1",
        ),
        (
            {"alpha": 0.5, "reputation": torch.tensor([0.5, NAN, 0.5])},
            ValueError,
            "`reputation` to be finite and non-negative, but got nan at index 1.",
        ),
        (
            {"alpha": 0.5, "contributions": torch.ones(2)},
            ValueError,
            r"`contributions` to have shape \(3,\), one entry per agent, but got shape \(2,\)\.",
        ),
        (
            {"alpha": 0.5, "reputation": torch.ones(3, 1)},
            ValueError,
            r"`reputation` to be a 1-D tensor, but got shape \(3, 1\)\.",
        ),
        (
            {"alpha": 0.5, "reputation": torch.zeros(3, dtype=torch.long)},
            TypeError,
            "`reputation` to have a floating point dtype",
        ),
    ],
)
def test_errors(kwargs, error, match):
    arguments = {"reputation": torch.full((3,), 1 / 3), "contributions": torch.zeros(3)} | kwargs
    with pytest.raises(error, match=match):
        update_reputation(**arguments)
