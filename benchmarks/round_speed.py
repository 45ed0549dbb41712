"""Seconds per round: the vectorised pool, the sequential pool, and a plain loop over N separate modules.

All three train the same agents on the same batches in one process, side by side; each figure is the median over
the measured rounds, and every ratio compares two paths measured in this same run. The plain loop is the style of
the paper's code: N ``nn.Module`` agents with their own ``torch.optim.SGD``, trained one after another, then the
round-end mathematics written per agent (flatten, cosine, a top-k mask per agent and per layer).

    python benchmarks/round_speed.py                         # CPU: CNN and MLP at N = 5, 20, 100
    python benchmarks/round_speed.py --device cuda           # the same table on a GPU

Columns: seconds per round (median) of each path; each pool path relative to the plain loop (< 1 is faster); the
share of the default path's round spent on CGSV and rewards; peak memory of each path (CPU: the process's peak
resident set, reset before each path; CUDA: peak allocated).
"""

from __future__ import annotations

import argparse
import copy
import gc
import logging
import math
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from lightning_cgs import CollaborativeModule, CosineGradientShapley, FairGradientReward
from lightning_cgs.data.batch import AgentBatch, RoundStep
from lightning_cgs.models import MLP, PaperCNN

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
warnings.filterwarnings("ignore")


# ------------------------------------------------------------------------------------------------------ the data
class SyntheticRounds:
    """Random images, ``samples`` per agent, served as ``RoundStep`` batches (a fresh permutation every round)."""

    def __init__(self, num_agents: int, samples: int, batch_size: int, shape: tuple[int, ...], device: str) -> None:
        generator = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(num_agents, samples, *shape, generator=generator).to(device)
        self.targets = torch.randint(0, 10, (num_agents, samples), generator=generator).to(device)
        self.num_agents, self.samples, self.batch_size = num_agents, samples, batch_size
        self.round = 0

    def steps(self, round_index: int) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(round_index)
        order = torch.stack([torch.randperm(self.samples, generator=generator) for _ in range(self.num_agents)])
        return list(order.to(self.inputs.device).split(self.batch_size, dim=1))

    def __len__(self) -> int:
        return math.ceil(self.samples / self.batch_size)

    def __iter__(self):
        round_index, self.round = self.round, self.round + 1
        steps = self.steps(round_index)
        agents = torch.arange(self.num_agents, device=self.inputs.device)
        epochs = torch.zeros_like(agents)
        for t, idx in enumerate(steps):
            inputs = torch.stack([self.inputs[a, idx[a]] for a in range(self.num_agents)])
            targets = torch.stack([self.targets[a, idx[a]] for a in range(self.num_agents)])
            yield RoundStep([AgentBatch(agents, epochs, inputs, targets)], round_index, t, last=t == len(steps) - 1)


