"""The batches that feed the agent pool: one step of a round, for every agent that is still training."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class AgentBatch:
    """Equal-sized mini-batches of several agents, stacked along a leading agent dimension.

    Agents whose current mini-batch has the same size are grouped so that one vectorised forward pass can serve
    them all; the last, shorter batch of an agent's local epoch lands in a group of its own size.

    Args:
        agents: ``(A,)`` long tensor of agent indices (0-based, strictly increasing).
        local_epochs: ``(A,)`` long tensor: the local epoch (``0 .. E - 1`` within the round) that each agent's
            batch belongs to. The learning-rate schedule of each agent reads it.
        inputs: ``(A, b, *feature_shape)`` tensor, agent ``agents[k]``'s mini-batch is ``inputs[k]``.
        targets: ``(A, b)`` tensor of class indices.
    """

    agents: Tensor
    local_epochs: Tensor
    inputs: Tensor
    targets: Tensor

    @property
    def batch_size(self) -> int:
        return int(self.inputs.shape[1])


@dataclass
class RoundStep:
    """Everything one training step of a round needs: a batch for each agent that has not finished its passes.

    An agent that has finished its ``E`` passes over its shard for this round appears in no group, and so takes no
    optimizer step. The groups are disjoint and, together, list every active agent once.

    Args:
        groups: the active agents, grouped by mini-batch size (largest first).
        round_index: which round (Lightning epoch) this step belongs to.
        step_index: position of this step inside the round, ``0 .. steps_per_round - 1``.
        last: ``True`` on the final step of the round; the round-end callbacks act after it.
    """

    groups: list[AgentBatch] = field(default_factory=list)
    round_index: int = 0
    step_index: int = 0
    last: bool = False

    @property
    def num_active(self) -> int:
        return sum(int(group.agents.numel()) for group in self.groups)
