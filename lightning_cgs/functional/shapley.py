r"""Cosine gradient Shapley values: the cheap cosine score and the exact and sampled Shapley values it approximates.

All three score the same cooperative game over the agents: a coalition :math:`S` is worth the cosine between its
weighted update and the weighted update of all agents,

.. math::

    v(S) = \cos\Big(\sum_{j \in S} w_j u_j, \; \sum_{j=1}^{N} w_j u_j\Big), \qquad v(\emptyset) = 0,

with the convention that a cosine involving a zero vector is 0. The Shapley values of this game add up to
:math:`v(\{1, \dots, N\}) = 1` (unless the aggregate is zero). The cosine gradient Shapley value (CGSV) replaces
them by :math:`\psi_i = \cos(u_i, u_N)`, which needs one pass over the updates instead of :math:`2^N` coalitions.

Both reference values work in the space of the :math:`N \times N` Gram matrix of the weighted updates: the squared
norm of a coalition's update and its dot with the aggregate are sums of Gram entries, so no coalition's
:math:`d`-dimensional update is ever built.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lightning_cgs.functional._checks import check_floating, check_integer, check_number, check_updates, check_weights
from lightning_cgs.functional.updates import _clean, _finite_mask, _row_norms, _scaled, _suspicious

#: The largest number of agents for which :func:`exact_cosine_shapley` enumerates all :math:`2^N` coalitions.
MAX_EXACT_AGENTS = 20

# Sampled orders are evaluated in blocks of at most this many permuted Gram entries, which bounds the memory.
_GRAM_ENTRIES_PER_BLOCK = 1 << 20

# A coalition whose squared norm, read off the Gram matrix, is below this many machine epsilons times the square of
# the summed norms of its members is a cancellation down to rounding noise: it is treated as the zero vector.
_CANCELLATION_TOLERANCE = 64


def cosine_contributions(updates: Tensor, aggregate: Tensor, eps: float = 1e-12) -> Tensor:
    r"""Cosine gradient Shapley value of every agent: the cosine between its update and the aggregate.

    .. math::

        \psi_i = \cos(u_i, u_N) = \frac{\langle u_i, u_N \rangle}{\lVert u_i \rVert \, \lVert u_N \rVert}

    A row whose norm is at most ``eps``, a row with a ``NaN`` or an infinity, and every row when the aggregate has
    norm at most ``eps`` or is not finite, get exactly 0, never ``NaN``. Each vector is divided by its largest
    magnitude before the norms are taken, so large or tiny updates neither overflow nor underflow.

    Args:
        updates: ``(N, d)`` floating point tensor, one flattened update per agent.
        aggregate: ``(d,)`` floating point tensor on the same device, usually from :func:`aggregate_updates`.
        eps: norms at or below this count as zero, ``>= 0``.

    Returns:
        ``(N,)`` tensor in ``[-1, 1]`` with the dtype and device of ``updates``.

    Raises:
        TypeError: If a tensor argument is not a floating point tensor, or ``eps`` is not a real number.
        ValueError: If the shapes do not match, the devices differ, or ``eps`` is not in ``[0, inf)``.

    Example:
        >>> import torch
        >>> from lightning_cgs.functional import cosine_contributions
        >>> updates = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, 0.0]])
        >>> cosine_contributions(updates, torch.tensor([3.0, 4.0]))
        tensor([ 0.6000,  0.8000, -0.6000,  0.0000])
    """
    updates = check_updates(updates)
    aggregate = check_floating(aggregate, "aggregate")
    if aggregate.shape != updates.shape[1:]:
        raise ValueError(
            f"Expected argument `aggregate` to have shape ({updates.shape[1]},), the number of columns of `updates`,"
            f" but got shape {tuple(aggregate.shape)}."
        )
    if aggregate.device != updates.device:
        raise ValueError(
            f"Expected argument `aggregate` to be on the device of `updates` ({updates.device}), but got"
            f" {aggregate.device}."
        )
    eps = check_number(eps, "eps", 0.0, float("inf"), low_closed=True, high_closed=False)

    dtype = torch.promote_types(updates.dtype, aggregate.dtype)
    if not bool(torch.isfinite(aggregate).all()):
        return torch.zeros(updates.shape[0], dtype=updates.dtype, device=updates.device)
    finite = _finite_mask(updates)
    rows = _clean(updates, finite).to(dtype)
    aggregate = aggregate.to(dtype)

    row_norm = _row_norms(rows)
    aggregate_norm = _row_norms(aggregate.unsqueeze(0)).squeeze(0)
    valid = finite & (row_norm > eps) & (aggregate_norm > eps)
    if bool(_suspicious(row_norm).any()) or bool(_suspicious(aggregate_norm.unsqueeze(0)).any()):
        # at the limits of the dtype the dot products themselves over- or underflow: take them between unit vectors
        _, rows, _ = _scaled(rows)
        _, unit_aggregate, _ = _scaled(aggregate.unsqueeze(0))
        aggregate = unit_aggregate.squeeze(0)
        row_norm = torch.linalg.vector_norm(rows, dim=1)
        aggregate_norm = torch.linalg.vector_norm(aggregate)
    denominator = torch.where(valid, row_norm * aggregate_norm, 1.0)
    cosine = (rows @ aggregate) / denominator
    return torch.where(valid, cosine, 0.0).clamp(-1.0, 1.0).to(updates.dtype)


def _subset_sums(vector: Tensor) -> Tensor:
    """Sums over all subsets of a 1-D tensor's entries; subset ``k`` holds entry ``j`` if bit ``j`` of ``k`` is set."""
    sums = vector.new_zeros(1)
    for entry in vector:
        sums = torch.cat([sums, sums + entry])
    return sums


