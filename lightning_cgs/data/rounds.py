"""The dataset and sampler behind the training loader: one :class:`RoundStep` per item, one round per epoch.

The sampler yields ``(round_index, step_index)`` keys; Lightning tells it the round through ``set_epoch`` at the
start of every epoch. The dataset turns a key into a :class:`RoundStep` built from in-memory tensors, so the steps
can also be produced in DataLoader worker processes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler

from lightning_cgs.data.batch import AgentBatch, RoundStep
from lightning_cgs.data.schedule import RoundSchedule


class RoundStepDataset(Dataset):
    """Builds the step ``(round_index, step_index)`` of a :class:`RoundSchedule` from in-memory tensors.

    Agents whose mini-batches have the same size share one :class:`AgentBatch`, the largest size first; each group's
    inputs come from a single fancy index of ``inputs`` with an ``(A, b)`` matrix of example indices.

    Args:
        inputs: every training input, ``(n, *feature_shape)``.
        targets: every training label, ``(n,)``.
        shard_indices: per agent, the rows of ``inputs`` it owns.
        schedule: the mini-batches of every step, as positions inside each shard.
    """

    def __init__(self, inputs: Tensor, targets: Tensor, shard_indices: Sequence[np.ndarray], schedule: RoundSchedule):
        if len(shard_indices) != schedule.num_agents:
            raise ValueError(
                f"Expected one shard per agent of the schedule ({schedule.num_agents}), but got {len(shard_indices)}."
            )
        for agent, (shard, size) in enumerate(zip(shard_indices, schedule.shard_sizes, strict=True)):
            if len(shard) != size:
                raise ValueError(f"Shard {agent} holds {len(shard)} examples, but the schedule expects {size}.")
        self.inputs = inputs
        self.targets = targets
        self.shard_indices = [np.asarray(shard, dtype=np.int64) for shard in shard_indices]
        self.schedule = schedule

    def __len__(self) -> int:
        return self.schedule.steps_per_round

    def __getitem__(self, key: tuple[int, int]) -> RoundStep:
        if not isinstance(key, tuple) or len(key) != 2:
            raise TypeError(f"Expected a key (round_index, step_index), as RoundSampler yields, but got {key!r}.")
        round_index, step_index = (int(part) for part in key)
        by_size: dict[int, list] = {}
        for batch in self.schedule.step(round_index, step_index):
            by_size.setdefault(len(batch.indices), []).append(batch)

        groups = []
        for size in sorted(by_size, reverse=True):
            batches = by_size[size]
            rows = np.stack([self.shard_indices[batch.agent][batch.indices] for batch in batches])
            rows = torch.from_numpy(rows)
            groups.append(
                AgentBatch(
                    agents=torch.tensor([batch.agent for batch in batches], dtype=torch.long),
                    local_epochs=torch.tensor([batch.local_epoch for batch in batches], dtype=torch.long),
                    inputs=self.inputs[rows],
                    targets=self.targets[rows],
                )
            )
        last = step_index == self.schedule.steps_per_round - 1
        return RoundStep(groups=groups, round_index=round_index, step_index=step_index, last=last)


class RoundSampler(DistributedSampler):
    """Yields the keys ``(round_index, step_index)`` of one round, in order; ``set_epoch`` selects the round.

    It derives from :class:`~torch.utils.data.distributed.DistributedSampler` only so that Lightning, which wraps
    any other sampler in a distributed one under DDP, leaves it alone: agents, not steps, are split across ranks,
    so every rank must run every step of the round.

    Args:
        steps_per_round: number of keys per round.
    """

    def __init__(self, steps_per_round: int) -> None:
        super().__init__(range(steps_per_round), num_replicas=1, rank=0, shuffle=False)
        self.steps_per_round = steps_per_round

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch: the round to produce next."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        round_index = self.epoch
        return iter([(round_index, step_index) for step_index in range(self.steps_per_round)])

    def __len__(self) -> int:
        return self.steps_per_round
