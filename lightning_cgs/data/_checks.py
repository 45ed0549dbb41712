"""Argument checks shared by the data layer: each error names the argument, what is allowed and what was given."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def check_int(name: str, value: object, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as an ``int`` after checking that it is an integer in ``[minimum, maximum]``.

    Raises:
        TypeError: if ``value`` is not an integer (``bool`` is rejected too).
        ValueError: if ``value`` lies outside the bounds.
    """
    allowed = _describe_range(minimum, maximum)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"Expected `{name}` to be an integer {allowed}, but got {value!r}.")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"Expected `{name}` to be an integer {allowed}, but got {value!r}.")
    return value


def check_positive_float(name: str, value: object) -> float:
    """Return ``value`` as a ``float`` after checking that it is a finite number ``> 0``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"Expected `{name}` to be a finite number > 0, but got {value!r}.")
    if not math.isfinite(float(value)) or float(value) <= 0:
        raise ValueError(f"Expected `{name}` to be a finite number > 0, but got {value!r}.")
    return float(value)


def check_label_noise(label_noise: object, num_agents: int) -> dict[int, float]:
    """Check a ``{agent: fraction}`` mapping: agents in ``[0, num_agents)``, fractions in ``[0, 1]``."""
    if not isinstance(label_noise, dict):
        raise TypeError(f"Expected `label_noise` to be a dict {{agent: fraction}}, but got {label_noise!r}.")
    checked: dict[int, float] = {}
    for agent, fraction in label_noise.items():
        if isinstance(agent, bool) or not isinstance(agent, (int, np.integer)) or not 0 <= agent < num_agents:
            raise ValueError(
                f"Expected the keys of `label_noise` to be agent indices in [0, {num_agents - 1}] "
                f"(`num_agents`={num_agents}), but got {agent!r}."
            )
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, (int, float, np.integer, np.floating))
            or not 0.0 <= float(fraction) <= 1.0
        ):
            raise ValueError(f"Expected `label_noise[{agent}]` to be a fraction in [0, 1], but got {fraction!r}.")
        checked[int(agent)] = float(fraction)
    return checked


def check_class_counts(class_counts: object, num_agents: int, num_classes: int | None = None) -> list[int]:
    """Check per-agent class counts: one integer per agent, each in ``[1, num_classes]``."""
    if isinstance(class_counts, (str, bytes)) or not isinstance(class_counts, Sequence):
        raise TypeError(f"Expected `class_counts` to be a list of {num_agents} integers, but got {class_counts!r}.")
    if len(class_counts) != num_agents:
        raise ValueError(
            f"Expected `class_counts` to hold one entry per agent ({num_agents} entries, `num_agents`={num_agents}), "
            f"but got {len(class_counts)} entries: {list(class_counts)!r}."
        )
    upper = "the number of classes" if num_classes is None else f"{num_classes}, the number of classes"
    checked = []
    for agent, count in enumerate(class_counts):
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
            raise TypeError(f"Expected `class_counts[{agent}]` to be an integer in [1, {upper}], but got {count!r}.")
        if count < 1 or (num_classes is not None and count > num_classes):
            raise ValueError(
                f"Expected `class_counts[{agent}]` to be an integer in [1, {upper}], but got {count!r}: "
                f"agent {agent} cannot see more classes than the data has."
            )
        checked.append(int(count))
    return checked


def _describe_range(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"in [{minimum}, {maximum}]"
    if minimum is not None:
        return f">= {minimum}"
    if maximum is not None:
        return f"<= {maximum}"
    return ""
