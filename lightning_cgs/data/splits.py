"""How the training examples are divided among the agents, and how some agents' labels are corrupted.

Pure, seeded functions on numpy arrays (no Lightning). Every split returns a list of ``num_agents`` disjoint,
sorted ``int64`` index arrays; the same seed gives the same shards.

Example:
    >>> from lightning_cgs.data.splits import powerlaw_shard_sizes, uniform_shard_sizes
    >>> powerlaw_shard_sizes(3000, 5)
    [71, 336, 600, 865, 1128]
    >>> uniform_shard_sizes(11, 3)
    [4, 4, 3]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from lightning_cgs.data._checks import check_class_counts, check_int, check_label_noise, check_positive_float

SplitName = Literal["uniform", "powerlaw", "classimbalance", "dirichlet"]
SPLIT_NAMES: tuple[str, ...] = ("uniform", "powerlaw", "classimbalance", "dirichlet")

POWERLAW_EXPONENT = 1.65911332899
"""Exponent ``a`` of the power law whose quantile function ``q ** (1 / a)`` sets the powerlaw shard sizes."""

Seed = int | np.random.Generator | np.random.SeedSequence


def as_generator(seed: Seed) -> np.random.Generator:
    """Turn a non-negative integer seed, a ``SeedSequence`` or a ``Generator`` (returned as is) into a ``Generator``."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    return np.random.default_rng(check_int("seed", seed, minimum=0))


def uniform_shard_sizes(num_samples: int, num_agents: int) -> list[int]:
    """Sizes of ``num_agents`` equal shards of ``num_samples`` examples; the first ``num_samples % num_agents`` get one
    more."""
    num_samples, num_agents = _check_counts(num_samples, num_agents)
    base, extra = divmod(num_samples, num_agents)
    return [base + (1 if agent < extra else 0) for agent in range(num_agents)]


def powerlaw_shard_sizes(num_samples: int, num_agents: int, exponent: float = POWERLAW_EXPONENT) -> list[int]:
    r"""Shard sizes that grow linearly between the 1 % and 99 % quantiles of a power law.

    With :math:`F^{-1}(q) = q^{1/a}` the quantile function of the power law with exponent :math:`a`, the points
    :math:`p_1 \dots p_N` are evenly spaced from :math:`F^{-1}(0.01)` to :math:`F^{-1}(0.99)` and agent :math:`k` asks
    for :math:`\lceil n \, p_k / \sum_j p_j \rceil` examples. Rounding up can overshoot :math:`n` by up to
    :math:`N - 1`, so the last agents get only what is left.

    Args:
        num_samples: total number of examples to divide, :math:`n`.
        num_agents: number of shards, :math:`N`.
        exponent: power-law exponent :math:`a`; the smaller, the more unequal the shards.

    Raises:
        ValueError: if some agent would get no example at all.

    Example:
        >>> powerlaw_shard_sizes(3000, 5)
        [71, 336, 600, 865, 1128]
    """
    num_samples, num_agents = _check_counts(num_samples, num_agents)
    exponent = check_positive_float("exponent", exponent)

    low, high = 0.01 ** (1.0 / exponent), 0.99 ** (1.0 / exponent)
    points = np.linspace(low, high, num_agents)
    # Rounding to 1e-9 first keeps float noise (600.0000000001) from adding an example to an exact share.
    wanted = np.ceil(np.round(points / points.sum() * num_samples, 9)).astype(np.int64)

    sizes, remaining = [], num_samples
    for size in wanted.tolist():
        sizes.append(min(size, remaining))
        remaining -= sizes[-1]
    if min(sizes) < 1:
        raise ValueError(
            f"powerlaw split: {num_samples} samples are too few for {num_agents} agents; the shard sizes would be "
            f"{sizes}. Raise the number of samples (`sample_size_cap`) or lower `num_agents`."
        )
    return sizes


def default_class_counts(num_agents: int, num_classes: int) -> list[int]:
    """How many classes each agent of a classimbalance split sees: ``floor(linspace(1, num_classes, num_agents))``.

    Example:
        >>> default_class_counts(5, 10)
        [1, 3, 5, 7, 10]
    """
    num_agents = check_int("num_agents", num_agents, minimum=1)
    num_classes = check_int("num_classes", num_classes, minimum=1)
    return np.floor(np.linspace(1, num_classes, num_agents)).astype(np.int64).tolist()


def uniform_split(num_samples: int, num_agents: int, seed: Seed = 0) -> list[np.ndarray]:
    """Deal a seeded permutation of ``range(num_samples)`` into equal shards (sizes differ by at most one)."""
    return _cut_permutation(uniform_shard_sizes(num_samples, num_agents), seed)


