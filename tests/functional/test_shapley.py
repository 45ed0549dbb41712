"""Tests of `lightning_cgs.functional.shapley`: the cosine score, and the exact and Monte Carlo Shapley values.

The exact values are checked against a brute-force oracle written here in plain Python: it walks all N! orders of the
agents and adds up marginal cosines computed from explicitly summed vectors, which shares nothing with the
implementation (coalitions enumerated by bits, Gram matrix, subset sums).
"""

import itertools
import math

import pytest
import torch

from lightning_cgs.functional import (
    cosine_contributions,
    exact_cosine_shapley,
    monte_carlo_cosine_shapley,
    normalize_updates,
    pearson_correlation,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
NAN = float("nan")
INF = float("inf")


def _cosine(x: list[float], y: list[float]) -> float:
    norm_x = math.sqrt(sum(value * value for value in x))
    norm_y = math.sqrt(sum(value * value for value in y))
    if norm_x == 0.0 or norm_y == 0.0:
        return 0.0
    return sum(a * b for a, b in zip(x, y, strict=True)) / (norm_x * norm_y)


def brute_force_shapley(updates: list[list[float]], weights: list[float] | None = None) -> list[float]:
    """Average marginal cosine over all N! orders, with coalition updates summed explicitly."""
    num_agents, dim = len(updates), len(updates[0])
    weights = [1.0] * num_agents if weights is None else weights
    weighted = [[weight * value for value in row] for weight, row in zip(weights, updates, strict=True)]
    grand = [sum(row[k] for row in weighted) for k in range(dim)]
    totals = [0.0] * num_agents
    orders = list(itertools.permutations(range(num_agents)))
    for order in orders:
        running = [0.0] * dim
        previous = 0.0
        for agent in order:
            running = [a + b for a, b in zip(running, weighted[agent], strict=True)]
            value = _cosine(running, grand)
            totals[agent] += value - previous
            previous = value
    return [total / len(orders) for total in totals]


def _random_updates(num_agents: int, dim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    scales = torch.rand(num_agents, 1, generator=generator, dtype=torch.float64) * 2 + 0.1
    return torch.randn(num_agents, dim, generator=generator, dtype=torch.float64) * scales


@pytest.mark.parametrize("device", DEVICES)
def test_cosine_contributions_hand_worked(device):
    updates = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, 0.0], [NAN, 1.0]], device=device)
    # aggregate (3, 4) has norm 5: cos = (3, 4, -3, 0) / 5; the zero and the NaN row get 0
    result = cosine_contributions(updates, torch.tensor([3.0, 4.0], device=device))
    torch.testing.assert_close(result, torch.tensor([0.6, 0.8, -0.6, 0.0, 0.0], device=device))


def test_cosine_contributions_zero_or_non_finite_aggregate_gives_zeros():
    updates = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    assert torch.equal(cosine_contributions(updates, torch.zeros(2)), torch.zeros(2))
    assert torch.equal(cosine_contributions(updates, torch.tensor([INF, 1.0])), torch.zeros(2))
    assert torch.equal(cosine_contributions(updates, torch.tensor([NAN, 1.0])), torch.zeros(2))


def test_cosine_contributions_matches_a_plain_cosine_and_handles_extreme_scales():
    updates = _random_updates(6, 30, seed=1)
    aggregate = updates.sum(dim=0)
    expected = torch.tensor([_cosine(row, aggregate.tolist()) for row in updates.tolist()], dtype=torch.float64)
    torch.testing.assert_close(cosine_contributions(updates, aggregate), expected)
    # in float32, 1e25 squared overflows and 1e-25 squared underflows; the cosine does not care (with eps = 0, as a
    # norm of 1e-25 is below the default eps and would count as zero)
    extreme = cosine_contributions((updates * 1e25).float(), (aggregate * 1e-25).float(), eps=0.0)
    torch.testing.assert_close(extreme, expected.float())
    assert torch.equal(cosine_contributions((updates * 1e25).float(), (aggregate * 1e-25).float()), torch.zeros(6))


def test_cosine_contributions_eps_is_a_threshold_on_each_norm():
    updates = torch.tensor([[1e-6, 0.0], [1.0, 1.0]], dtype=torch.float64)
    aggregate = torch.tensor([1.0, 0.0], dtype=torch.float64)
    # ||u_0|| = 1e-6: above eps = 1e-12 it scores cos = 1, at or below eps = 1e-6 it counts as zero
    torch.testing.assert_close(cosine_contributions(updates, aggregate), torch.tensor([1.0, 1 / math.sqrt(2)]).double())
    torch.testing.assert_close(
        cosine_contributions(updates, aggregate, eps=1e-6), torch.tensor([0.0, 1 / math.sqrt(2)]).double()
    )


