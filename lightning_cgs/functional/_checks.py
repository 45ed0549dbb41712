"""Argument checks shared by the functional layer.

Every message names the argument in backticks, what is allowed, and what was given, e.g.
"Expected argument `alpha` to be in [0, 1), but got 1.5."
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor


def _format_bound(bound: float) -> str:
    """Write a bound of an interval the short way: ``0`` rather than ``0.0``, ``inf`` for infinity."""
    if math.isinf(bound):
        return "inf" if bound > 0 else "-inf"
    if float(bound).is_integer():
        return str(int(bound))
    return str(bound)


def check_tensor(value: object, name: str) -> Tensor:
    """Raise a ``TypeError`` unless ``value`` is a tensor."""
    if not isinstance(value, Tensor):
        raise TypeError(f"Expected argument `{name}` to be a torch.Tensor, but got {type(value).__name__}.")
    return value


def check_floating(value: object, name: str) -> Tensor:
    """Raise a ``TypeError`` unless ``value`` is a tensor with a floating point dtype."""
    tensor = check_tensor(value, name)
    if not tensor.is_floating_point():
        raise TypeError(
            f"Expected argument `{name}` to have a floating point dtype (such as torch.float32 or torch.float64),"
            f" but got {tensor.dtype}."
        )
    return tensor


def check_updates(value: object, name: str = "updates") -> Tensor:
    """Check a ``(num_agents, num_parameters)`` matrix of flattened updates, one row per agent."""
    updates = check_floating(value, name)
    if updates.ndim != 2 or updates.shape[0] < 1 or updates.shape[1] < 1:
        raise ValueError(
            f"Expected argument `{name}` to be a 2-D tensor of shape (num_agents, num_parameters) with at least one"
            f" row and one column, but got shape {tuple(updates.shape)}."
        )
    return updates


def check_vector(value: object, name: str, length: int | None = None, *, floating: bool = True) -> Tensor:
    """Check a 1-D tensor, optionally of a given length (one entry per agent)."""
    vector = check_floating(value, name) if floating else check_tensor(value, name)
    if vector.ndim != 1:
        raise ValueError(f"Expected argument `{name}` to be a 1-D tensor, but got shape {tuple(vector.shape)}.")
    if length is not None and vector.shape[0] != length:
        raise ValueError(
            f"Expected argument `{name}` to have shape ({length},), one entry per agent, but got shape"
            f" {tuple(vector.shape)}."
        )
    return vector


def check_entries(vector: Tensor, name: str, valid: Tensor, requirement: str) -> None:
    """Raise a ``ValueError`` naming the first entry of ``vector`` where the boolean tensor ``valid`` is False."""
    if bool(valid.all()):
        return
    index = int(torch.nonzero(~valid)[0, 0])
    value = vector[index].item()
    raise ValueError(f"Expected argument `{name}` to be {requirement}, but got {value} at index {index}.")


def check_non_negative(vector: Tensor, name: str) -> None:
    """Raise a ``ValueError`` naming the first entry of ``vector`` that is negative or not finite."""
    check_entries(vector, name, torch.isfinite(vector) & (vector >= 0), "finite and non-negative")


def check_weights(value: object, num_agents: int, name: str = "weights") -> Tensor:
    """Check a ``(num_agents,)`` tensor of finite, non-negative aggregation weights."""
    weights = check_vector(value, name, num_agents, floating=False)
    if weights.is_complex() or weights.dtype == torch.bool:
        raise TypeError(f"Expected argument `{name}` to have a real dtype, but got {weights.dtype}.")
    check_non_negative(weights, name)
    return weights


def check_number(
    value: object,
    name: str,
    low: float,
    high: float,
    *,
    low_closed: bool,
    high_closed: bool,
) -> float:
    """Check a real scalar against an interval and return it as a float.

    ``NaN`` is never accepted; infinity only where the interval is closed at an infinite bound.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Expected argument `{name}` to be a real number, but got {type(value).__name__}.")
    number = float(value)
    above_low = number >= low if low_closed else number > low
    below_high = number <= high if high_closed else number < high
    if not (above_low and below_high):
        interval = (
            f"{'[' if low_closed else '('}{_format_bound(low)}, {_format_bound(high)}{']' if high_closed else ')'}"
        )
        raise ValueError(f"Expected argument `{name}` to be in {interval}, but got {value}.")
    return number


def check_integer(value: object, name: str, minimum: int) -> int:
    """Check an integer scalar that must be at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"Expected argument `{name}` to be an integer, but got {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"Expected argument `{name}` to be an integer >= {minimum}, but got {value}.")
    return int(value)
