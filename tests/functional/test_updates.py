"""Tests of `lightning_cgs.functional.updates`: finite rows, normalisation to a common norm, weighted aggregation."""

import math

import pytest
import torch

from lightning_cgs.functional import aggregate_updates, finite_rows, normalize_updates

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
NAN = float("nan")
INF = float("inf")
ONES = torch.ones(2, 2)


def test_finite_rows_marks_rows_with_nan_or_inf():
    updates = torch.tensor([[1.0, 2.0], [NAN, 0.0], [0.0, -INF], [0.0, 0.0]])
    assert finite_rows(updates).tolist() == [True, False, False, True]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normalize_updates_hand_worked(device, dtype):
    updates = torch.tensor([[3.0, 4.0], [0.0, -2.0]], dtype=dtype, device=device)
    # row 0: 0.5 * (3, 4) / 5 = (0.3, 0.4); row 1: 0.5 * (0, -2) / 2 = (0, -0.5)
    expected = torch.tensor([[0.3, 0.4], [0.0, -0.5]], dtype=dtype, device=device)
    result = normalize_updates(updates, gamma=0.5, eps=0.0)
    assert result.dtype == dtype and result.device == updates.device
    torch.testing.assert_close(result, expected)


def test_normalize_updates_adds_eps_to_the_norm():
    # 1 * (3, 4) / (5 + 5) = (0.3, 0.4)
    result = normalize_updates(torch.tensor([[3.0, 4.0]], dtype=torch.float64), gamma=1.0, eps=5.0)
    torch.testing.assert_close(result, torch.tensor([[0.3, 0.4]], dtype=torch.float64))


@pytest.mark.parametrize("eps", [0.0, 1e-7])
def test_normalize_updates_gives_norm_gamma_and_keeps_zero_rows_zero(eps):
    generator = torch.Generator().manual_seed(0)
    scales = torch.tensor([[1e-3], [1.0], [0.0], [50.0], [2.0]], dtype=torch.float64)
    updates = torch.randn(5, 40, generator=generator, dtype=torch.float64) * scales
    result = normalize_updates(updates, gamma=0.15, eps=eps)
    norms = torch.linalg.vector_norm(result, dim=1)
    # gamma * ||u|| / (||u|| + eps) for the non-zero rows
    expected = [0.15 * n / (n + eps) if n > 0 else 0.0 for n in torch.linalg.vector_norm(updates, dim=1).tolist()]
    torch.testing.assert_close(norms, torch.tensor(expected, dtype=torch.float64))
    assert torch.equal(result[2], torch.zeros(40, dtype=torch.float64))
    # the direction is kept
    assert torch.all((result[[0, 1, 3, 4]] * updates[[0, 1, 3, 4]]) >= 0)


def test_normalize_updates_zeroes_non_finite_rows_without_touching_the_others():
    clean = torch.tensor([[1.0, 2.0, 2.0], [0.0, 3.0, -4.0]])
    updates = torch.cat([clean[:1], torch.tensor([[NAN, 1.0, 1.0], [1.0, INF, 0.0]]), clean[1:]])
    result = normalize_updates(updates, gamma=2.0)
    assert torch.equal(result[1:3], torch.zeros(2, 3))
    assert torch.equal(result[[0, 3]], normalize_updates(clean, gamma=2.0))
    assert torch.isfinite(result).all()


def test_normalize_updates_neither_overflows_nor_underflows_in_float32():
    updates = torch.tensor([[1e30, -1e30], [1e-40, 0.0]], dtype=torch.float32)
    # (1e30, -1e30) / (sqrt(2) * 1e30) = (1, -1) / sqrt(2); the subnormal row points along the first axis
    expected = torch.tensor([[1 / math.sqrt(2), -1 / math.sqrt(2)], [1.0, 0.0]])
    torch.testing.assert_close(normalize_updates(updates, gamma=1.0, eps=0.0), expected)
    # with eps = 1e-7 the subnormal row is 1e-40 / (1e-40 + 1e-7), about 1e-33, and must not become NaN
    expected[1, 0] = 0.0
    torch.testing.assert_close(normalize_updates(updates, gamma=1.0, eps=1e-7), expected)


