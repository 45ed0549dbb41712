"""Independent plain-loop references for the tests: N separate ``nn.Module`` agents trained one after another.

Nothing here imports the code under test except the batch containers (``RoundStep``/``AgentBatch``), which only
carry tensors. The batch plan is built here with its own generators, the agents are separate modules with
``torch.optim`` optimizers and ``ExponentialLR`` schedules, and the CGSV round is written out step by step from
the README's "How a round works" with ``torch.nn.functional.cosine_similarity`` and ``torch.topk``-free masks.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_cgs.data.batch import AgentBatch, RoundStep


def plan_round(shard_sizes: list[int], batch_size: int, local_epochs: int, round_index: int, seed: int) -> list:
    """For each step, the groups ``(agents, epochs, index_matrix)`` of agents with equal batch sizes.

    Agent i's indices are shard-relative (0 .. n_i - 1); the test maps them to its data.
    """
    sequences = []
    for agent, size in enumerate(shard_sizes):
        sequence = []
        for epoch in range(local_epochs):
            generator = torch.Generator().manual_seed(seed * 100_003 + round_index * 1009 + agent * 101 + epoch)
            order = torch.randperm(size, generator=generator)
            sequence += [(epoch, chunk) for chunk in order.split(batch_size)]
        sequences.append(sequence)
    steps = []
    for t in range(max(len(s) for s in sequences)):
        by_size: dict[int, list] = {}
        for agent, sequence in enumerate(sequences):
            if t < len(sequence):
                epoch, chunk = sequence[t]
                by_size.setdefault(len(chunk), []).append((agent, epoch, chunk))
        steps.append([by_size[size] for size in sorted(by_size, reverse=True)])
    return steps


class PlannedLoader:
    """An iterable of ``RoundStep`` for Lightning: the i-th iteration over it is round i."""

    def __init__(self, shards: list[tuple[Tensor, Tensor]], batch_size: int, local_epochs: int, seed: int) -> None:
        self.shards = shards
        self.batch_size, self.local_epochs, self.seed = batch_size, local_epochs, seed
        self.rounds_started = 0

    def steps(self, round_index: int) -> list:
        sizes = [len(y) for _, y in self.shards]
        return plan_round(sizes, self.batch_size, self.local_epochs, round_index, self.seed)

    def __len__(self) -> int:
        return len(self.steps(0))

    def __iter__(self):
        round_index = self.rounds_started
        self.rounds_started += 1
        plan = self.steps(round_index)
        for t, groups in enumerate(plan):
            batches = []
            for group in groups:
                agents = torch.tensor([a for a, _, _ in group])
                epochs = torch.tensor([e for _, e, _ in group])
                inputs = torch.stack([self.shards[a][0][idx] for a, _, idx in group])
                targets = torch.stack([self.shards[a][1][idx] for a, _, idx in group])
                batches.append(AgentBatch(agents, epochs, inputs, targets))
            yield RoundStep(batches, round_index=round_index, step_index=t, last=t == len(plan) - 1)


class ReplayDropout(nn.Module):
    """Dropout whose scaled mask is handed in from outside (to replay the masks of a vectorised run)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.mask: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        return x * self.mask


@dataclass
class ReferenceConfig:
    optimizer: str
    lr: float
    lr_decay: float
    options: dict


