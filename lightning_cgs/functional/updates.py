r"""Agents' updates: which rows are usable, their normalisation to a common norm, and their weighted aggregate.

The updates of one round are held as an ``(N, d)`` tensor, one flattened update per agent. A row that holds a
``NaN`` or an infinity is treated everywhere as a zero update: it is scored 0 and adds nothing to the aggregate.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_cgs.functional._checks import check_number, check_updates, check_weights


def finite_rows(updates: Tensor) -> Tensor:
    """Tell which agents sent an update made of finite numbers only.

    Args:
        updates: ``(N, d)`` floating point tensor, one flattened update per agent.

    Returns:
        ``(N,)`` boolean tensor, ``True`` where the row has no ``NaN`` and no infinity.

    Raises:
        TypeError: If ``updates`` is not a floating point tensor.
        ValueError: If ``updates`` is not a non-empty 2-D tensor.

    Example:
        >>> import torch
        >>> from lightning_cgs.functional import finite_rows
        >>> finite_rows(torch.tensor([[1.0, 2.0], [float("nan"), 0.0], [0.0, float("inf")]]))
        tensor([ True, False, False])
    """
    updates = check_updates(updates)
    return torch.isfinite(updates).all(dim=1)


def normalize_updates(updates: Tensor, gamma: float, eps: float = 1e-7) -> Tensor:
    r"""Rescale every agent's update to the common norm :math:`\Gamma`.

    .. math::

        u_i = \Gamma \, \frac{\Delta_i}{\lVert \Delta_i \rVert + \epsilon}

    A zero row stays exactly zero (also with ``eps=0``), and a row with any ``NaN`` or infinity becomes exactly
    zero, so that a broken agent cannot poison the aggregate or anybody's score. The norm is taken after
    dividing each row by its largest magnitude, so rows with entries near the limits of the dtype neither overflow
    nor underflow.

    Args:
        updates: ``(N, d)`` floating point tensor, one flattened update :math:`\Delta_i` per agent.
        gamma: the common norm :math:`\Gamma`, finite and ``> 0``.
        eps: added to each norm before dividing, ``>= 0``.

    Returns:
        ``(N, d)`` tensor of the same dtype and device; the input is left unchanged.

    Raises:
        TypeError: If ``updates`` is not a floating point tensor, or ``gamma``/``eps`` is not a real number.
        ValueError: If ``updates`` is not a non-empty 2-D tensor, ``gamma`` is not in ``(0, inf)`` or ``eps`` is
            not in ``[0, inf)``.

    Example:
        >>> import torch
        >>> from lightning_cgs.functional import normalize_updates
        >>> updates = torch.tensor([[3.0, 4.0], [0.0, 0.0], [float("nan"), 1.0]])
        >>> normalize_updates(updates, gamma=0.5, eps=0.0)
        tensor([[0.3000, 0.4000],
                [0.0000, 0.0000],
                [0.0000, 0.0000]])
    """
    updates = check_updates(updates)
    gamma = check_number(gamma, "gamma", 0.0, float("inf"), low_closed=False, high_closed=False)
    eps = check_number(eps, "eps", 0.0, float("inf"), low_closed=True, high_closed=False)

    finite = torch.isfinite(updates).all(dim=1, keepdim=True)
    clean = torch.where(finite, updates, 0.0)

    # ||u|| = scale * ||u / scale||, where ||u / scale|| lies in [1, sqrt(d)] for a non-zero row
    scale = clean.abs().amax(dim=1, keepdim=True)
    nonzero = scale > 0
    safe_scale = torch.where(nonzero, scale, 1.0)
    scaled = clean / safe_scale
    scaled_norm = torch.linalg.vector_norm(scaled, dim=1, keepdim=True)
    # eps / scale is infinite for a subnormal scale (the row then rounds to zero), and must not be 0 * inf = NaN
    scaled_eps = eps / safe_scale if eps > 0 else 0.0
    normalized = gamma * scaled / (scaled_norm + scaled_eps)
    return torch.where(nonzero, normalized, 0.0)


def aggregate_updates(updates: Tensor, weights: Tensor) -> Tensor:
    r"""Weighted sum of the agents' updates.

    .. math::

        u_N = \sum_{i=1}^{N} w_i \, u_i

    Rows with a ``NaN`` or an infinity contribute nothing, whatever their weight.

    Args:
        updates: ``(N, d)`` floating point tensor, one flattened update per agent.
        weights: ``(N,)`` real tensor of finite, non-negative weights (shard-size shares in the first round, the
            reputations afterwards). It may live on another device; it is moved to the device of ``updates``.

    Returns:
        ``(d,)`` tensor with the dtype and device of ``updates``.

    Raises:
        TypeError: If ``updates`` is not a floating point tensor or ``weights`` is not a real tensor.
        ValueError: If the shapes do not match, or a weight is negative or not finite.

    Example:
        >>> import torch
        >>> from lightning_cgs.functional import aggregate_updates
        >>> updates = torch.tensor([[1.0, 0.0], [0.0, 2.0], [float("inf"), 5.0]])
        >>> aggregate_updates(updates, torch.tensor([0.5, 0.25, 0.25]))
        tensor([0.5000, 0.5000])
    """
    updates = check_updates(updates)
    weights = check_weights(weights, updates.shape[0])

    finite = torch.isfinite(updates).all(dim=1, keepdim=True)
    clean = torch.where(finite, updates, 0.0)
    return weights.to(device=updates.device, dtype=updates.dtype) @ clean