def test_exact_shapley_two_agents_hand_worked():
    updates = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    # grand sum (2, 1): v({1}) = cos((1, 0), (2, 1)) = 2 / sqrt(5), v({2}) = cos((1, 1), (2, 1)) = 3 / sqrt(10)
    # phi_1 = (v({1}) + 1 - v({2})) / 2 = (0.894427 + 1 - 0.948683) / 2 = 0.472872, phi_2 = 1 - phi_1 = 0.527128
    phi_1 = (2 / math.sqrt(5) + 1 - 3 / math.sqrt(10)) / 2
    expected = torch.tensor([phi_1, 1 - phi_1], dtype=torch.float64)
    result = exact_cosine_shapley(updates)
    torch.testing.assert_close(result, expected)
    torch.testing.assert_close(result, torch.tensor([0.472872, 0.527128], dtype=torch.float64), atol=1e-6, rtol=0)


def test_exact_shapley_two_agents_weighted_hand_worked():
    updates = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    # weights (2, 1): weighted rows (2, 0), (0, 1), grand sum (2, 1): v({1}) = 2 / sqrt(5), v({2}) = 1 / sqrt(5)
    # phi_1 = (2 / sqrt(5) + 1 - 1 / sqrt(5)) / 2 = 1/2 + 1 / (2 sqrt(5)) = 0.723607, phi_2 = 0.276393
    expected = torch.tensor([0.5 + 0.5 / math.sqrt(5), 0.5 - 0.5 / math.sqrt(5)], dtype=torch.float64)
    torch.testing.assert_close(exact_cosine_shapley(updates, torch.tensor([2.0, 1.0])), expected)


def test_exact_shapley_three_agents_and_a_null_player_hand_worked():
    updates = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    # grand sum (2, 1), norm sqrt(5); the zero agent never changes a sum, so the game is one of agents 1, 2, 3:
    # v(1) = v(3) = v(13) = 2 / sqrt(5), v(2) = 1 / sqrt(5), v(12) = v(23) = cos((1, 1), (2, 1)) = 3 / sqrt(10)
    # phi_2 = 1/3 v(2) + 1/6 (v(12) - v(1)) + 1/6 (v(23) - v(3)) + 1/3 (1 - v(13))
    #       = 0.149071 + 0.018085 + 0.035191 = 0.202348; phi_1 = phi_3 = (1 - phi_2) / 2 = 0.398826
    v_1, v_2, v_12 = 2 / math.sqrt(5), 1 / math.sqrt(5), 3 / math.sqrt(10)
    phi_2 = 1 / 3 * v_2 + 1 / 6 * (v_12 - v_1) + 1 / 6 * (v_12 - v_1) + 1 / 3 * (1 - v_1)
    expected = torch.tensor([(1 - phi_2) / 2, phi_2, (1 - phi_2) / 2, 0.0], dtype=torch.float64)
    result = exact_cosine_shapley(updates)
    torch.testing.assert_close(result, expected)
    rounded = torch.tensor([0.398826, 0.202348, 0.398826, 0.0], dtype=torch.float64)
    torch.testing.assert_close(result, rounded, atol=1e-6, rtol=0)


