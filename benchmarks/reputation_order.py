"""Do agents with more data end with higher reputation? Powerlaw shards, several seeds, one table.

The claim of the method on powerlaw splits is that reputation grows with shard size. One run answers it for one
seed; this script repeats the shipped configs' setting (the paper's CNN with SGD on Fashion-MNIST, or the digits
MLP) for several seeds, without evaluation or standalone twins (only the CGSV callbacks run), and prints per seed
the final reputations, their Spearman rank correlation with the shard sizes, whether the order is strictly
monotone, and in how many rounds the smallest agent has the lowest reputation; then the same over all seeds.

    python benchmarks/reputation_order.py --dataset digits --rounds 30 --seeds 0,1,2,3,4
    python benchmarks/reputation_order.py --dataset fashion_mnist --rounds 30 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

import lightning as L
import torch
from scipy.stats import spearmanr

from lightning_cgs import CollaborativeDataModule, CollaborativeModule, CosineGradientShapley, FairGradientReward
from lightning_cgs.models import MLP, PaperCNN

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
warnings.filterwarnings("ignore")

SETTINGS = {  # as configs/digits.yaml and configs/fashion_mnist.yaml
    "digits": {"batch_size": 16, "lr": 0.01, "lr_decay": 1.0, "lr_decay_every": "local_epoch", "cap": None},
    "fashion_mnist": {"batch_size": 32, "lr": 1e-3, "lr_decay": 0.955, "lr_decay_every": "round", "cap": 3000},
}


class ReputationTrace(L.Callback):
    """Records the reputation after every round (listed after CosineGradientShapley)."""

    def __init__(self, scorer: CosineGradientShapley) -> None:
        self.scorer, self.trace = scorer, []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.trace.append(self.scorer.reputation.clone())


def run(
    dataset: str, seed: int, rounds: int, num_agents: int, drop_last: bool = False
) -> tuple[list[int], list[torch.Tensor], float]:
    settings = SETTINGS[dataset]
    L.seed_everything(seed, verbose=False)
    data = CollaborativeDataModule(
        dataset,
        num_agents=num_agents,
        split="powerlaw",
        batch_size=settings["batch_size"],
        sample_size_cap=settings["cap"],
        drop_last=drop_last,
        seed=seed,
    )
    model = MLP(64, 64, 10) if dataset == "digits" else PaperCNN()
    module = CollaborativeModule(
        model,
        num_agents=num_agents,
        local_epochs=3,
        lr=settings["lr"],
        lr_decay=settings["lr_decay"],
        lr_decay_every=settings["lr_decay_every"],
        standalone_baseline=False,
    )
    scorer = CosineGradientShapley(alpha=0.95, gamma=0.5)
    trace = ReputationTrace(scorer)
    trainer = L.Trainer(
        max_epochs=rounds,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[scorer, FairGradientReward(beta=1.0), trace],
    )
    started = time.perf_counter()
    trainer.fit(module, data)
    return data.shard_sizes, trace.trace, (time.perf_counter() - started) / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits", choices=sorted(SETTINGS))
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--agents", type=int, default=5)
    parser.add_argument("--drop-last", action="store_true", help="drop each pass's last, shorter mini-batch")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]

    print(
        f"`{args.dataset} | powerlaw | {args.agents} agents | {args.rounds} rounds | E = 3 | alpha 0.95 | "
        f"Gamma 0.5 | beta 1 | drop_last {args.drop_last} | torch {torch.__version__}`\n"
    )
    print(
        "| seed | shard sizes | final reputations | Spearman(reputation, shard) | strictly monotone "
        "| rounds strictly monotone | rounds with the smallest agent lowest | s per round |"
    )
    print("|---|---|---|---|---|---|---|---|")
    spearmans, monotone, lowest_share = [], 0, []
    for seed in seeds:
        sizes, trace, seconds = run(args.dataset, seed, args.rounds, args.agents, args.drop_last)
        final = trace[-1]
        rho = float(spearmanr(final.tolist(), sizes).statistic)
        order = torch.tensor(sizes).argsort()
        strictly = bool((final[order].diff() > 0).all())
        monotone_rounds = sum(bool((r[order].diff() > 0).all()) for r in trace)
        smallest = int(order[0])
        lowest = sum(int(r.argmin()) == smallest for r in trace)
        spearmans.append(rho)
        monotone += strictly
        lowest_share.append(lowest / len(trace))
        print(
            f"| {seed} | {sizes} | {[round(v, 4) for v in final.tolist()]} | {rho:.2f} | "
            f"{'yes' if strictly else 'no'} | {monotone_rounds}/{len(trace)} | {lowest}/{len(trace)} | {seconds:.2f} |"
        )
    print(
        f"\nover {len(seeds)} seeds: mean Spearman {statistics.fmean(spearmans):.2f} (min {min(spearmans):.2f}), "
        f"strictly monotone at the end in {monotone}/{len(seeds)}, smallest agent lowest in "
        f"{100 * statistics.fmean(lowest_share):.0f}% of all rounds"
    )


if __name__ == "__main__":
    main()
