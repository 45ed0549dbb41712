r"""Gradient rewards: each agent's share of the aggregate, and the aggregate sparsified down to that share.

Agent :math:`i` receives the aggregate update :math:`u_N` with all but its :math:`\lceil q_i n \rceil`
largest-magnitude entries set to zero, where the reward fraction :math:`q_i \in [0, 1]` grows with its reputation.
All the masks come from one ranking of :math:`|u_N|`: an entry kept for an agent with fraction :math:`q` is kept
for every agent with a larger fraction.

The number of kept entries is :math:`\lceil q n \rceil` computed exactly for the floating-point value of :math:`q`
(no rounding of the product), so ``0.3`` as a float64 keeps 3 of 10 entries while ``0.3`` as a float32, which is
slightly above three tenths, keeps 4. Among entries of equal magnitude the one at the lower position wins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Literal

import torch
from torch import Tensor

from lightning_cgs.functional._checks import (
    check_entries,
    check_floating,
    check_non_negative,
    check_number,
    check_vector,
)

_MODES = ("layer", "global")


def reward_fractions(reputation: Tensor, beta: float) -> Tensor:
    r"""Share of the aggregate that every agent receives, relative to the agent with the highest reputation.

    .. math::

        q_i = \frac{\tanh(\beta \, r_i)}{\max_{j} \tanh(\beta \, r_j)}

    The agent with the highest reputation gets exactly 1. A small altruism :math:`\beta` spreads the fractions in
    proportion to the reputations (the limit :math:`\beta \to 0` gives :math:`q_i = r_i / \max_j r_j`, which is
    also used when :math:`\tanh(\beta r_j)` underflows to zero); a large one gives everyone nearly the whole
    aggregate, and ``beta=float("inf")`` gives exactly 1 to every agent with a positive reputation (and 0 to
    agents with reputation 0).

    Args:
        reputation: ``(N,)`` floating point tensor of finite, non-negative reputations with a positive maximum.
        beta: the altruism :math:`\beta`, in ``(0, inf]``.

    Returns:
        ``(N,)`` tensor in ``[0, 1]`` with the dtype and device of ``reputation``.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``reputation`` is not 1-D, has a negative or non-finite entry or no positive entry, or
            ``beta`` is not in ``(0, inf]``.

    Example:
        >>> import torch
        >>> from lightning_cgs.functional import reward_fractions
        >>> reputation = torch.tensor([0.5, 0.3, 0.2, 0.0])
        >>> reward_fractions(reputation, beta=1.0).round(decimals=4)
        tensor([1.0000, 0.6304, 0.4271, 0.0000])
        >>> reward_fractions(reputation, beta=float("inf"))
        tensor([1., 1., 1., 0.])
    """
    reputation = check_vector(reputation, "reputation")
    beta = check_number(beta, "beta", 0.0, float("inf"), low_closed=False, high_closed=True)
    check_non_negative(reputation, "reputation")
    if reputation.numel() == 0 or not bool((reputation > 0).any()):
        raise ValueError(
            "Expected argument `reputation` to have at least one positive entry, but got "
            f"{reputation.tolist() if reputation.numel() <= 8 else 'only zeros'}."
        )

    # tanh(beta * 0) must be 0 also for beta = inf, where the product would be NaN
    scaled = torch.where(reputation > 0, beta * reputation, 0.0)
    saturated = torch.tanh(scaled)
    top = saturated.max()
    if top > 0:
        return saturated / top
    # beta * r underflowed for every agent: use the small-beta limit
    return reputation / reputation.max()


def _kept_counts(fractions: Sequence[float], numel: int) -> list[int]:
    """``ceil(q * numel)`` for every fraction, in exact rational arithmetic."""
    return [math.ceil(Fraction(fraction) * numel) for fraction in fractions]


def _descending_ranks(magnitudes: Tensor) -> Tensor:
    """Position of every entry of a 1-D tensor in the order of decreasing value, ties by increasing index."""
    order = torch.argsort(magnitudes, descending=True, stable=True)
    positions = torch.arange(order.numel(), device=order.device)
    return torch.empty_like(order).scatter_(0, order, positions)


def _masks_from_ranks(ranks: Tensor, counts: Sequence[int], shape: torch.Size) -> Tensor:
    """``(N, *shape)`` masks that keep, for agent i, the entries ranked below ``counts[i]``."""
    limits = torch.tensor(counts, dtype=ranks.dtype, device=ranks.device)
    return (ranks.unsqueeze(0) < limits.unsqueeze(1)).reshape(len(counts), *shape)


def _check_fractions(fractions: object) -> Tensor:
    fractions = check_vector(fractions, "fractions")
    check_entries(fractions, "fractions", (fractions >= 0) & (fractions <= 1), "in [0, 1]")
    return fractions


def top_fraction_mask(tensor: Tensor, fraction: float) -> Tensor:
    r"""Mark the :math:`\lceil q n \rceil` entries of largest magnitude of a tensor with :math:`n` entries.

    Exactly that many entries are ``True``; among entries of equal magnitude the one that comes first in the
    flattened (row-major) tensor is kept. A ``NaN`` entry ranks above every number.

    Args:
        tensor: floating point tensor of any shape.
        fraction: the fraction :math:`q` of entries to keep, in ``[0, 1]``.

    Returns:
        boolean tensor of the same shape and device.

    Raises:
        TypeError: If ``tensor`` is not a floating point tensor or ``fraction`` is not a real number.
        ValueError: If ``fraction`` is not in ``[0, 1]``.

    Example:
        >>> import torch
        >>> from lightning_cgs.functional import top_fraction_mask
        >>> top_fraction_mask(torch.tensor([[0.1, -3.0], [2.0, -2.0]]), fraction=0.5)
        tensor([[False,  True],
                [ True, False]])
    """
    tensor = check_floating(tensor, "tensor")
    fraction = check_number(fraction, "fraction", 0.0, 1.0, low_closed=True, high_closed=True)

    ranks = _descending_ranks(tensor.detach().abs().flatten())
    return _masks_from_ranks(ranks, _kept_counts([fraction], tensor.numel()), tensor.shape)[0]


def top_fraction_masks(tensor: Tensor, fractions: Tensor) -> Tensor:
    r"""The masks of :func:`top_fraction_mask` for several fractions at once, from one sort of :math:`|x|`.

    Each entry's rank by decreasing magnitude is computed once; mask :math:`i` keeps the entries whose rank is below
    :math:`\lceil q_i n \rceil`. The masks are therefore nested: a larger fraction keeps a superset.

    Args:
        tensor: floating point tensor of any shape, with :math:`n` entries.
        fractions: ``(N,)`` floating point tensor of fractions :math:`q_i` in ``[0, 1]``.

    Returns:
        ``(N, *tensor.shape)`` boolean tensor on the device of ``tensor``.

    Raises:
        TypeError: If a tensor argument is not a floating point tensor.
        ValueError: If ``fractions`` is not 1-D or has an entry outside ``[0, 1]``.

    Example:
        >>> import torch
        >>> from lightning_cgs.functional import top_fraction_masks
        >>> top_fraction_masks(torch.tensor([0.5, -2.0, 1.0, 2.0]), torch.tensor([1.0, 0.5, 0.25, 0.0]))
        tensor([[ True,  True,  True,  True],
                [False,  True, False,  True],
                [False,  True, False, False],
                [False, False, False, False]])
    """
    tensor = check_floating(tensor, "tensor")
    fractions = _check_fractions(fractions)

    ranks = _descending_ranks(tensor.detach().abs().flatten())
    return _masks_from_ranks(ranks, _kept_counts(fractions.tolist(), tensor.numel()), tensor.shape)


def sparsify_rewards(
    aggregate: Sequence[Tensor], fractions: Tensor, mode: Literal["layer", "global"] = "layer"
) -> list[Tensor]:
    r"""Every agent's reward: the aggregate update with all but its share of largest-magnitude entries zeroed.

    .. math::

        v_i = u_N \odot m_i, \qquad m_i = \text{mask of the } \lceil q_i n \rceil
            \text{ entries of largest } |u_N|

    In ``"layer"`` mode (the paper's default) each parameter tensor is ranked on its own and :math:`n` is its number
    of entries, so every tensor keeps its share. In ``"global"`` mode all entries of all tensors are ranked together
    (ties in the order of the tensors, then row-major) and :math:`n` is the total number of entries, so the reward
    concentrates on the tensors with the largest updates. Either way there is one sort per tensor or one sort in all,
    whatever the number of agents.

    Args:
        aggregate: the aggregate update :math:`u_N` split by parameter tensor: a list or tuple of floating point
            tensors. In ``"global"`` mode they must share a device.
        fractions: ``(N,)`` floating point tensor of reward fractions :math:`q_i` in ``[0, 1]``, e.g. from
            :func:`reward_fractions`.
        mode: ``"layer"`` or ``"global"``.

    Returns:
        one ``(N, *shape)`` tensor per parameter tensor, with its dtype and device; row ``i`` is agent ``i``'s
        reward.

    Raises:
        TypeError: If ``aggregate`` is not a sequence of floating point tensors or ``fractions`` is not a floating
            point tensor.
        ValueError: If ``mode`` is unknown, a fraction is outside ``[0, 1]``, or in ``"global"`` mode the tensors
            are on different devices.

    Example:
        >>> import torch
        >>> from lightning_cgs.functional import sparsify_rewards
        >>> aggregate = [torch.tensor([3.0, -1.0]), torch.tensor([0.5, 0.25, -2.0, 0.0])]
        >>> fractions = torch.tensor([1.0, 0.5])
        >>> sparsify_rewards(aggregate, fractions)
        [tensor([[ 3., -1.],
                [ 3.,  0.]]), tensor([[ 0.5000,  0.2500, -2.0000,  0.0000],
                [ 0.5000,  0.0000, -2.0000,  0.0000]])]
        >>> sparsify_rewards(aggregate, fractions, mode="global")
        [tensor([[ 3., -1.],
                [ 3., -1.]]), tensor([[ 0.5000,  0.2500, -2.0000,  0.0000],
                [ 0.0000,  0.0000, -2.0000,  0.0000]])]
    """
    if mode not in _MODES:
        raise ValueError(f"Expected argument `mode` to be one of {_MODES}, but got {mode!r}.")
    if isinstance(aggregate, Tensor) or not isinstance(aggregate, Sequence):
        raise TypeError(
            "Expected argument `aggregate` to be a list or tuple of tensors, one per parameter tensor, but got"
            f" {type(aggregate).__name__}."
        )
    tensors = [check_floating(tensor, f"aggregate[{index}]") for index, tensor in enumerate(aggregate)]
    fractions = _check_fractions(fractions)
    values = fractions.tolist()

    if mode == "layer":
        rewards = []
        for tensor in tensors:
            ranks = _descending_ranks(tensor.detach().abs().flatten())
            masks = _masks_from_ranks(ranks, _kept_counts(values, tensor.numel()), tensor.shape)
            rewards.append(torch.where(masks, tensor.unsqueeze(0), 0.0))
        return rewards

    if not tensors:
        return []
    devices = {tensor.device for tensor in tensors}
    if len(devices) > 1:
        raise ValueError(
            "Expected the tensors of argument `aggregate` to be on one device in mode 'global', but got"
            f" {sorted(str(device) for device in devices)}."
        )
    dtype = tensors[0].dtype
    for tensor in tensors[1:]:
        dtype = torch.promote_types(dtype, tensor.dtype)
    magnitudes = torch.cat([tensor.detach().abs().flatten().to(dtype) for tensor in tensors])
    ranks = _descending_ranks(magnitudes)
    counts = _kept_counts(values, magnitudes.numel())

    rewards = []
    pieces = ranks.split([tensor.numel() for tensor in tensors])
    for tensor, piece in zip(tensors, pieces, strict=True):
        masks = _masks_from_ranks(piece, counts, tensor.shape)
        rewards.append(torch.where(masks, tensor.unsqueeze(0), 0.0))
    return rewards