def powerlaw_split(num_samples: int, num_agents: int, seed: Seed = 0) -> list[np.ndarray]:
    """Deal a seeded permutation of ``range(num_samples)`` into shards of :func:`powerlaw_shard_sizes`."""
    return _cut_permutation(powerlaw_shard_sizes(num_samples, num_agents), seed)


def _check_classimbalance(
    labels: Sequence[int] | np.ndarray, num_agents: int, num_classes: int | None, class_counts: Sequence[int] | None
) -> tuple[np.ndarray, int, int, list[int]]:
    """The validated arguments shared by the classimbalance functions, with their defaults filled in."""
    labels = _check_labels(labels)
    num_agents = check_int("num_agents", num_agents, minimum=1)
    num_classes = _resolve_num_classes(labels, num_classes)
    if class_counts is None:
        class_counts = default_class_counts(num_agents, num_classes)
    return labels, num_agents, num_classes, check_class_counts(class_counts, num_agents, num_classes)


def classimbalance_max_shard_size(
    labels: Sequence[int] | np.ndarray,
    num_agents: int,
    *,
    num_classes: int | None = None,
    class_counts: Sequence[int] | None = None,
) -> int:
    """The largest equal shard size for which :func:`classimbalance_split` can serve every agent.

    The agents' class sets are nested (agent ``k`` sees classes ``0 .. c_k - 1``), so equal shards of ``s``
    examples exist exactly when, for every ``c`` among the ``c_k``, the agents that see at most ``c`` classes fit
    into those classes: ``s * #{k : c_k <= c} <= #{examples of classes < c}``. The split serves the most restricted
    agents first, so it succeeds for every ``s`` up to this bound.

    Returns:
        ``min_c floor(#{examples of classes < c} / #{k : c_k <= c})``; 0 when some agent's classes have no examples.

    Example:
        >>> labels = [0] * 3 + [1] * 10 + [2] * 10  # three zeros
        >>> classimbalance_max_shard_size(labels, 3, class_counts=[1, 2, 3])
        3
        >>> classimbalance_max_shard_size(labels, 3, class_counts=[2, 2, 3])
        6
    """
    labels, num_agents, num_classes, class_counts = _check_classimbalance(labels, num_agents, num_classes, class_counts)
    below = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=num_classes))])  # below[c]: classes < c
    return int(min(below[c] // sum(1 for k in class_counts if k <= c) for c in set(class_counts)))


def classimbalance_balanced_shard_size(
    labels: Sequence[int] | np.ndarray,
    num_agents: int,
    *,
    num_classes: int | None = None,
    class_counts: Sequence[int] | None = None,
) -> int:
    """The largest equal shard size at which every agent's shard spreads evenly over all of its classes.

    Agent ``k`` asks at most ``ceil(s / c_k)`` examples of each of its ``c_k`` classes, so when, for every class
    ``j``, those asks of all agents that see ``j`` fit into its examples, ``sum_{k : c_k > j} ceil(s / c_k) <=
    #{examples of class j}``, :func:`classimbalance_split` gives every agent ``floor`` or ``ceil`` of ``s / c_k``
    examples of each of its classes. Above this size a scarce class (class 0, which every agent sees) can be used up
    by the most restricted agents, and the others make up for it with their other classes.
    :func:`classimbalance_max_shard_size` is the size the split can still fill, evenly or not.

    Example:
        >>> labels = [0] * 10 + [1] * 10 + [2] * 10
        >>> classimbalance_balanced_shard_size(labels, 3, class_counts=[1, 2, 3])
        5
        >>> classimbalance_max_shard_size(labels, 3, class_counts=[1, 2, 3])
        10
    """
    labels, num_agents, num_classes, class_counts = _check_classimbalance(labels, num_agents, num_classes, class_counts)
    examples = np.bincount(labels, minlength=num_classes)

    def fits(size: int) -> bool:
        return all(
            sum(-(-size // c) for c in class_counts if c > label) <= examples[label] for label in range(num_classes)
        )

    low, high = 0, len(labels) // num_agents  # fits(low) holds; the asks grow with the size
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def classimbalance_split(
    labels: Sequence[int] | np.ndarray,
    num_agents: int,
    *,
    num_classes: int | None = None,
    class_counts: Sequence[int] | None = None,
    shard_size: int | None = None,
    seed: Seed = 0,
) -> list[np.ndarray]:
    """Equal shards where agent ``k`` only sees examples of the classes ``0 .. class_counts[k] - 1``.

    Agents are served from the most restricted (fewest classes) to the least, each drawing without replacement
    from what the agents before it left. An agent's shard is spread as evenly as possible over its classes; where a
    class runs short, its other classes make up the difference.

    Args:
        labels: class index of every candidate example; the returned indices point into it.
        num_agents: number of shards.
        num_classes: number of classes; defaults to ``max(labels) + 1``.
        class_counts: classes per agent; defaults to :func:`default_class_counts`.
        shard_size: examples per agent; defaults to ``len(labels) // num_agents``.
        seed: integer seed or ``numpy.random.Generator``.

    Raises:
        ValueError: if an entry of ``class_counts`` lies outside ``[1, num_classes]``, or if an agent cannot get
            ``shard_size`` examples of its classes.
    """
    labels, num_agents, num_classes, class_counts = _check_classimbalance(labels, num_agents, num_classes, class_counts)
    shard_size = len(labels) // num_agents if shard_size is None else shard_size
    shard_size = check_int("shard_size", shard_size, minimum=1)
    rng = as_generator(seed)

    pools = [rng.permutation(np.flatnonzero(labels == label)) for label in range(num_classes)]
    used = [0] * num_classes
    shards: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * num_agents
    for agent in sorted(range(num_agents), key=lambda k: (class_counts[k], k)):
        classes = list(range(class_counts[agent]))
        left = [len(pools[label]) - used[label] for label in classes]
        if sum(left) < shard_size:
            largest = classimbalance_max_shard_size(
                labels, num_agents, num_classes=num_classes, class_counts=class_counts
            )
            raise ValueError(
                f"classimbalance split: agent {agent} (classes {classes}) needs {shard_size} examples, but only "
                f"{sum(left)} examples of its classes are available (after the agents with fewer classes took "
                f"theirs). Lower the shard size (`sample_size_cap`; each agent gets `sample_size_cap // num_agents` "
                f"examples; the largest shard every agent can fill is {largest}) or raise `class_counts[{agent}]`."
            )
        takes = _balanced_takes(shard_size, left)
        shards[agent] = np.sort(
            np.concatenate(
                [pools[label][used[label] : used[label] + take] for label, take in zip(classes, takes, strict=True)]
            )
        ).astype(np.int64)
        for label, take in zip(classes, takes, strict=True):
            used[label] += take
    return shards


def dirichlet_split(
    labels: Sequence[int] | np.ndarray,
    num_agents: int,
    *,
    dirichlet_alpha: float = 0.5,
    num_classes: int | None = None,
    seed: Seed = 0,
    max_attempts: int = 100,
) -> list[np.ndarray]:
    r"""Per-class Dirichlet split: the examples of each class go to the agents in proportions
    :math:`p \sim \mathrm{Dir}(\alpha, \dots, \alpha)`, drawn afresh for every class.

    Small :math:`\alpha` gives each agent few classes; large :math:`\alpha` approaches a uniform split. A draw that
    leaves some agent without any example is redrawn, up to ``max_attempts`` times.

    Args:
        labels: class index of every candidate example; the returned indices point into it.
        num_agents: number of shards.
        dirichlet_alpha: concentration :math:`\alpha > 0`.
        num_classes: number of classes; defaults to ``max(labels) + 1``.
        seed: integer seed or ``numpy.random.Generator``.
        max_attempts: how many draws to try before giving up.

    Raises:
        ValueError: if there are fewer examples than agents, or if every draw left some agent empty.
    """
    labels = _check_labels(labels)
    num_samples, num_agents = _check_counts(len(labels), num_agents)
    alpha = check_positive_float("dirichlet_alpha", dirichlet_alpha)
    num_classes = _resolve_num_classes(labels, num_classes)
    max_attempts = check_int("max_attempts", max_attempts, minimum=1)
    rng = as_generator(seed)

    by_class = [np.flatnonzero(labels == label) for label in range(num_classes)]
    for _ in range(max_attempts):
        pieces: list[list[np.ndarray]] = [[] for _ in range(num_agents)]
        for members in by_class:
            if len(members) == 0:
                continue
            shares = rng.dirichlet(np.full(num_agents, alpha))
            cuts = np.round(np.cumsum(shares)[:-1] * len(members)).astype(np.int64)
            for agent, piece in enumerate(np.split(rng.permutation(members), cuts)):
                pieces[agent].append(piece)
        shards = [np.sort(np.concatenate(agent_pieces)).astype(np.int64) for agent_pieces in pieces]
        if min(len(shard) for shard in shards) >= 1:
            return shards
    raise ValueError(
        f"dirichlet split: in {max_attempts} draws with `dirichlet_alpha`={alpha!r}, some agent always got no example "
        f"({num_samples} samples, {num_agents} agents). Raise `dirichlet_alpha` or the number of samples "
        f"(`sample_size_cap`), or lower `num_agents`."
    )


def apply_label_noise(
    labels: Sequence[int] | np.ndarray,
    shard_indices: Sequence[np.ndarray],
    label_noise: Mapping[int, float],
    *,
    num_classes: int | None = None,
    seed: Seed = 0,
) -> np.ndarray:
    """Return a copy of ``labels`` in which a fraction of some agents' examples carry a wrong label.

    For agent ``k`` with fraction ``f = label_noise[k]``, ``round(f * len(shard_indices[k]))`` of its examples (halves
    rounded up), chosen at random, get a class drawn uniformly from the ``num_classes - 1`` classes other than their
    own. Agents are processed in increasing order, so the same seed gives the same labels.

    Args:
        labels: class index of every example that the shard indices point into.
        shard_indices: one index array per agent.
        label_noise: ``{agent: fraction}``, fractions in ``[0, 1]``.
        num_classes: number of classes; defaults to ``max(labels) + 1``.
        seed: integer seed or ``numpy.random.Generator``.

    Example:
        >>> import numpy as np
        >>> labels = np.zeros(10, dtype=np.int64)
        >>> noisy = apply_label_noise(labels, [np.arange(4), np.arange(4, 10)], {1: 0.5}, num_classes=3)
        >>> int((noisy[:4] != 0).sum()), int((noisy[4:] != 0).sum())
        (0, 3)
    """
    labels = _check_labels(labels)
    noise = check_label_noise(dict(label_noise), len(shard_indices))
    num_classes = _resolve_num_classes(labels, num_classes)
    rng = as_generator(seed)

    noisy = labels.copy()
    for agent, fraction in sorted(noise.items()):
        shard = np.asarray(shard_indices[agent], dtype=np.int64)
        count = math.floor(fraction * len(shard) + 0.5)
        if count == 0:
            continue
        if num_classes < 2:
            raise ValueError(
                f"Label noise needs at least 2 classes to pick a wrong one, but `num_classes` is {num_classes} "
                f"(`label_noise`={dict(label_noise)!r})."
            )
        chosen = rng.choice(shard, size=count, replace=False)
        offsets = rng.integers(1, num_classes, size=count)
        noisy[chosen] = (labels[chosen] + offsets) % num_classes
    return noisy


def _cut_permutation(sizes: list[int], seed: Seed) -> list[np.ndarray]:
    order = as_generator(seed).permutation(sum(sizes)).astype(np.int64)
    return [np.sort(shard) for shard in np.split(order, np.cumsum(sizes)[:-1])]


def _balanced_takes(total: int, available: list[int]) -> list[int]:
    """Spread ``total`` over bins as evenly as their ``available`` counts allow (``sum(available) >= total``)."""
    takes = [0] * len(available)
    needed = total
    while needed > 0:
        open_bins = [index for index, count in enumerate(available) if takes[index] < count]
        share, extra = divmod(needed, len(open_bins))
        for position, index in enumerate(open_bins):
            grant = min(share + (1 if position < extra else 0), available[index] - takes[index])
            takes[index] += grant
            needed -= grant
    return takes


def _check_counts(num_samples: int, num_agents: int) -> tuple[int, int]:
    num_agents = check_int("num_agents", num_agents, minimum=1)
    num_samples = check_int("num_samples", num_samples, minimum=0)
    if num_samples < num_agents:
        raise ValueError(
            f"Cannot give each of `num_agents`={num_agents} agents at least one example: only {num_samples} samples. "
            f"Lower `num_agents` or raise the number of samples (`sample_size_cap`)."
        )
    return num_samples, num_agents


def _check_labels(labels: Sequence[int] | np.ndarray) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(
            f"Expected `labels` to be a 1-D array of integer class indices, but got shape {array.shape} and dtype "
            f"{array.dtype}."
        )
    if array.size and array.min() < 0:
        raise ValueError(f"Expected `labels` to be class indices >= 0, but the smallest is {int(array.min())}.")
    return array.astype(np.int64)


def _resolve_num_classes(labels: np.ndarray, num_classes: int | None) -> int:
    observed = int(labels.max()) + 1 if labels.size else 0
    if num_classes is None:
        return max(observed, 1)
    num_classes = check_int("num_classes", num_classes, minimum=1)
    if observed > num_classes:
        raise ValueError(
            f"Expected `num_classes` to exceed every label, but got `num_classes`={num_classes} and a label "
            f"{observed - 1}."
        )
    return num_classes