class _CosineGame:
    """The cosine game of the weighted updates, evaluated from their Gram matrix alone.

    Args:
        gram: ``(N, N)`` float64 Gram matrix of the weighted updates, on the CPU.
        epsilon: machine epsilon of the dtype the Gram matrix was computed in.
    """

    def __init__(self, gram: Tensor, epsilon: float) -> None:
        self.gram = gram
        self.grand_dots = gram.sum(dim=1)  # <w_j u_j, sum of all weighted updates>
        self.member_norms = gram.diagonal().clamp_min(0.0).sqrt()
        self.tolerance = _CANCELLATION_TOLERANCE * epsilon
        grand_squared = self.grand_dots.sum()
        scale = self.member_norms.sum()
        self.grand_norm = float(grand_squared.sqrt()) if grand_squared > self.tolerance * scale**2 else 0.0

    def cosine(self, squared_norm: Tensor, dots: Tensor, scale: Tensor) -> Tensor:
        """``v(S)`` from the coalition's squared norm, its dot with the grand update, and its members' summed norms.

        The summed norms tell a coalition whose updates cancel exactly from one with a small update: a squared norm
        below the rounding noise of the sum counts as a zero update.
        """
        if self.grand_norm == 0.0:
            return torch.zeros_like(squared_norm)
        nonzero = squared_norm > self.tolerance * scale**2
        norm = torch.where(nonzero, squared_norm, 1.0).sqrt()
        return torch.where(nonzero, dots / (norm * self.grand_norm), 0.0).clamp(-1.0, 1.0)

    def all_coalitions(self) -> Tensor:
        """``v(S)`` of all ``2^N`` coalitions, coalition ``k`` holding agent ``j`` when bit ``j`` of ``k`` is set."""
        # adding agent k to a coalition S of agents 0 .. k-1 adds 2 <sum of S, x_k> + ||x_k||^2 to its squared norm
        squared_norm = self.gram.new_zeros(1)
        for agent in range(self.gram.shape[0]):
            cross = _subset_sums(self.gram[:agent, agent])
            squared_norm = torch.cat([squared_norm, squared_norm + 2.0 * cross + self.gram[agent, agent]])
        return self.cosine(squared_norm, _subset_sums(self.grand_dots), _subset_sums(self.member_norms))

    def prefixes(self, orders: Tensor) -> Tensor:
        """``(B, N)`` values ``v`` of the first ``t + 1`` agents of each of the ``(B, N)`` orders."""
        permuted = self.gram[orders.unsqueeze(2), orders.unsqueeze(1)]
        # agent at position t adds 2 <sum of the agents before it, its update> + its squared norm
        cross = permuted.triu(diagonal=1).sum(dim=1)
        squared_norm = (2.0 * cross + permuted.diagonal(dim1=1, dim2=2)).cumsum(dim=1)
        dots = self.grand_dots[orders].cumsum(dim=1)
        scale = self.member_norms[orders].cumsum(dim=1)
        return self.cosine(squared_norm, dots, scale)


