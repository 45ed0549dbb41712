"""Pure tensor mathematics of cosine gradient Shapley values and gradient rewards (no Lightning inside).

Every function takes the updates of one round as an ``(N, d)`` tensor, one flattened update per agent, works on any
device and floating point dtype, and leaves its inputs unchanged.
"""

from lightning_cgs.functional.fairness import individual_rationality, pearson_correlation
from lightning_cgs.functional.reputation import update_reputation
from lightning_cgs.functional.rewards import reward_fractions, sparsify_rewards, top_fraction_mask, top_fraction_masks
from lightning_cgs.functional.shapley import cosine_contributions, exact_cosine_shapley, monte_carlo_cosine_shapley
from lightning_cgs.functional.updates import aggregate_updates, finite_rows, normalize_updates

__all__ = [
    "aggregate_updates",
    "cosine_contributions",
    "exact_cosine_shapley",
    "finite_rows",
    "individual_rationality",
    "monte_carlo_cosine_shapley",
    "normalize_updates",
    "pearson_correlation",
    "reward_fractions",
    "sparsify_rewards",
    "top_fraction_mask",
    "top_fraction_masks",
    "update_reputation",
]
