"""How far the cosine gradient Shapley value (CGSV) is from the exact Shapley value of the cosine game.

For N = 3 .. 10 agents with random Gaussian updates of dimension d, normalised to norm 1 as in a round of the
algorithm, the script compares three scores of the game v(S) = cos(sum_{j in S} w_j u_j, u_N):

- the cosine approximation psi_i = cos(u_i, u_N), normalised to sum 1;
- a Monte Carlo estimate from K sampled orders of the agents;
- the exact Shapley value (all 2^N coalitions), normalised to sum 1, as the reference.

It prints, per N, the mean and standard deviation over the trials of the L1 and L2 distances to the reference, the
Pearson correlation of the cosine scores with the reference across agents, and the median wall time of each method.

Run from the repository root (with the package installed, or with ``PYTHONPATH=.``)::

    python benchmarks/shapley_gap.py --trials 50 --dim 1000 --seed 0
    python benchmarks/shapley_gap.py --weighted   # aggregation weights drawn at random, as reputations would be
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from lightning_cgs.functional import (
    cosine_contributions,
    exact_cosine_shapley,
    monte_carlo_cosine_shapley,
    normalize_updates,
    pearson_correlation,
)

AGENT_COUNTS = range(3, 11)


def _timed(function: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def _distances(estimate: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    difference = estimate / estimate.sum() - reference / reference.sum()
    return float(difference.abs().sum()), float(torch.linalg.vector_norm(difference))


def _mean_std(values: list[float], digits: int = 4) -> str:
    if not values:
        return "n/a"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {spread:.{digits}f}"


def measure(
    num_agents: int, trials: int, dim: int, num_permutations: int, weighted: bool, seed: int
) -> tuple[dict[str, list[float]], int]:
    """Per-trial distances, correlations and timings for one number of agents, and the count of undefined
    correlations."""
    generator = torch.Generator().manual_seed(seed * 1000 + num_agents)
    results: dict[str, list[float]] = {
        key: [] for key in ("cos_l1", "cos_l2", "pearson", "mc_l1", "mc_l2", "t_cos", "t_exact", "t_mc")
    }
    undefined = 0
    for _ in range(trials):
        raw = torch.randn(num_agents, dim, generator=generator, dtype=torch.float64)
        updates = normalize_updates(raw, gamma=1.0)
        weights = torch.rand(num_agents, generator=generator, dtype=torch.float64) if weighted else None
        aggregate = updates.sum(dim=0) if weights is None else weights @ updates

        psi, t_cos = _timed(lambda: cosine_contributions(updates, aggregate))  # noqa: B023
        exact, t_exact = _timed(lambda: exact_cosine_shapley(updates, weights))  # noqa: B023
        estimate, t_mc = _timed(
            lambda: monte_carlo_cosine_shapley(updates, num_permutations, weights, generator=generator)  # noqa: B023
        )

        cos_l1, cos_l2 = _distances(psi, exact)
        mc_l1, mc_l2 = _distances(estimate, exact)
        correlation = pearson_correlation(psi, exact)
        if correlation is None:
            undefined += 1
        else:
            results["pearson"].append(correlation)
        for key, value in zip(
            ("cos_l1", "cos_l2", "mc_l1", "mc_l2", "t_cos", "t_exact", "t_mc"),
            (cos_l1, cos_l2, mc_l1, mc_l2, t_cos, t_exact, t_mc),
            strict=True,
        ):
            results[key].append(value)
    return results, undefined


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50, help="random draws of the updates per N (default 50)")
    parser.add_argument("--dim", type=int, default=1000, help="dimension d of the updates (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random updates and orders (default 0)")
    parser.add_argument("--permutations", type=int, default=150, help="Monte Carlo budget K (default 150)")
    parser.add_argument("--weighted", action="store_true", help="random aggregation weights instead of all ones")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: tiny problems)")
    args = parser.parse_args()
    if args.trials < 2 or args.dim < 1 or args.permutations < 1 or args.threads < 1:
        parser.error("--trials must be >= 2, --dim, --permutations and --threads >= 1")
    torch.set_num_threads(args.threads)

    print(
        f"Cosine approximation (CGSV) and Monte Carlo (K = {args.permutations}) vs exact Shapley values of the cosine"
        f" game; {args.trials} trials, d = {args.dim}, seed {args.seed}, {'random' if args.weighted else 'unit'}"
        f" weights, torch {torch.__version__}, {torch.get_num_threads()} threads."
    )
    print("Distances between score vectors normalised to sum 1: mean ± std over trials. Times: median per call.")
    header = (
        f"{'N':>3} | {'CGSV L1':>15} | {'CGSV L2':>15} | {'Pearson(CGSV, SV)':>19} | {'MC L1':>15} |"
        f" {'MC L2':>15} | {'t CGSV':>9} | {'t exact':>9} | {'t MC':>9}"
    )
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    for num_agents in AGENT_COUNTS:
        row, undefined = measure(num_agents, args.trials, args.dim, args.permutations, args.weighted, args.seed)
        pearson = _mean_std(row["pearson"], digits=5) + (f" ({undefined} undefined)" if undefined else "")
        times = [f"{statistics.median(row[key]) * 1e3:7.3f}ms" for key in ("t_cos", "t_exact", "t_mc")]
        print(
            f"{num_agents:>3} | {_mean_std(row['cos_l1']):>15} | {_mean_std(row['cos_l2']):>15} | {pearson:>19} |"
            f" {_mean_std(row['mc_l1']):>15} | {_mean_std(row['mc_l2']):>15} | {' | '.join(times)}"
        )
    print(f"Total {time.perf_counter() - started:.1f} s.")


if __name__ == "__main__":
    main()