def test_normalize_updates_leaves_its_input_unchanged():
    updates = torch.tensor([[3.0, 4.0], [NAN, 1.0]])
    copy = updates.clone()
    normalize_updates(updates, gamma=1.0)
    assert torch.equal(updates.isnan(), copy.isnan())
    assert torch.equal(updates.nan_to_num(), copy.nan_to_num())


@pytest.mark.parametrize("device", DEVICES)
def test_aggregate_updates_hand_worked(device):
    updates = torch.tensor([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]], device=device)
    # 0.5 * (1, 0) + 0.25 * (0, 2) + 0 * (4, 4) = (0.5, 0.5)
    result = aggregate_updates(updates, torch.tensor([0.5, 0.25, 0.0]))
    torch.testing.assert_close(result, torch.tensor([0.5, 0.5], device=device))


def test_aggregate_updates_ignores_non_finite_rows_even_with_zero_weight():
    updates = torch.tensor([[1.0, 1.0], [NAN, 0.0], [INF, -INF]])
    # a NaN times a zero weight would still be NaN: the row must be dropped, not multiplied
    assert torch.equal(aggregate_updates(updates, torch.tensor([2.0, 0.0, 1.0])), torch.tensor([2.0, 2.0]))


def test_aggregate_updates_keeps_the_dtype_of_the_updates():
    updates = torch.ones(2, 3, dtype=torch.float32)
    result = aggregate_updates(updates, torch.tensor([1, 2]))
    assert result.dtype == torch.float32
    assert torch.equal(result, torch.full((3,), 3.0))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: finite_rows([[1.0]]), TypeError, "Expected argument `updates` to be a torch.Tensor, but got list."),
        (lambda: finite_rows(torch.ones(2, 2, dtype=torch.long)), TypeError, "floating point dtype.*torch.int64"),
        (lambda: finite_rows(torch.ones(3)), ValueError, r"`updates` to be a 2-D tensor .* but got shape \(3,\)"),
        (lambda: finite_rows(torch.ones(0, 3)), ValueError, r"at least one row and one column, but got shape \(0, 3\)"),
        (lambda: normalize_updates(ONES, gamma=0), ValueError, r"`gamma` to be in \(0, inf\), but got 0\."),
        (lambda: normalize_updates(ONES, gamma=INF), ValueError, r"`gamma` to be in \(0, inf\), but got inf"),
        (lambda: normalize_updates(ONES, gamma=NAN), ValueError, r"`gamma` to be in \(0, inf\), but got nan"),
        (lambda: normalize_updates(ONES, gamma="1"), TypeError, "`gamma` to be a real number, but got str"),
        (lambda: normalize_updates(ONES, gamma=True), TypeError, "`gamma` to be a real number, but got bool"),
        (lambda: normalize_updates(ONES, 1.0, eps=-1), ValueError, r"`eps` to be in \[0, inf\), but got -1\."),
        (
            lambda: aggregate_updates(torch.ones(2, 2), torch.ones(3)),
            ValueError,
            r"`weights` to have shape \(2,\), one entry per agent, but got shape \(3,\)",
        ),
        (
            lambda: aggregate_updates(torch.ones(2, 2), torch.tensor([1.0, -0.5])),
            ValueError,
            "Expected argument `weights` to be finite and non-negative, but got -0.5 at index 1.",
        ),
        (
            lambda: aggregate_updates(torch.ones(2, 2), torch.tensor([NAN, 1.0])),
            ValueError,
            "`weights` to be finite and non-negative, but got nan at index 0.",
        ),
        (lambda: aggregate_updates(torch.ones(2, 2), [1.0, 1.0]), TypeError, "`weights` to be a torch.Tensor"),
        (
            lambda: aggregate_updates(torch.ones(2, 2), torch.tensor([True, False])),
            TypeError,
            "`weights` to have a real dtype, but got torch.bool",
        ),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
