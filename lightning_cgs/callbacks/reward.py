"""``FairGradientReward``: each agent receives a share of the aggregated update that grows with its reputation."""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import lightning as L
from torch import Tensor

from lightning_cgs.callbacks._common import RoundEndCallback
from lightning_cgs.functional import reward_fractions, sparsify_rewards
from lightning_cgs.module import CollaborativeModule


class FairGradientReward(RoundEndCallback):
    r"""Reward every agent with a sparsified copy of the aggregated update, denser for a higher reputation.

    After :class:`~lightning_cgs.CosineGradientShapley` has scored the round, agent *i* gets the fraction

    .. math::
        q_i = \frac{\tanh(\beta r_i)}{\max_j \tanh(\beta r_j)}

    of the aggregate :math:`u_N`: all but its :math:`\lceil q_i n \rceil` largest-magnitude entries are set to zero,
    per parameter tensor (``mode="layer"``, the paper's default) or over all weights together (``"global"``), and
    :math:`\theta_i \leftarrow \theta_i^{\text{round start}} + v_i`. The top agent gets the whole aggregate.
    A small ``beta`` spreads rewards widely (more fairness); ``beta = inf`` gives everyone the full aggregate
    (FedAvg-like, no fairness). One sort of :math:`|u_N|` per tensor serves every agent.

    Logs ``reward/fraction/agent_<i>`` once per round.

    Args:
        beta: altruism degree, > 0; ``float("inf")`` allowed.
        mode: ``"layer"`` or ``"global"``.

    Example:
        >>> FairGradientReward(beta=1.0)
        FairGradientReward(beta=1.0, mode='layer')
    """

    requires = ("CosineGradientShapley",)

    def __init__(self, beta: float = 1.0, mode: Literal["layer", "global"] = "layer") -> None:
        if not (isinstance(beta, (int, float)) and not math.isnan(beta) and beta > 0):
            raise ValueError(f"Expected argument `beta` to be a number > 0 (inf allowed), but got {beta!r}.")
        if mode not in ("layer", "global"):
            raise ValueError(f"Expected argument `mode` to be one of ['global', 'layer'], but got {mode!r}.")
        self.beta = float(beta)
        self.mode = mode
        self.fractions: Tensor | None = None
        self.rounds_done = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(beta={self.beta}, mode={self.mode!r})"

    @property
    def state_key(self) -> str:
        return self._generate_state_key(beta=self.beta, mode=self.mode)

    def on_round_end(self, trainer: L.Trainer, module: CollaborativeModule) -> None:
        if module.round_index < self.rounds_done:
            return
        record = module.round
        if record is None or record.reputation is None or record.aggregate is None:
            raise RuntimeError(
                f"Round {module.round_index} reached `FairGradientReward` without a CGSV score: "
                "`CosineGradientShapley` must come first in the callbacks."
            )
        started = time.perf_counter()

        fractions = reward_fractions(record.reputation, self.beta)
        aggregate = module.pool.split_flat(record.aggregate)
        if bool((fractions == 1).all()):
            rewards = [piece.unsqueeze(0).expand(module.num_agents, *piece.shape) for piece in aggregate]
        else:
            rewards = sparsify_rewards(aggregate, fractions, mode=self.mode)
        module.apply_rewards(rewards)

        record.reward_fractions = fractions
        self.fractions = fractions.detach().cpu()
        self.rounds_done = module.round_index + 1
        record.seconds["reward"] = time.perf_counter() - started
        module.log_round_metrics({f"reward/fraction/agent_{i}": q for i, q in enumerate(self.fractions.tolist())})

    def state_dict(self) -> dict[str, Any]:
        return {"fractions": self.fractions, "rounds_done": self.rounds_done}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.fractions = state_dict["fractions"]
        self.rounds_done = int(state_dict["rounds_done"])
