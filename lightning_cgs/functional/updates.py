r"""Agents' updates: which rows are usable, their normalisation to a common norm, and their weighted aggregate.

The updates of one round are held as an ``(N, d)`` tensor, one flattened update per agent. A row that holds a
``NaN`` or an infinity is treated everywhere as a zero update: it is scored 0 and adds nothing to the aggregate.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_cgs.functional._checks import check_number, check_updates, check_weights

# Norms below this may have lost precision to underflow (squares of entries near 1e-19 and smaller vanish in
# float32); such rows, and rows whose norm overflowed, are measured again after scaling by their largest magnitude.
_TINY_NORM = 1e-18


def _finite_mask(updates: Tensor) -> Tensor:
    """``(N,)``: rows without ``NaN`` or infinity. One reduction in the common case; exact where the sum is not."""
    finite = torch.isfinite(updates.sum(dim=1))
    if not bool(finite.all()):  # a non-finite entry, or a sum of finite entries that overflowed: look closely
        finite = torch.isfinite(updates).all(dim=1)
    return finite


def _clean(updates: Tensor, finite: Tensor) -> Tensor:
    """The updates with every non-finite row replaced by zeros (the input itself when all rows are finite)."""
    return updates if bool(finite.all()) else torch.where(finite.unsqueeze(1), updates, 0.0)


def _suspicious(norms: Tensor) -> Tensor:
    """Rows whose directly computed norm overflowed or may have underflowed."""
    return ~torch.isfinite(norms) | (norms < _TINY_NORM)


def _scaled(rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(scale, rows / scale, ||rows / scale||)`` with ``scale`` each row's largest magnitude (1 for a zero row)."""
    scale = rows.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(scale > 0, scale, 1.0)
    unit = rows / scale
    return scale, unit, torch.linalg.vector_norm(unit, dim=-1, keepdim=True)


def _row_norms(rows: Tensor) -> Tensor:
    """Euclidean norm of every (finite) row, without overflow or underflow at the limits of the dtype.

    The direct norm serves all ordinary rows; a row whose norm overflowed or may have underflowed is measured as
    ``scale * ||row / scale||`` with ``scale`` its largest magnitude.
    """
    norms = torch.linalg.vector_norm(rows, dim=-1)
    suspicious = _suspicious(norms)
    if bool(suspicious.any()):
        scale, _, unit_norm = _scaled(rows[suspicious])
        norms = norms.masked_scatter(suspicious, (scale * unit_norm).squeeze(-1))
    return norms


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
    return _finite_mask(updates)


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

    clean = _clean(updates, _finite_mask(updates))
    norms = torch.linalg.vector_norm(clean, dim=1, keepdim=True)
    nonzero = clean.ne(0).any(dim=1, keepdim=True) if bool((norms == 0).any()) else norms > 0
    # one multiplication per entry: gamma / (||u|| + eps) per row, 0 for a zero row
    factor = torch.where(nonzero, gamma / (torch.where(norms > 0, norms, 1.0) + eps), 0.0)
    normalized = clean * factor

    # rows at the limits of the dtype: u / (||u|| + eps) = (u / s) / (||u / s|| + eps / s), s = the largest magnitude
    suspicious = _suspicious(norms.squeeze(1)) & nonzero.squeeze(1)
    if bool(suspicious.any()):
        scale, unit, unit_norm = _scaled(clean[suspicious])
        # eps / s is infinite for a subnormal s (the row then rounds to zero), and must not be 0 * inf = NaN
        scaled_eps = eps / scale if eps > 0 else torch.zeros_like(scale)
        normalized[suspicious] = gamma * unit / (unit_norm + scaled_eps)
    return normalized


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

    clean = _clean(updates, _finite_mask(updates))
    return weights.to(device=updates.device, dtype=updates.dtype) @ clean
