"""``CosineGradientShapley``: each agent's contribution (CGSV) and reputation at the end of every round."""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from lightning_cgs.callbacks._common import RoundEndCallback
from lightning_cgs.functional import (
    aggregate_updates,
    cosine_contributions,
    finite_rows,
    normalize_updates,
    update_reputation,
)
from lightning_cgs.module import CollaborativeModule


class CosineGradientShapley(RoundEndCallback):
    r"""Measure every agent's contribution with the cosine gradient Shapley value and keep reputations.

    At the end of each round, with :math:`\Delta_i` agent *i*'s update over the round:

    .. math::
        u_i = \Gamma \frac{\Delta_i}{\lVert \Delta_i \rVert + \epsilon}, \qquad
        u_N = \sum_i w_i u_i, \qquad
        \psi_i = \cos(u_i, u_N), \qquad
        r_i \leftarrow \alpha r_i + (1 - \alpha) \psi_i

    where the weights :math:`w` are the shard-size shares in the first round and the reputations afterwards; the
    reputations are clamped at ``reputation_floor`` and normalised to sum 1. The server model moves by
    :math:`u_N`. An agent whose update is not finite gets :math:`u_i = 0` and :math:`\psi_i = 0`.

    Logs ``cgsv/contribution/agent_<i>`` and ``cgsv/reputation/agent_<i>`` once per round.

    Args:
        alpha: reputation smoothing in [0, 1) (0.95 in the paper).
        gamma: norm :math:`\Gamma > 0` of every normalised update (0.5 for MNIST-like data, 0.15 for CIFAR-10, 1 for
            text in the paper).
        eps: added to the norm before dividing.
        reputation_floor: reputations are clamped at this value before normalising (> 0), so no weight is negative.
        first_round_weights: ``"shard_size"`` (the paper) or ``"uniform"``.

    Example:
        >>> CosineGradientShapley(alpha=0.95, gamma=0.5)
        CosineGradientShapley(alpha=0.95, gamma=0.5)
    """

    def __init__(
        self,
        alpha: float = 0.95,
        gamma: float = 0.5,
        eps: float = 1e-7,
        reputation_floor: float = 1e-3,
        first_round_weights: Literal["shard_size", "uniform"] = "shard_size",
    ) -> None:
        if not (isinstance(alpha, (int, float)) and 0 <= alpha < 1):
            raise ValueError(f"Expected argument `alpha` to be in [0, 1), but got {alpha!r}.")
        if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma > 0):
            raise ValueError(f"Expected argument `gamma` to be a finite number > 0, but got {gamma!r}.")
        if not (isinstance(eps, (int, float)) and eps >= 0):
            raise ValueError(f"Expected argument `eps` to be a number >= 0, but got {eps!r}.")
        if not (isinstance(reputation_floor, (int, float)) and 0 < reputation_floor < 1):
            raise ValueError(f"Expected argument `reputation_floor` to be in (0, 1), but got {reputation_floor!r}.")
        if first_round_weights not in ("shard_size", "uniform"):
            raise ValueError(
                "Expected argument `first_round_weights` to be one of ['shard_size', 'uniform'], "
                f"but got {first_round_weights!r}."
            )
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.eps = float(eps)
        self.reputation_floor = float(reputation_floor)
        self.first_round_weights = first_round_weights

        self.reputation: Tensor | None = None
        self.contributions: Tensor | None = None
        self.rounds_done = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha}, gamma={self.gamma})"

    @property
    def state_key(self) -> str:
        return self._generate_state_key(alpha=self.alpha, gamma=self.gamma)

    def on_round_end(self, trainer: L.Trainer, module: CollaborativeModule) -> None:
        if module.round_index < self.rounds_done:  # this round was already scored before a restart
            return
        started = time.perf_counter()

        updates = module.round_updates()
        finite = finite_rows(updates)
        if not bool(finite.all()):
            bad = (~finite).nonzero().flatten().tolist()
            rank_zero_warn(
                f"Round {module.round_index}: the update of agent(s) {bad} is not finite (NaN or Inf); they get "
                "contribution 0 and their training state restarts from the round's starting point."
            )
        normalized = normalize_updates(updates, self.gamma, eps=self.eps)
        weights = self._weights(module).to(normalized.device, normalized.dtype)
        aggregate = aggregate_updates(normalized, weights)
        contributions = cosine_contributions(normalized, aggregate)

        previous = self.reputation if self.reputation is not None else torch.zeros(module.num_agents)
        reputation = update_reputation(
            previous.to(contributions.device, contributions.dtype),
            contributions,
            self.alpha,
            floor=self.reputation_floor,
        )

        record = module.round
        record.normalized_updates, record.aggregate, record.weights = normalized, aggregate, weights
        record.contributions, record.reputation, record.finite = contributions, reputation, finite
        module.apply_server_update(aggregate)
        self.reputation, self.contributions = reputation.detach().cpu(), contributions.detach().cpu()
        self.rounds_done = module.round_index + 1
        record.seconds["cgsv"] = time.perf_counter() - started

        metrics = {}
        for i, (psi, rep) in enumerate(zip(self.contributions.tolist(), self.reputation.tolist(), strict=True)):
            metrics[f"cgsv/contribution/agent_{i}"] = psi
            metrics[f"cgsv/reputation/agent_{i}"] = rep
        module.log_round_metrics(metrics)

    def _weights(self, module: CollaborativeModule) -> Tensor:
        if self.rounds_done > 0 and self.reputation is not None:
            return self.reputation
        if self.first_round_weights == "uniform":
            return torch.full((module.num_agents,), 1.0 / module.num_agents)
        samples = module.round_samples().to(torch.float64)
        return (samples / samples.sum()).float()

    def state_dict(self) -> dict[str, Any]:
        return {"reputation": self.reputation, "contributions": self.contributions, "rounds_done": self.rounds_done}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.reputation = state_dict["reputation"]
        self.contributions = state_dict["contributions"]
        self.rounds_done = int(state_dict["rounds_done"])