def _cosine_game(updates: Tensor, weights: Tensor | None) -> _CosineGame:
    """Reduce the ``(N, d)`` updates to the Gram matrix of the weighted rows, the only thing the game needs."""
    num_agents = updates.shape[0]
    # MPS has no float64: there the Gram matrix is formed in float32 and only the small game runs in float64
    dtype = torch.float32 if updates.device.type == "mps" else torch.float64
    if weights is None:
        weights = torch.ones(num_agents, dtype=dtype, device=updates.device)
    else:
        weights = check_weights(weights, num_agents).to(device=updates.device, dtype=dtype)

    finite = torch.isfinite(updates).all(dim=1, keepdim=True)
    rows = torch.where(finite, updates, 0.0).to(dtype) * weights.unsqueeze(1)
    # the game does not change when every row is scaled by the same positive number: bound the entries by 1
    scale = rows.abs().amax()
    if scale > 0:
        rows = rows / scale
    gram = (rows @ rows.T).to(device="cpu", dtype=torch.float64)
    return _CosineGame(gram, torch.finfo(dtype).eps)


def exact_cosine_shapley(updates: Tensor, weights: Tensor | None = None) -> Tensor:
    r"""Exact Shapley value of every agent in the cosine game, by enumerating all :math:`2^N` coalitions.

    .. math::

        \phi_i = \sum_{S \subseteq \{1, \dots, N\} \setminus \{i\}}
            \frac{|S|! \, (N - |S| - 1)!}{N!} \big( v(S \cup \{i\}) - v(S) \big),
        \qquad
        v(S) = \cos\Big(\sum_{j \in S} w_j u_j, \; \sum_{j=1}^{N} w_j u_j\Big)

    The values add up to :math:`v(\{1, \dots, N\})`, which is 1 unless the weighted sum of all updates is zero (then
    every value is 0). An agent whose weighted update is zero, or not finite, is a null player and gets 0. The
    updates are reduced to their :math:`N \times N` Gram matrix in float64, and the squared norms of all coalitions
    are built up one agent at a time from it, so the cost is :math:`O(N^2 d + N 2^N)` time and :math:`O(2^N)`
    memory (a tenth of a second for 20 agents on a CPU).

    .. warning:: Feasible up to :data:`MAX_EXACT_AGENTS` (20) agents; use :func:`monte_carlo_cosine_shapley` for
        more.

    Args:
        updates: ``(N, d)`` floating point tensor, one flattened update per agent.
        weights: ``(N,)`` finite, non-negative weights :math:`w_j`; ``None`` means all ones.

    Returns:
        ``(N,)`` tensor with the dtype and device of ``updates``.

    Raises:
        TypeError: If ``updates`` is not a floating point tensor or ``weights`` is not a real tensor.
        ValueError: If the shapes do not match, a weight is negative or not finite, or there are more than
            :data:`MAX_EXACT_AGENTS` agents.

    Example:
        >>> import torch
        >>> from lightning_cgs.functional import exact_cosine_shapley
        >>> updates = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
        >>> exact_cosine_shapley(updates).round(decimals=4)
        tensor([0.3988, 0.2023, 0.3988, 0.0000], dtype=torch.float64)
    """
    updates = check_updates(updates)
    num_agents = updates.shape[0]
    if num_agents > MAX_EXACT_AGENTS:
        raise ValueError(
            f"Expected argument `updates` to have at most {MAX_EXACT_AGENTS} rows (agents) for the exact Shapley"
            f" value, which enumerates 2^N coalitions, but got {num_agents}. Use `monte_carlo_cosine_shapley`"
            " to estimate it for more agents."
        )
    game = _cosine_game(updates, weights)

    values = game.all_coalitions()
    sizes = _subset_sums(torch.ones(num_agents, dtype=torch.float64)).long()

    # Shapley weight of a coalition of size s that does not contain the agent: s! (N - 1 - s)! / N!
    size_weights = torch.tensor(
        [1.0 / (num_agents * math.comb(num_agents - 1, size)) for size in range(num_agents)], dtype=torch.float64
    )
    coalition_weights = size_weights[sizes.clamp_max(num_agents - 1)]
    shapley = torch.empty(num_agents, dtype=torch.float64)
    for agent in range(num_agents):
        # split the coalitions by bit `agent`: [:, 0, :] are those without the agent, [:, 1, :] the same plus it
        by_member = values.view(-1, 2, 1 << agent)
        marginal = by_member[:, 1, :] - by_member[:, 0, :]
        shapley[agent] = (coalition_weights.view(-1, 2, 1 << agent)[:, 0, :] * marginal).sum()
    return shapley.to(device=updates.device, dtype=updates.dtype)