class ReferenceAgents:
    """N separate copies of ``model``, each with its own torch.optim optimizer and ExponentialLR schedule."""

    def __init__(self, model: nn.Module, num_agents: int, config: ReferenceConfig) -> None:
        self.models = [copy.deepcopy(model) for _ in range(num_agents)]
        make = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[config.optimizer]
        self.optimizers = [make(m.parameters(), lr=config.lr, **config.options) for m in self.models]
        self.schedulers = [torch.optim.lr_scheduler.ExponentialLR(o, gamma=config.lr_decay) for o in self.optimizers]

    def train_round(
        self, plan: list, shards: list, replay_dropout: float | None = None, decay_every: str = "local_epoch"
    ) -> None:
        """One round: every step, every active agent in group order takes one optimizer step on its batch.

        Each agent's learning rate decays after each of its local epochs, or after its last one with
        ``decay_every="round"``.

        With ``replay_dropout=p``, the models hold ``ReplayDropout`` modules and, for each group, the masks are
        drawn exactly as a vectorised run draws them: one ``(A, b, width)`` draw per dropout layer, in layer order.
        """
        last_step = {}
        for t, groups in enumerate(plan):
            for group in groups:
                for agent, epoch, _ in group:
                    last_step[(agent, epoch)] = t
        for t, groups in enumerate(plan):
            for group in groups:
                masks = self._draw_masks(group, replay_dropout) if replay_dropout is not None else None
                for k, (agent, epoch, idx) in enumerate(group):
                    model, optimizer = self.models[agent], self.optimizers[agent]
                    model.train()
                    if masks is not None:
                        for layer, mask in zip(self._replays(model), masks, strict=True):
                            layer.mask = mask[k]
                    x, y = shards[agent][0][idx], shards[agent][1][idx]
                    optimizer.zero_grad()
                    F.cross_entropy(model(x), y).backward()
                    optimizer.step()
                    last_epoch = max(e for a, e in last_step if a == agent)
                    if last_step[(agent, epoch)] == t and (decay_every == "local_epoch" or epoch == last_epoch):
                        self.schedulers[agent].step()

    def _replays(self, model: nn.Module) -> list[ReplayDropout]:
        return [m for m in model.modules() if isinstance(m, ReplayDropout)]

    def _draw_masks(self, group: list, p: float) -> list[Tensor]:
        model = self.models[group[0][0]]
        widths = [m.width for m in self._replays(model)]
        batch = len(group[0][2])
        return [F.dropout(torch.ones(len(group), batch, w), p, training=True) for w in widths]


def reference_cgsv_round(
    deltas: list[list[Tensor]],
    reputation: Tensor | None,
    shard_sizes: list[int],
    alpha: float,
    gamma: float,
    beta: float,
    floor: float = 1e-3,
) -> dict:
    """One round of the README's "How a round works", written plainly, per agent and per parameter tensor.

    Returns the normalised updates, the aggregate (per tensor), psi, the new reputation, q and the rewards.
    """
    n = len(deltas)
    normalized = []
    for delta in deltas:
        flat = torch.cat([d.flatten() for d in delta])
        norm = flat.norm().item()
        scale = gamma / (norm + 1e-7) if norm > 0 else 0.0
        normalized.append([d * scale for d in delta])
    if reputation is None:
        total = sum(shard_sizes)
        weights = [s / total for s in shard_sizes]
    else:
        weights = reputation.tolist()
    aggregate = [sum(weights[i] * normalized[i][k] for i in range(n)) for k in range(len(deltas[0]))]
    flat_aggregate = torch.cat([a.flatten() for a in aggregate])
    psi = []
    for i in range(n):
        flat = torch.cat([u.flatten() for u in normalized[i]])
        if flat.norm() == 0 or flat_aggregate.norm() == 0:
            psi.append(0.0)
        else:
            psi.append(F.cosine_similarity(flat, flat_aggregate, dim=0).item())
    previous = [0.0] * n if reputation is None else reputation.tolist()
    raw = [max(alpha * previous[i] + (1 - alpha) * psi[i], floor) for i in range(n)]
    new_reputation = torch.tensor([r / sum(raw) for r in raw], dtype=torch.float64)
    tanhs = [math.tanh(beta * r) if math.isfinite(beta) else 1.0 for r in new_reputation.tolist()]
    q = [t / max(tanhs) for t in tanhs]
    rewards = []
    for i in range(n):
        reward = []
        for a in aggregate:
            keep = math.ceil(q[i] * a.numel())
            flat = a.flatten()
            # rank by magnitude, ties by lower index first, with a plain Python sort
            order = sorted(range(flat.numel()), key=lambda j: (-abs(flat[j].item()), j))
            masked = torch.zeros_like(flat)
            for j in order[:keep]:
                masked[j] = flat[j]
            reward.append(masked.reshape(a.shape))
        rewards.append(reward)
    return {
        "normalized": normalized,
        "aggregate": aggregate,
        "psi": torch.tensor(psi, dtype=torch.float64),
        "reputation": new_reputation,
        "q": torch.tensor(q, dtype=torch.float64),
        "rewards": rewards,
    }
