r"""Fairness measures of a finished collaboration: correlation of rewards with contributions, individual rationality."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor
from torchmetrics.functional import pearson_corrcoef

from lightning_cgs.functional._checks import check_entries, check_tensor


def _real_vector(value: object, name: str) -> Tensor:
    """A 1-D tensor of real numbers (integer or floating point), as float64 on the CPU."""
    vector = check_tensor(value, name)
    if vector.is_complex() or vector.dtype == torch.bool:
        raise TypeError(f"Expected argument `{name}` to have a real dtype, but got {vector.dtype}.")
    if vector.ndim != 1:
        raise ValueError(f"Expected argument `{name}` to be a 1-D tensor, but got shape {tuple(vector.shape)}.")
    return vector.detach().to(device="cpu", dtype=torch.float64)


def _check_same_length(x: Tensor, y: Tensor, x_name: str, y_name: str) -> None:
    if x.shape != y.shape:
        raise ValueError(
            f"Expected arguments `{x_name}` and `{y_name}` to have the same length, but got {x.shape[0]} and"
            f" {y.shape[0]}."
        )


def pearson_correlation(x: Tensor, y: Tensor) -> float | None:
    r"""Pearson correlation of two vectors, or ``None`` where it is undefined.

    .. math::

        \rho = \frac{\sum_i (x_i - \bar x)(y_i - \bar y)}
            {\sqrt{\sum_i (x_i - \bar x)^2} \sqrt{\sum_i (y_i - \bar y)^2}}

    This is the fairness measure of collaborative learning: ``x`` the agents' rewards (final accuracies), ``y`` their
    contributions (standalone accuracies or reputations). A constant vector has no correlation, so instead of a
    ``NaN`` (which would break a logger) and a warning, the result is ``None`` when either vector is constant, has
    fewer than 2 entries, or holds a ``NaN`` or an infinity. Computed in float64 with
    :func:`torchmetrics.functional.pearson_corrcoef` and clamped to ``[-1, 1]``.

    Args:
        x: 1-D tensor of real numbers.
        y: 1-D tensor of real numbers, as long as ``x``.

    Returns:
        the correlation as a float in ``[-1, 1]``, or ``None``.

    Raises:
        TypeError: If an argument is not a tensor of real numbers.
        ValueError: If an argument is not 1-D or the lengths differ.

    Example:
        >>> import torch
        >>> from lightning_cgs.functional import pearson_correlation
        >>> round(pearson_correlation(torch.tensor([0.7, 0.8, 0.9]), torch.tensor([0.5, 0.6, 0.9])), 4)
        0.9608
        >>> print(pearson_correlation(torch.tensor([0.8, 0.8, 0.8]), torch.tensor([0.5, 0.6, 0.9])))
        None
    """
    x = _real_vector(x, "x")
    y = _real_vector(y, "y")
    _check_same_length(x, y, "x", "y")

    if x.numel() < 2 or not bool(torch.isfinite(x).all() and torch.isfinite(y).all()):
        return None
    if bool(x.max() == x.min()) or bool(y.max() == y.min()):
        return None
    with warnings.catch_warnings():
        # torchmetrics warns and returns NaN when a variance is tiny relative to the spread of the data
        warnings.simplefilter("ignore")
        correlation = float(pearson_corrcoef(x, y))
    if correlation != correlation:  # NaN
        return None
    return min(1.0, max(-1.0, correlation))


def individual_rationality(final_accuracy: Tensor, standalone_accuracy: Tensor) -> float:
    r"""Share of agents for whom collaborating paid off: final accuracy at least the standalone accuracy.

    .. math::

        \text{IR} = \frac{1}{N} \sum_{i=1}^{N} \mathbb{1}\big[a_i^{\text{final}} \geq a_i^{\text{standalone}}\big]

    Ties count as rational.

    Args:
        final_accuracy: ``(N,)`` tensor of the agents' accuracies after collaborating, finite.
        standalone_accuracy: ``(N,)`` tensor of the accuracies of the same models trained alone, finite.

    Returns:
        a float in ``[0, 1]``.

    Raises:
        TypeError: If an argument is not a tensor of real numbers.
        ValueError: If an argument is not 1-D, is empty, holds a ``NaN`` or an infinity, or the lengths differ.

    Example:
        >>> import torch
        >>> from lightning_cgs.functional import individual_rationality
        >>> individual_rationality(torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([0.85, 0.8, 0.75, 0.5]))
        0.75
    """
    final = _real_vector(final_accuracy, "final_accuracy")
    standalone = _real_vector(standalone_accuracy, "standalone_accuracy")
    _check_same_length(final, standalone, "final_accuracy", "standalone_accuracy")
    if final.numel() == 0:
        raise ValueError("Expected argument `final_accuracy` to have at least one entry, but got an empty tensor.")
    check_entries(final, "final_accuracy", torch.isfinite(final), "finite")
    check_entries(standalone, "standalone_accuracy", torch.isfinite(standalone), "finite")

    return float((final >= standalone).double().mean())