def monte_carlo_cosine_shapley(
    updates: Tensor,
    num_permutations: int,
    weights: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Permutation-sampling estimate of the Shapley values of the cosine game.

    .. math::

        \hat\phi_i = \frac{1}{K} \sum_{k=1}^{K} \Big( v\big(P_i^{\pi_k} \cup \{i\}\big) - v\big(P_i^{\pi_k}\big) \Big)

    where :math:`\pi_1, \dots, \pi_K` are uniformly random orders of the agents and :math:`P_i^{\pi}` is the set of
    agents before :math:`i` in :math:`\pi`. Each order's marginal contributions telescope, so the estimate adds up
    to :math:`v(\{1, \dots, N\})` exactly like the exact values. The orders come from
    ``torch.randperm(N, generator=generator)``; the game is evaluated on the Gram matrix for all orders at once.

    Args:
        updates: ``(N, d)`` floating point tensor, one flattened update per agent.
        num_permutations: number of sampled orders :math:`K`, ``>= 1``.
        weights: ``(N,)`` finite, non-negative weights :math:`w_j`; ``None`` means all ones.
        generator: random number generator for reproducible orders; ``None`` uses the global one. The orders are
            drawn on the generator's device.

    Returns:
        ``(N,)`` tensor with the dtype and device of ``updates``.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If the shapes do not match, a weight is negative or not finite, or ``num_permutations < 1``.

    Example:
        >>> import torch
        >>> from lightning_cgs.functional import exact_cosine_shapley, monte_carlo_cosine_shapley
        >>> updates = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
        >>> estimate = monte_carlo_cosine_shapley(updates, 4000, generator=torch.Generator().manual_seed(0))
        >>> exact = exact_cosine_shapley(updates)
        >>> bool((estimate - exact).abs().max() < 0.05), round(estimate.sum().item(), 6)
        (True, 1.0)
    """
    updates = check_updates(updates)
    num_permutations = check_integer(num_permutations, "num_permutations", 1)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"Expected argument `generator` to be a torch.Generator or None, but got {type(generator).__name__}."
        )
    num_agents = updates.shape[0]
    game = _cosine_game(updates, weights)

    device = generator.device if generator is not None else torch.device("cpu")
    orders = torch.stack(
        [torch.randperm(num_agents, generator=generator, device=device) for _ in range(num_permutations)]
    ).cpu()

    totals = torch.zeros(num_agents, dtype=torch.float64)
    block = max(1, _GRAM_ENTRIES_PER_BLOCK // (num_agents * num_agents))
    for start in range(0, num_permutations, block):
        block_orders = orders[start : start + block]
        values = game.prefixes(block_orders)
        marginal = values.diff(dim=1, prepend=values.new_zeros(values.shape[0], 1))
        totals.scatter_add_(0, block_orders.reshape(-1), marginal.reshape(-1))
    return (totals / num_permutations).to(device=updates.device, dtype=updates.dtype)
