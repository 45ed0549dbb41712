"""Tests of `lightning_cgs.functional.rewards`: reward fractions, top-fraction masks and sparsified rewards.

The masks are checked against a plain-Python ranking (sort positions by decreasing magnitude, then by position) and
counts from exact decimal arithmetic, both independent of the implementation's stable sort and rational counts.
"""

import decimal
import math

import pytest
import torch

from lightning_cgs.functional import reward_fractions, sparsify_rewards, top_fraction_mask, top_fraction_masks

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
NAN = float("nan")
INF = float("inf")


def kept_count(fraction: float, numel: int) -> int:
    """ceil(fraction * numel) for the exact value of the float, in 100-digit decimal arithmetic."""
    with decimal.localcontext() as context:
        context.prec = 100
        return math.ceil(decimal.Decimal(fraction) * numel)


def plain_mask(values: list[float], fraction: float) -> list[bool]:
    """Keep the largest magnitudes, the lower position first among equals."""
    order = sorted(range(len(values)), key=lambda position: (-abs(values[position]), position))
    kept = set(order[: kept_count(fraction, len(values))])
    return [position in kept for position in range(len(values))]


def _tied_tensor(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Small integers as floats: many entries share a magnitude, which exercises the tie-breaking."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(-3, 4, shape, generator=generator).float()


def test_reward_fractions_hand_worked():
    reputation = torch.tensor([0.5, 0.3, 0.2, 0.0], dtype=torch.float64)
    # beta = 2: tanh(1) = 0.761594, tanh(0.6) = 0.537050, tanh(0.4) = 0.379949, tanh(0) = 0
    # q = (1, 0.537050 / 0.761594, 0.379949 / 0.761594, 0) = (1, 0.705165, 0.498886, 0)
    result = reward_fractions(reputation, beta=2.0)
    expected = [1.0, math.tanh(0.6) / math.tanh(1.0), math.tanh(0.4) / math.tanh(1.0), 0.0]
    torch.testing.assert_close(result, torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(
        result, torch.tensor([1.0, 0.705165, 0.498886, 0.0], dtype=torch.float64), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("beta", [0.5, 1.0, 1.2, 1.5, 2.0, 50.0])
def test_reward_fractions_top_agent_gets_exactly_one_and_order_is_kept(beta):
    generator = torch.Generator().manual_seed(int(beta * 10))
    reputation = torch.rand(7, generator=generator)
    reputation = reputation / reputation.sum()
    result = reward_fractions(reputation, beta)
    assert result[reputation.argmax()].item() == 1.0
    order = reputation.argsort()
    assert bool((result[order].diff() >= 0).all())
    assert bool(((result >= 0) & (result <= 1)).all())


def test_reward_fractions_ties_at_the_top_all_get_one():
    assert reward_fractions(torch.tensor([0.4, 0.2, 0.4]), 1.0).tolist()[0::2] == [1.0, 1.0]


def test_reward_fractions_infinite_beta_gives_everyone_with_reputation_the_whole_aggregate():
    # tanh(inf * r) = 1 for r > 0; for r = 0 it is tanh(0) = 0, not tanh(NaN)
    result = reward_fractions(torch.tensor([0.001, 0.6, 0.0, 0.399]), float("inf"))
    assert result.tolist() == [1.0, 1.0, 0.0, 1.0]


def test_reward_fractions_small_beta_tends_to_reputation_over_maximum():
    reputation = torch.tensor([0.5, 0.25, 0.25])
    # float32: 1e-300 * r underflows to 0, so the limit r / max r = (1, 0.5, 0.5) is used
    assert reward_fractions(reputation, 1e-300).tolist() == [1.0, 0.5, 0.5]
    torch.testing.assert_close(reward_fractions(reputation.double(), 1e-6), torch.tensor([1.0, 0.5, 0.5]).double())


@pytest.mark.parametrize("device", DEVICES)
def test_top_fraction_mask_hand_worked(device):
    tensor = torch.tensor([[0.1, -3.0, 2.0], [2.0, -2.0, 0.0]], device=device)
    # 4 of 6 entries: -3 first, then the three entries of magnitude 2; ceil(0.6 * 6) = 4 keeps them all
    expected = torch.tensor([[False, True, True], [True, True, False]], device=device)
    assert torch.equal(top_fraction_mask(tensor, 0.6), expected)
    # ceil(0.5 * 6) = 3: of the tied 2s the first two positions win
    expected = torch.tensor([[False, True, True], [True, False, False]], device=device)
    assert torch.equal(top_fraction_mask(tensor, 0.5), expected)


@pytest.mark.parametrize("fraction", [0.0, 1e-9, 0.1, 0.25, 0.3, 0.5, 0.7, 0.99, 1.0])
@pytest.mark.parametrize("shape", [(10,), (4, 5), (3, 2, 7), (1,)])
def test_top_fraction_mask_keeps_exactly_the_ceiling_and_matches_a_plain_ranking(fraction, shape):
    tensor = _tied_tensor(shape, seed=len(shape))
    mask = top_fraction_mask(tensor, fraction)
    assert mask.shape == tensor.shape and mask.dtype == torch.bool
    assert int(mask.sum()) == kept_count(fraction, tensor.numel())
    assert mask.flatten().tolist() == plain_mask(tensor.flatten().tolist(), fraction)


def test_top_fraction_mask_counts_exactly_for_the_float_value():
    tensor = torch.arange(10.0)
    # 0.7 as a double is just below seven tenths: 7 entries (the rounded product 0.7 * 10 = 7.000000000000001 would
    # give 8); 0.3 as a float32 is just above three tenths: 4 entries
    assert int(top_fraction_mask(tensor, 0.7).sum()) == 7
    assert int(top_fraction_mask(tensor, 0.3).sum()) == 3
    assert top_fraction_masks(tensor, torch.tensor([0.3, 0.7], dtype=torch.float32)).sum(dim=1).tolist() == [4, 7]


def test_top_fraction_mask_fraction_zero_and_one():
    tensor = torch.tensor([[1.0, 0.0], [-5.0, 0.0]])
    assert not top_fraction_mask(tensor, 0.0).any()
    assert top_fraction_mask(tensor, 1.0).all()
    assert top_fraction_mask(torch.zeros(0), 0.5).shape == (0,)


@pytest.mark.parametrize("device", DEVICES)
def test_top_fraction_masks_agree_with_one_mask_per_agent(device):
    tensor = _tied_tensor((6, 9), seed=3).to(device)
    fractions = torch.tensor([1.0, 0.0, 0.5, 0.123, 0.9, 1 / 3, 0.5], dtype=torch.float64)
    masks = top_fraction_masks(tensor, fractions)
    assert masks.shape == (7, 6, 9) and masks.device.type == device
    for mask, fraction in zip(masks, fractions.tolist(), strict=True):
        assert torch.equal(mask, top_fraction_mask(tensor, fraction))
    # a larger fraction keeps a superset
    order = fractions.argsort()
    assert bool((masks[order[:-1]] <= masks[order[1:]]).all())


@pytest.mark.parametrize("device", DEVICES)
def test_sparsify_rewards_layer_mode_matches_a_plain_loop(device):
    aggregate = [_tied_tensor((4, 3), seed=0), _tied_tensor((5,), seed=1), _tied_tensor((2, 2, 2), seed=2)]
    aggregate = [tensor.to(device) for tensor in aggregate]
    fractions = torch.tensor([1.0, 0.6, 0.25, 0.0])
    rewards = sparsify_rewards(aggregate, fractions, mode="layer")
    assert len(rewards) == 3
    for tensor, reward in zip(aggregate, rewards, strict=True):
        assert reward.shape == (4, *tensor.shape) and reward.dtype == tensor.dtype and reward.device == tensor.device
        values = tensor.flatten().tolist()
        for agent, fraction in enumerate(fractions.tolist()):
            kept = plain_mask(values, fraction)
            expected = [value if keep else 0.0 for value, keep in zip(values, kept, strict=True)]
            assert reward[agent].flatten().tolist() == expected


def test_sparsify_rewards_global_mode_matches_a_plain_loop_over_the_concatenation():
    aggregate = [torch.tensor([[0.1, -5.0], [0.2, 0.3]]), torch.tensor([4.0, -0.1, 3.0]), torch.tensor([[2.0]])]
    fractions = torch.tensor([1.0, 0.5, 0.25, 0.0], dtype=torch.float64)
    rewards = sparsify_rewards(aggregate, fractions, mode="global")
    values = [value for tensor in aggregate for value in tensor.flatten().tolist()]
    sizes = [tensor.numel() for tensor in aggregate]
    for agent, fraction in enumerate(fractions.tolist()):
        kept = plain_mask(values, fraction)
        expected = [value if keep else 0.0 for value, keep in zip(values, kept, strict=True)]
        produced = [value for reward in rewards for value in reward[agent].flatten().tolist()]
        assert produced == expected
    # 8 entries: half keeps the 4 largest, -5, 4, 3 and 2; the first tensor keeps only -5
    assert rewards[0][1].tolist() == [[0.0, -5.0], [0.0, 0.0]]
    assert rewards[2][1].tolist() == [[2.0]]
    assert sizes == [4, 3, 1]


def test_sparsify_rewards_global_mode_breaks_ties_by_tensor_then_position():
    aggregate = [torch.tensor([1.0, -1.0]), torch.tensor([1.0, 1.0])]
    # 2 of 4 equal magnitudes: both entries of the first tensor; in layer mode one entry of each
    global_rewards = sparsify_rewards(aggregate, torch.tensor([0.5]), mode="global")
    assert [reward.tolist() for reward in global_rewards] == [[[1.0, -1.0]], [[0.0, 0.0]]]
    layer_rewards = sparsify_rewards(aggregate, torch.tensor([0.5]), mode="layer")
    assert [reward.tolist() for reward in layer_rewards] == [[[1.0, 0.0]], [[1.0, 0.0]]]


def test_sparsify_rewards_mixed_dtypes_and_empty_aggregate():
    aggregate = (torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor([3.0], dtype=torch.float32))
    rewards = sparsify_rewards(aggregate, torch.tensor([0.5]), mode="global")
    # 3 entries, ceil(1.5) = 2: 3.0 and 2.0
    assert [reward.dtype for reward in rewards] == [torch.float64, torch.float32]
    assert [reward.tolist() for reward in rewards] == [[[0.0, 2.0]], [[3.0]]]
    assert sparsify_rewards([], torch.tensor([0.5]), mode="global") == []
    assert sparsify_rewards([], torch.tensor([0.5])) == []


def test_rewards_leave_inputs_unchanged():
    tensor = torch.tensor([3.0, -1.0, 2.0])
    fractions = torch.tensor([0.5, 1.0])
    sparsify_rewards([tensor], fractions, mode="global")
    top_fraction_masks(tensor, fractions)
    reward_fractions(fractions, 1.0)
    assert tensor.tolist() == [3.0, -1.0, 2.0] and fractions.tolist() == [0.5, 1.0]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: reward_fractions(torch.tensor([0.5, 0.5]), 0.0), ValueError, r"`beta` to be in \(0, inf\], but got 0"),
        (lambda: reward_fractions(torch.tensor([0.5, 0.5]), -1), ValueError, r"`beta` to be in \(0, inf\], but got -1"),
        (lambda: reward_fractions(torch.tensor([0.5]), NAN), ValueError, r"`beta` to be in \(0, inf\], but got nan"),
        (
            lambda: reward_fractions(torch.tensor([0.0, 0.0]), 1.0),
            ValueError,
            r"`reputation` to have at least one positive entry, but got \[0.0, 0.0\]\.",
        ),
        (
            lambda: reward_fractions(torch.tensor([0.5, -0.5]), 1.0),
            ValueError,
            "`reputation` to be finite and non-negative, but got -0.5 at index 1.",
        ),
        (
            lambda: top_fraction_mask(torch.ones(3), 1.5),
            ValueError,
            r"Expected argument `fraction` to be in \[0, 1\], but got 1.5\.",
        ),
        (lambda: top_fraction_mask(torch.ones(3), -0.1), ValueError, r"`fraction` to be in \[0, 1\], but got -0.1\."),
        (lambda: top_fraction_mask(torch.ones(3, dtype=torch.long), 0.5), TypeError, "`tensor` to have a floating"),
        (
            lambda: top_fraction_masks(torch.ones(3), torch.tensor([0.5, 1.5])),
            ValueError,
            r"Expected argument `fractions` to be in \[0, 1\], but got 1.5 at index 1\.",
        ),
        (
            lambda: top_fraction_masks(torch.ones(3), torch.tensor([NAN])),
            ValueError,
            r"`fractions` to be in \[0, 1\], but got nan at index 0\.",
        ),
        (lambda: top_fraction_masks(torch.ones(3), 0.5), TypeError, "`fractions` to be a torch.Tensor, but got float."),
        (
            lambda: sparsify_rewards([torch.ones(3)], torch.ones(1), mode="model"),
            ValueError,
            r"Expected argument `mode` to be one of \('layer', 'global'\), but got 'model'\.",
        ),
        (
            lambda: sparsify_rewards(torch.ones(3), torch.ones(1)),
            TypeError,
            "`aggregate` to be a list or tuple of tensors, one per parameter tensor, but got Tensor.",
        ),
        (
            lambda: sparsify_rewards([torch.ones(3), [1.0]], torch.ones(1)),
            TypeError,
            r"Expected argument `aggregate\[1\]` to be a torch.Tensor, but got list.",
        ),
        (
            lambda: sparsify_rewards([torch.ones(3)], torch.ones(1, 2)),
            ValueError,
            r"`fractions` to be a 1-D tensor, but got shape \(1, 2\)\.",
        ),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