@pytest.mark.parametrize("num_agents", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("weighted", [False, True])
def test_exact_shapley_matches_brute_force(num_agents, weighted):
    updates = _random_updates(num_agents, 7, seed=num_agents)
    weights = (
        torch.rand(num_agents, generator=torch.Generator().manual_seed(99), dtype=torch.float64) if weighted else None
    )
    expected = brute_force_shapley(updates.tolist(), None if weights is None else weights.tolist())
    result = exact_cosine_shapley(updates, weights)
    torch.testing.assert_close(result, torch.tensor(expected, dtype=torch.float64), atol=1e-12, rtol=0)


def test_exact_shapley_with_opposing_agents_matches_brute_force():
    # agents 1 and 2 cancel exactly: coalitions {1, 2} and {1, 2, 4} have a zero or tiny update
    updates = torch.tensor([[1.0, 2.0, 0.0], [-1.0, -2.0, 0.0], [0.5, 0.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    expected = brute_force_shapley(updates.tolist())
    torch.testing.assert_close(exact_cosine_shapley(updates), torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("num_agents", [1, 3, 8, 12])
def test_exact_shapley_is_efficient(num_agents):
    updates = _random_updates(num_agents, 20, seed=num_agents)
    weights = torch.rand(num_agents, generator=torch.Generator().manual_seed(5))
    # the values add up to v(all agents) = cos(u_N, u_N) = 1
    torch.testing.assert_close(exact_cosine_shapley(updates).sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(exact_cosine_shapley(updates, weights).sum(), torch.tensor(1.0, dtype=torch.float64))


def test_exact_shapley_is_symmetric_for_identical_agents():
    updates = _random_updates(5, 10, seed=3)
    updates[3] = updates[1]
    result = exact_cosine_shapley(updates)
    torch.testing.assert_close(result[1], result[3], atol=1e-14, rtol=0)
    # equal weighted updates are identical agents too: 2 * u and, with weight 2, u
    weighted = exact_cosine_shapley(
        torch.stack([updates[0], 2 * updates[2], updates[2]]), torch.tensor([1.0, 1.0, 2.0])
    )
    torch.testing.assert_close(weighted[1], weighted[2], atol=1e-14, rtol=0)


def test_exact_shapley_null_players_get_exactly_zero():
    updates = _random_updates(5, 10, seed=4)
    updates[1] = 0.0
    updates[2, 0] = NAN
    weights = torch.tensor([1.0, 1.0, 1.0, 0.0, 2.0])
    # a zero update, a non-finite update and a zero weight never change a coalition's sum: every marginal is 0
    result = exact_cosine_shapley(updates, weights)
    assert result[1].item() == 0.0 and result[2].item() == 0.0 and result[3].item() == 0.0
    torch.testing.assert_close(result.sum(), torch.tensor(1.0, dtype=torch.float64))
    clean = brute_force_shapley(updates[[0, 4]].tolist(), [1.0, 2.0])
    torch.testing.assert_close(result[[0, 4]], torch.tensor(clean, dtype=torch.float64))


def test_exact_shapley_of_a_zero_grand_sum_is_zero():
    updates = torch.tensor([[1.0, 2.0], [-1.0, -2.0], [0.0, 0.0]], dtype=torch.float64)
    # every v(S) is a cosine with the zero vector, hence 0, and so is every marginal
    assert torch.equal(exact_cosine_shapley(updates), torch.zeros(3, dtype=torch.float64))
    assert torch.equal(monte_carlo_cosine_shapley(updates, 10), torch.zeros(3, dtype=torch.float64))


def test_exact_shapley_is_invariant_to_a_common_scale():
    updates = _random_updates(4, 6, seed=8)
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    reference = exact_cosine_shapley(updates, weights)
    torch.testing.assert_close(exact_cosine_shapley(updates * 1e150, weights * 1e100), reference)


@pytest.mark.parametrize("device", DEVICES)
def test_exact_shapley_float32_keeps_dtype_and_device(device):
    updates = _random_updates(6, 50, seed=11)
    reference = exact_cosine_shapley(updates)
    result = exact_cosine_shapley(updates.float().to(device), torch.ones(6))
    assert result.dtype == torch.float32 and result.device.type == device
    torch.testing.assert_close(result.cpu(), reference.float(), atol=1e-6, rtol=0)


def test_exact_shapley_runs_for_twenty_agents_and_refuses_more():
    updates = _random_updates(20, 30, seed=20)
    torch.testing.assert_close(exact_cosine_shapley(updates).sum(), torch.tensor(1.0, dtype=torch.float64))
    match = r"at most 20 rows \(agents\) .* but got 21\. Use `monte_carlo_cosine_shapley`"
    with pytest.raises(ValueError, match=match):
        exact_cosine_shapley(_random_updates(21, 3, seed=0))


@pytest.mark.parametrize("weighted", [False, True])
def test_monte_carlo_shapley_converges_to_the_exact_values(weighted):
    updates = _random_updates(5, 12, seed=21)
    weights = torch.tensor([0.5, 1.0, 2.0, 0.25, 1.5]) if weighted else None
    exact = exact_cosine_shapley(updates, weights)
    estimate = monte_carlo_cosine_shapley(updates, 20000, weights, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(estimate, exact, atol=0.02, rtol=0)
    # each order's marginals telescope to v(all) = 1
    torch.testing.assert_close(estimate.sum(), torch.tensor(1.0, dtype=torch.float64))


def test_monte_carlo_shapley_is_reproducible_and_exact_for_null_players():
    updates = _random_updates(6, 8, seed=22)
    updates[4] = 0.0
    first = monte_carlo_cosine_shapley(updates, 50, generator=torch.Generator().manual_seed(7))
    second = monte_carlo_cosine_shapley(updates, 50, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, second)
    assert first[4].item() == 0.0


def test_monte_carlo_shapley_averages_the_sampled_orders():
    updates = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    generator = torch.Generator().manual_seed(3)
    orders = [torch.randperm(2, generator=generator).tolist() for _ in range(7)]
    first_count = sum(order[0] == 0 for order in orders)
    # agent 1 first: it scores v({1}) = 2 / sqrt(5); agent 2 first: agent 1 scores 1 - v({2}) = 1 - 3 / sqrt(10)
    expected_1 = (first_count * 2 / math.sqrt(5) + (7 - first_count) * (1 - 3 / math.sqrt(10))) / 7
    estimate = monte_carlo_cosine_shapley(updates, 7, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(estimate, torch.tensor([expected_1, 1 - expected_1], dtype=torch.float64))


def test_cosine_score_tracks_the_exact_shapley_values():
    """On random Gaussian updates, normalised to norm 1, the normalised cosine scores rank and space the agents like
    the normalised exact Shapley values.

    Measured when written (50 trials each, d = 100): mean Pearson correlation above 0.9999 and mean L1 distance about
    0.01 for N = 3..6; with updates of unequal norms (no normalisation) the correlation drops to about 0.98.
    """
    generator = torch.Generator().manual_seed(2021)
    for num_agents in range(3, 7):
        correlations, distances = [], []
        for _ in range(10):
            updates = normalize_updates(torch.randn(num_agents, 100, generator=generator, dtype=torch.float64), 1.0)
            psi = cosine_contributions(updates, updates.sum(dim=0))
            phi = exact_cosine_shapley(updates)
            correlations.append(pearson_correlation(psi / psi.sum(), phi / phi.sum()))
            distances.append((psi / psi.sum() - phi / phi.sum()).abs().sum().item())
        assert sum(correlations) / len(correlations) > 0.99
        assert sum(distances) / len(distances) < 0.05


@pytest.mark.parametrize(
    "call",
    [
        lambda x: cosine_contributions(x, x.sum(dim=0)),
        lambda x: exact_cosine_shapley(x, torch.ones(4)),
        lambda x: monte_carlo_cosine_shapley(x, 5, torch.ones(4)),
    ],
)
def test_inputs_are_left_unchanged(call):
    updates = _random_updates(4, 5, seed=0)
    updates[2, 1] = NAN
    copy = updates.clone()
    call(updates)
    assert torch.equal(updates.nan_to_num(), copy.nan_to_num()) and bool(updates[2, 1].isnan())


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: cosine_contributions(torch.ones(2, 3), torch.ones(2)),
            ValueError,
            r"`aggregate` to have shape \(3,\), the number of columns of `updates`, but got shape \(2,\)",
        ),
        (
            lambda: cosine_contributions(torch.ones(2, 3), torch.ones(3, dtype=torch.long)),
            TypeError,
            "`aggregate` to have a floating point dtype",
        ),
        (
            lambda: cosine_contributions(torch.ones(2, 3), torch.ones(3), eps=-1.0),
            ValueError,
            r"`eps` to be in \[0, inf\), but got -1.0\.",
        ),
        (
            lambda: exact_cosine_shapley(torch.ones(3, 2), torch.tensor([1.0, -1.0, 1.0])),
            ValueError,
            "`weights` to be finite and non-negative, but got -1.0 at index 1.",
        ),
        (lambda: exact_cosine_shapley(torch.ones(2)), ValueError, r"`updates` to be a 2-D tensor"),
        (
            lambda: monte_carlo_cosine_shapley(torch.ones(3, 2), 0),
            ValueError,
            "Expected argument `num_permutations` to be an integer >= 1, but got 0.",
        ),
        (
            lambda: monte_carlo_cosine_shapley(torch.ones(3, 2), 10.0),
            TypeError,
            "`num_permutations` to be an integer, but got float",
        ),
        (
            lambda: monte_carlo_cosine_shapley(torch.ones(3, 2), 10, generator=0),
            TypeError,
            "`generator` to be a torch.Generator or None, but got int.",
        ),
        (
            lambda: monte_carlo_cosine_shapley(torch.ones(3, 2), 10, torch.ones(2)),
            ValueError,
            r"`weights` to have shape \(3,\)",
        ),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
