"""Which agent trains on which of its examples at each step of a round.

Within round ``r`` agent ``i`` makes ``local_epochs`` full passes over its shard. Pass ``e`` visits the shard in a
fresh order, a permutation drawn from a generator seeded with ``SeedSequence([seed, r, i, e])``, cut into
mini-batches of ``batch_size`` (the last one shorter, or dropped with ``drop_last``). All agents step together; an
agent whose passes are over sits out the remaining steps of the round.

Example:
    >>> schedule = RoundSchedule([5, 2], batch_size=2, local_epochs=2, seed=0)
    >>> schedule.steps_per_agent, schedule.steps_per_round
    ([6, 2], 6)
    >>> [[(item.agent, item.local_epoch, len(item.indices)) for item in step] for step in schedule.plan(0)]
    [[(0, 0, 2), (1, 0, 2)], [(0, 0, 2), (1, 1, 2)], [(0, 0, 1)], [(0, 1, 2)], [(0, 1, 2)], [(0, 1, 1)]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from lightning_cgs.data._checks import check_int


class ScheduledBatch(NamedTuple):
    """One agent's mini-batch at one step: ``indices`` are positions inside the agent's shard (``0 .. n_i - 1``)."""

    agent: int
    local_epoch: int
    indices: np.ndarray


class RoundSchedule:
    """The per-step mini-batches of every agent, for any round, derived from the seed alone.

    Args:
        shard_sizes: number of examples of each agent, all ``>= 1``.
        batch_size: mini-batch size ``B``.
        local_epochs: passes ``E`` over its shard that each agent makes per round.
        seed: non-negative integer; with the round, agent and local epoch it seeds every permutation.
        drop_last: drop each pass's last, shorter mini-batch. Every shard must then hold at least ``batch_size``
            examples, or its agent would never train.

    Agent ``i`` takes ``E * ceil(n_i / B)`` steps per round (``E * floor(n_i / B)`` with ``drop_last``); a round has
    as many steps as its busiest agent, whatever the round.

    Raises:
        ValueError: if an argument is out of range or a shard is empty.
    """

    def __init__(
        self,
        shard_sizes: Sequence[int],
        batch_size: int,
        local_epochs: int,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if len(shard_sizes) == 0:
            raise ValueError("Expected `shard_sizes` to list at least one agent, but got an empty list.")
        for agent, size in enumerate(shard_sizes):
            if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
                raise ValueError(
                    f"Expected every entry of `shard_sizes` to be an integer >= 1, but agent {agent} has {size!r}: "
                    "an agent without examples cannot train."
                )
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.local_epochs = check_int("local_epochs", local_epochs, minimum=1)
        self.seed = check_int("seed", seed, minimum=0)
        self.drop_last = bool(drop_last)
        self.shard_sizes = [int(size) for size in shard_sizes]
        if self.drop_last:
            check_full_batches(self.shard_sizes, self.batch_size)

        rounding = math.floor if self.drop_last else math.ceil
        self.batches_per_epoch = [rounding(size / self.batch_size) for size in self.shard_sizes]
        self.steps_per_agent = [self.local_epochs * batches for batches in self.batches_per_epoch]
        self.steps_per_round = max(self.steps_per_agent)
        self._cached_round: int | None = None
        self._cached_permutations: list[list[np.ndarray]] = []

    @property
    def num_agents(self) -> int:
        return len(self.shard_sizes)

    def permutation(self, round_index: int, agent: int, local_epoch: int) -> np.ndarray:
        """The order in which ``agent`` visits its shard during pass ``local_epoch`` of round ``round_index``."""
        sequence = np.random.SeedSequence([self.seed, round_index, agent, local_epoch])
        return np.random.default_rng(sequence).permutation(self.shard_sizes[agent]).astype(np.int64)

    def step(self, round_index: int, step_index: int) -> list[ScheduledBatch]:
        """The mini-batches of the agents still active at step ``step_index`` of round ``round_index``.

        Raises:
            IndexError: if ``step_index`` is not in ``[0, steps_per_round)``.
        """
        if not 0 <= step_index < self.steps_per_round:
            raise IndexError(
                f"Expected `step_index` in [0, {self.steps_per_round - 1}] (`steps_per_round`={self.steps_per_round}), "
                f"but got {step_index}."
            )
        permutations = self._permutations(round_index)
        batches = []
        for agent, steps in enumerate(self.steps_per_agent):
            if step_index >= steps:
                continue
            local_epoch, position = divmod(step_index, self.batches_per_epoch[agent])
            start = position * self.batch_size
            indices = permutations[agent][local_epoch][start : start + self.batch_size]
            batches.append(ScheduledBatch(agent, local_epoch, indices))
        return batches

    def plan(self, round_index: int) -> list[list[ScheduledBatch]]:
        """Every step of round ``round_index``: ``plan[t]`` is :meth:`step` ``(round_index, t)``."""
        return [self.step(round_index, step_index) for step_index in range(self.steps_per_round)]

    def _permutations(self, round_index: int) -> list[list[np.ndarray]]:
        # Steps are asked for one at a time, in order: keep the current round's permutations.
        round_index = check_int("round_index", round_index, minimum=0)
        if self._cached_round != round_index:
            self._cached_permutations = [
                [self.permutation(round_index, agent, epoch) for epoch in range(self.local_epochs)]
                for agent in range(self.num_agents)
            ]
            self._cached_round = round_index
        return self._cached_permutations

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(shard_sizes={self.shard_sizes}, batch_size={self.batch_size}, "
            f"local_epochs={self.local_epochs}, seed={self.seed}, drop_last={self.drop_last})"
        )


def check_full_batches(shard_sizes: Sequence[int], batch_size: int) -> None:
    """With ``drop_last``, every shard must hold a full mini-batch, or its agent would never train.

    Raises:
        ValueError: naming the smallest shard's agent, its size and ``batch_size``.
    """
    if min(shard_sizes) < batch_size:
        agent = int(np.argmin(shard_sizes))
        raise ValueError(
            f"With `drop_last`=True every shard needs at least `batch_size`={batch_size} examples, but agent "
            f"{agent} has {shard_sizes[agent]} and would never train. Lower `batch_size` or set `drop_last`=False."
        )
