r"""Reputations: an exponential moving average of the agents' contributions, kept positive and summing to one."""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_cgs.functional._checks import check_non_negative, check_number, check_vector


def update_reputation(reputation: Tensor, contributions: Tensor, alpha: float, floor: float = 1e-3) -> Tensor:
    r"""Blend this round's contributions into the reputations, floor them, and normalise them to sum to one.

    .. math::

        \tilde r_i = \max\big(\alpha \, r_i + (1 - \alpha) \, \psi_i, \; r_{\min}\big),
        \qquad
        r_i \leftarrow \frac{\tilde r_i}{\sum_{j=1}^{N} \tilde r_j}

    The floor :math:`r_{\min}` keeps every reputation positive, so a negative cosine never becomes a negative
    aggregation weight. A contribution that is ``NaN`` or infinite counts as 0.

    Args:
        reputation: ``(N,)`` floating point tensor of finite, non-negative reputations (zeros before the first
            round). The result lives on its device.
        contributions: ``(N,)`` floating point tensor of this round's contributions :math:`\psi_i`, e.g. from
            :func:`cosine_contributions`; it is moved to the device of ``reputation``.
        alpha: weight of the past, in ``[0, 1)``.
        floor: the smallest reputation before normalisation, ``> 0``.

    Returns:
        ``(N,)`` tensor of positive reputations that sum to 1, in the promoted dtype of the two tensors.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If the shapes do not match, a reputation is negative or not finite, ``alpha`` is not in
            ``[0, 1)`` or ``floor`` is not in ``(0, inf)``.

    Example:
        >>> import torch
        >>> from lightning_cgs.functional import update_reputation
        >>> reputation = torch.tensor([0.5, 0.25, 0.25])
        >>> update_reputation(reputation, torch.tensor([0.7, 0.35, -0.5]), alpha=0.5, floor=0.1)
        tensor([0.6000, 0.3000, 0.1000])
    """
    reputation = check_vector(reputation, "reputation")
    contributions = check_vector(contributions, "contributions", reputation.shape[0])
    alpha = check_number(alpha, "alpha", 0.0, 1.0, low_closed=True, high_closed=False)
    floor = check_number(floor, "floor", 0.0, float("inf"), low_closed=False, high_closed=False)
    check_non_negative(reputation, "reputation")

    dtype = torch.promote_types(reputation.dtype, contributions.dtype)
    contributions = contributions.to(device=reputation.device, dtype=dtype)
    contributions = torch.where(torch.isfinite(contributions), contributions, 0.0)

    blended = alpha * reputation.to(dtype) + (1.0 - alpha) * contributions
    floored = blended.clamp_min(floor)
    return floored / floored.sum()