# ------------------------------------------------------------------------------------------------- measurement
def reset_peak_memory(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # resets the resident-set high-water mark (Linux)


def peak_memory_mib(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class RoundTimer(L.Callback):
    def __init__(self, device: str) -> None:
        self.device, self.seconds, self.round_end = device, [], []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        sync(self.device)
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        sync(self.device)
        self.seconds.append(time.perf_counter() - self.started)
        record = pl_module.round_history[-1]
        self.round_end.append(record.get("cgsv", 0.0) + record.get("reward", 0.0))


@dataclass
class Result:
    seconds: list[float]
    round_end: list[float]
    peak_mib: float

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def round_end_share(self) -> float:
        return statistics.median(e / s for e, s in zip(self.round_end, self.seconds, strict=True))


def run_pool(model: nn.Module, data: SyntheticRounds, execution: str, rounds: int, device: str) -> Result:
    module = CollaborativeModule(
        copy.deepcopy(model), num_agents=data.num_agents, lr=0.01, execution=execution, standalone_baseline=False
    )
    timer = RoundTimer(device)
    trainer = L.Trainer(
        max_epochs=rounds,
        accelerator=device,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[CosineGradientShapley(), FairGradientReward(beta=1.0), timer],
    )
    data.round = 0
    reset_peak_memory(device)
    trainer.fit(module, train_dataloaders=data)
    return Result(timer.seconds[1:], timer.round_end[1:], peak_memory_mib(device))  # the first round warms up


def run_plain_loop(model: nn.Module, data: SyntheticRounds, rounds: int, device: str) -> Result:
    """The paper's style: separate modules and optimizers, then the round-end mathematics agent by agent."""
    reset_peak_memory(device)
    agents = [copy.deepcopy(model).to(device) for _ in range(data.num_agents)]
    optimizers = [torch.optim.SGD(agent.parameters(), lr=0.01) for agent in agents]
    reputation = torch.zeros(data.num_agents, device=device)
    seconds, round_end = [], []
    for round_index in range(rounds):
        sync(device)
        started = time.perf_counter()
        before = [[p.detach().clone() for p in agent.parameters()] for agent in agents]
        for idx in data.steps(round_index):
            for a, (agent, optimizer) in enumerate(zip(agents, optimizers, strict=True)):
                optimizer.zero_grad()
                F.cross_entropy(agent(data.inputs[a, idx[a]]), data.targets[a, idx[a]]).backward()
                optimizer.step()
        sync(device)
        scored = time.perf_counter()
        updates = []
        for agent, start in zip(agents, before, strict=True):
            flat = torch.cat([(p.detach() - s).flatten() for p, s in zip(agent.parameters(), start, strict=True)])
            updates.append(0.5 * flat / (flat.norm() + 1e-7))
        weights = torch.full((data.num_agents,), 1 / data.num_agents, device=device) if round_index == 0 else reputation
        aggregate = sum(w * u for w, u in zip(weights, updates, strict=True))
        psi = torch.stack([F.cosine_similarity(u, aggregate, dim=0) for u in updates])
        reputation = (0.95 * reputation + 0.05 * psi).clamp(min=1e-3)
        reputation = reputation / reputation.sum()
        q = torch.tanh(reputation) / torch.tanh(reputation).max()
        shapes = [p.shape for p in agents[0].parameters()]
        pieces = aggregate.split([math.prod(s) for s in shapes])
        for agent, start, fraction in zip(agents, before, q.tolist(), strict=True):
            with torch.no_grad():
                for p, s, piece, shape in zip(agent.parameters(), start, pieces, shapes, strict=True):
                    keep = math.ceil(fraction * piece.numel())
                    mask = torch.zeros_like(piece)
                    mask[piece.abs().topk(keep).indices] = 1
                    p.copy_(s + (piece * mask).reshape(shape))
        sync(device)
        finished = time.perf_counter()
        seconds.append(finished - started)
        round_end.append(finished - scored)
    return Result(seconds[1:], round_end[1:], peak_memory_mib(device))


# ------------------------------------------------------------------------------------------------------- table
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--models", default="cnn,mlp")
    parser.add_argument("--agents", default="5,20,100")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per path; the first is a warm-up")
    parser.add_argument("--samples", type=int, default=128, help="examples per agent (batches of 32)")
    parser.add_argument("--max-cnn-agents", type=int, default=100, help="skip larger N for the CNN (memory)")
    args = parser.parse_args()
    torch.manual_seed(0)

    default = "vectorized" if args.device == "cuda" else "sequential"
    print(
        f"device {args.device} | torch {torch.__version__} | threads {torch.get_num_threads()} | "
        f"{args.samples} examples per agent, batch 32, 1 local epoch | median of 2 x {args.rounds - 1} measured "
        f"rounds per path (two runs in alternating order, each after a warm-up round) | default path: {default}"
    )
    header = (
        f"{'model':>5} {'N':>4} | {'vectorized s':>12} {'sequential s':>12} {'plain loop s':>12} | "
        f"{'vec/loop':>8} {'seq/loop':>8} | {'CGSV+reward':>11} {'(loop)':>7} | "
        f"{'peak MiB vec':>12} {'seq':>7} {'loop':>7}"
    )
    print(header)
    print("-" * len(header))
    for name in args.models.split(","):
        for num_agents in (int(n) for n in args.agents.split(",")):
            if name == "cnn" and num_agents > args.max_cnn_agents:
                continue
            model, shape = (PaperCNN(), (1, 28, 28)) if name == "cnn" else (MLP(784, [200, 200], 10), (1, 28, 28))
            data = SyntheticRounds(num_agents, args.samples, 32, shape, args.device)
            # alternate the order so that slow phases of a shared machine hit every path alike
            results: dict[str, list[Result]] = {"vectorized": [], "sequential": [], "loop": []}
            for order in (("vectorized", "sequential", "loop"), ("loop", "sequential", "vectorized")):
                for path in order:
                    if path == "loop":
                        results[path].append(run_plain_loop(model, data, args.rounds, args.device))
                    else:
                        results[path].append(run_pool(model, data, path, args.rounds, args.device))
            merged = {
                path: Result(
                    [s for r in rs for s in r.seconds],
                    [e for r in rs for e in r.round_end],
                    max(r.peak_mib for r in rs),
                )
                for path, rs in results.items()
            }
            vec, seq, loop = merged["vectorized"], merged["sequential"], merged["loop"]
            print(
                f"{name:>5} {num_agents:>4} | {vec.median:>12.4f} {seq.median:>12.4f} {loop.median:>12.4f} | "
                f"{vec.median / loop.median:>8.2f} {seq.median / loop.median:>8.2f} | "
                f"{merged[default].round_end_share:>10.2%} {loop.round_end_share:>7.2%} | "
                f"{vec.peak_mib:>12.0f} {seq.peak_mib:>7.0f} {loop.peak_mib:>7.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
