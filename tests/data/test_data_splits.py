"""The splits against hand-worked expectations: sizes, classes per agent, disjointness and seeding."""

import math

import numpy as np
import pytest

from lightning_cgs.data.splits import (
    POWERLAW_EXPONENT,
    apply_label_noise,
    classimbalance_balanced_shard_size,
    classimbalance_max_shard_size,
    classimbalance_split,
    default_class_counts,
    dirichlet_split,
    powerlaw_shard_sizes,
    powerlaw_split,
    uniform_shard_sizes,
    uniform_split,
)


def _assert_partition(shards, num_samples, exhaustive=True):
    """Disjoint, sorted, in range, and (if ``exhaustive``) covering ``range(num_samples)``."""
    joined = np.concatenate(shards)
    assert len(np.unique(joined)) == len(joined), "shards overlap"
    assert joined.min() >= 0 and joined.max() < num_samples
    for shard in shards:
        assert shard.dtype == np.int64
        assert np.all(np.diff(shard) > 0)
    if exhaustive:
        assert sorted(joined.tolist()) == list(range(num_samples))


def _balanced_labels(num_classes=10, per_class=300, seed=0):
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(num_classes), per_class))


# --- uniform ---


@pytest.mark.parametrize(
    ("num_samples", "num_agents", "expected"),
    [(3000, 5, [600] * 5), (11, 3, [4, 4, 3]), (10, 4, [3, 3, 2, 2]), (7, 7, [1] * 7)],
)
def test_uniform_shard_sizes(num_samples, num_agents, expected):
    assert uniform_shard_sizes(num_samples, num_agents) == expected


def test_uniform_split_partitions_and_is_seeded():
    shards = uniform_split(103, 4, seed=3)
    assert [len(shard) for shard in shards] == [26, 26, 26, 25]
    _assert_partition(shards, 103)

    again = uniform_split(103, 4, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(shards, again, strict=True))
    other = uniform_split(103, 4, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(shards, other, strict=True))
    from_generator = uniform_split(103, 4, seed=np.random.default_rng(3))
    assert all(np.array_equal(a, b) for a, b in zip(shards, from_generator, strict=True))


def test_uniform_split_rejects_more_agents_than_samples():
    with pytest.raises(ValueError, match=r"each of `num_agents`=5 agents at least one example: only 4 samples"):
        uniform_split(4, 5)


def test_split_rejects_negative_seed():
    with pytest.raises(ValueError, match=r"Expected `seed` to be an integer >= 0, but got -1"):
        uniform_split(10, 2, seed=-1)


# --- powerlaw ---


def _powerlaw_by_hand(num_samples, num_agents, exponent=1.65911332899):
    """The same recipe, written independently with the math module."""
    low, high = 0.01 ** (1 / exponent), 0.99 ** (1 / exponent)
    step = (high - low) / (num_agents - 1)
    points = [low + k * step for k in range(num_agents)]
    total = sum(points)
    wanted = [math.ceil(num_samples * point / total) for point in points]
    sizes, left = [], num_samples
    for size in wanted:
        sizes.append(min(size, left))
        left -= sizes[-1]
    return sizes


def test_powerlaw_sizes_for_five_agents_and_3000_samples():
    assert powerlaw_shard_sizes(3000, 5) == [71, 336, 600, 865, 1128]
    assert _powerlaw_by_hand(3000, 5) == [71, 336, 600, 865, 1128]
    assert POWERLAW_EXPONENT == 1.65911332899


@pytest.mark.parametrize(("num_samples", "num_agents"), [(3000, 5), (6000, 10), (1347, 3), (500, 4), (12000, 20)])
def test_powerlaw_sizes_match_hand_computation(num_samples, num_agents):
    sizes = powerlaw_shard_sizes(num_samples, num_agents)
    assert sizes == _powerlaw_by_hand(num_samples, num_agents)
    assert sum(sizes) == num_samples
    assert sizes == sorted(sizes)


def test_powerlaw_split_partitions_and_is_seeded():
    shards = powerlaw_split(3000, 5, seed=0)
    assert [len(shard) for shard in shards] == [71, 336, 600, 865, 1128]
    _assert_partition(shards, 3000)
    assert all(np.array_equal(a, b) for a, b in zip(shards, powerlaw_split(3000, 5, seed=0), strict=True))
    assert not np.array_equal(shards[0], powerlaw_split(3000, 5, seed=1)[0])


def test_powerlaw_rejects_too_few_samples():
    # Ceiling the 20 shares of 25 samples overshoots so much that the last agents would get nothing.
    with pytest.raises(ValueError, match=r"powerlaw split: 25 samples are too few for 20 agents"):
        powerlaw_shard_sizes(25, 20)


# --- classimbalance ---


def test_default_class_counts():
    assert default_class_counts(5, 10) == [1, 3, 5, 7, 10]
    assert default_class_counts(2, 10) == [1, 10]
    assert default_class_counts(10, 10) == list(range(1, 11))


def test_classimbalance_classes_per_agent_and_balance():
    labels = _balanced_labels(per_class=300)
    shards = classimbalance_split(labels, 5, shard_size=200, seed=0)
    assert [len(shard) for shard in shards] == [200] * 5
    _assert_partition(shards, len(labels), exhaustive=False)

    counts = np.stack([np.bincount(labels[shard], minlength=10) for shard in shards])
    for agent, num_seen in enumerate([1, 3, 5, 7, 10]):
        assert set(np.unique(labels[shards[agent]]).tolist()) <= set(range(num_seen))
    # Worked by hand. Agent 0 takes 200 zeros. Agent 1 spreads 200 over classes 0-2: 67, 67, 66. Agent 2 wants 40
    # of each of classes 0-4, but only 300 - 200 - 67 = 33 zeros are left, so the 7 missing go to classes 1-4.
    # No zero is left for agent 3: its 200 go to classes 1-6 (34, 34, 33, 33, 33, 33); agent 4 spreads its 200 over
    # classes 1-9 (23, 23, then 22 each).
    assert counts[0].tolist() == [200] + [0] * 9
    assert counts[1].tolist() == [67, 67, 66] + [0] * 7
    assert counts[2].tolist() == [33, 42, 42, 42, 41] + [0] * 5
    assert counts[3].tolist() == [0, 34, 34, 33, 33, 33, 33, 0, 0, 0]
    assert counts[4].tolist() == [0, 23, 23] + [22] * 7


def test_classimbalance_custom_class_counts_and_seeding():
    labels = _balanced_labels(per_class=300)
    shards = classimbalance_split(labels, 3, class_counts=[10, 2, 2], shard_size=250, seed=1)
    assert [sorted(set(labels[shard].tolist())) for shard in shards] == [list(range(10)), [0, 1], [0, 1]]
    _assert_partition(shards, len(labels), exhaustive=False)
    again = classimbalance_split(labels, 3, class_counts=[10, 2, 2], shard_size=250, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(shards, again, strict=True))
    other = classimbalance_split(labels, 3, class_counts=[10, 2, 2], shard_size=250, seed=2)
    assert not np.array_equal(shards[0], other[0])


def test_classimbalance_serves_the_most_restricted_agent_first():
    # Were agent 0 (all classes) served first, it would take about 30 zeros and leave agent 1 short of 300.
    labels = _balanced_labels(per_class=300)
    shards = classimbalance_split(labels, 2, class_counts=[10, 1], shard_size=300, seed=0)
    assert set(labels[shards[1]].tolist()) == {0}
    assert 0 not in set(labels[shards[0]].tolist())


def test_classimbalance_default_shard_size_is_an_equal_share():
    labels = _balanced_labels(num_classes=2, per_class=500)
    shards = classimbalance_split(labels, 2, seed=0)
    assert [len(shard) for shard in shards] == [500, 500]
    assert set(labels[shards[0]].tolist()) == {0}


def test_classimbalance_infeasible_names_agent_classes_and_remedy():
    labels = _balanced_labels(per_class=300)
    with pytest.raises(
        ValueError,
        match=r"agent 0 \(classes \[0\]\) needs 400 examples, but only 300 examples of its classes are available.*"
        r"`sample_size_cap`.*raise `class_counts\[0\]`",
    ):
        classimbalance_split(labels, 5, shard_size=400)


def test_classimbalance_infeasible_later_agent():
    # Both agents see only zeros; agent 0 takes 200 of the 300 first, leaving 100 for agent 1.
    labels = _balanced_labels(per_class=300)
    with pytest.raises(ValueError, match=r"agent 1 \(classes \[0\]\) needs 200 examples, but only 100"):
        classimbalance_split(labels, 2, class_counts=[1, 1], shard_size=200)


def test_classimbalance_max_shard_size_by_hand():
    labels = _balanced_labels(per_class=300)
    # Default counts [1, 3, 5, 7, 10]: one agent on 300 zeros; two on 900; three on 1500; four on 2100; five on 3000.
    assert classimbalance_max_shard_size(labels, 5) == min(300, 900 // 2, 1500 // 3, 2100 // 4, 3000 // 5) == 300
    assert classimbalance_max_shard_size(labels, 2, class_counts=[1, 1]) == 150
    assert classimbalance_max_shard_size(labels, 3, class_counts=[10, 2, 2]) == min(600 // 2, 3000 // 3)


def test_classimbalance_max_shard_size_is_the_largest_the_split_serves():
    """Against brute force: the greedy split succeeds at the bound and fails one above it."""
    rng = np.random.default_rng(0)
    for _ in range(25):
        num_classes, num_agents = int(rng.integers(2, 7)), int(rng.integers(2, 6))
        labels = rng.choice(num_classes, size=int(rng.integers(40, 200)), p=rng.dirichlet(np.ones(num_classes)))
        class_counts = rng.integers(1, num_classes + 1, size=num_agents).tolist()
        bound = classimbalance_max_shard_size(labels, num_agents, num_classes=num_classes, class_counts=class_counts)
        largest = 0
        for size in range(1, len(labels) // num_agents + 1):
            try:
                classimbalance_split(
                    labels, num_agents, num_classes=num_classes, class_counts=class_counts, shard_size=size
                )
                largest = size
            except ValueError:
                pass
        assert bound == largest, (labels.tolist(), class_counts)


def test_classimbalance_balanced_shard_size_by_hand():
    labels = _balanced_labels(per_class=300)
    # Default counts [1, 3, 5, 7, 10]: class 0 is asked by all five agents. At 168 they ask
    # 168 + 56 + 34 + 24 + 17 = 299 <= 300 zeros; at 169, 169 + 57 + 34 + 25 + 17 = 302 > 300.
    assert classimbalance_balanced_shard_size(labels, 5) == 168
    # Ten agents on classes 0 and 1 ask 10 * ceil(s / 2) of each: 300 at s = 60, 310 at s = 61.
    assert classimbalance_balanced_shard_size(labels, 10, class_counts=[2] * 10) == 60
    # Two of them: 2 * ceil(s / 2) <= 300 up to s = 300.
    assert classimbalance_balanced_shard_size(labels, 2, class_counts=[2, 2]) == 300


def test_classimbalance_balanced_shard_size_gives_even_shards():
    """Against a plain loop over sizes and classes; at the size found, the split spreads every agent evenly."""
    rng = np.random.default_rng(1)
    for _ in range(25):
        num_classes, num_agents = int(rng.integers(2, 7)), int(rng.integers(2, 6))
        labels = rng.choice(num_classes, size=int(rng.integers(40, 300)), p=rng.dirichlet(np.ones(num_classes) * 3))
        class_counts = rng.integers(1, num_classes + 1, size=num_agents).tolist()
        size = classimbalance_balanced_shard_size(
            labels, num_agents, num_classes=num_classes, class_counts=class_counts
        )
        per_class = [int((labels == j).sum()) for j in range(num_classes)]
        largest = 0
        for candidate in range(1, len(labels) // num_agents + 1):
            asks = [sum(-(-candidate // c) for c in class_counts if c > j) for j in range(num_classes)]
            if all(ask <= have for ask, have in zip(asks, per_class, strict=True)):
                largest = candidate
        assert size == largest, (labels.tolist(), class_counts)
        if size == 0:
            continue
        shards = classimbalance_split(
            labels, num_agents, num_classes=num_classes, class_counts=class_counts, shard_size=size, seed=0
        )
        for shard, seen in zip(shards, class_counts, strict=True):
            histogram = np.bincount(labels[shard], minlength=num_classes)
            assert histogram[seen:].sum() == 0
            assert histogram[:seen].max() - histogram[:seen].min() <= 1, (histogram, seen, size)


@pytest.mark.parametrize(
    ("class_counts", "match"),
    [
        ([1, 11], r"Expected `class_counts\[1\]` to be an integer in \[1, 10, the number of classes\], but got 11"),
        ([0, 3], r"Expected `class_counts\[0\]` to be an integer in \[1, 10, the number of classes\], but got 0"),
        ([1, 2, 3], r"Expected `class_counts` to hold one entry per agent \(2 entries.*but got 3 entries"),
    ],
)
def test_classimbalance_rejects_bad_class_counts(class_counts, match):
    with pytest.raises(ValueError, match=match):
        classimbalance_split(_balanced_labels(), 2, class_counts=class_counts)


def test_classimbalance_rejects_non_integer_labels():
    with pytest.raises(ValueError, match=r"Expected `labels` to be a 1-D array of integer class indices"):
        classimbalance_split(np.array([0.5, 1.0]), 2)


# --- dirichlet ---


def test_dirichlet_split_partitions_every_example():
    labels = _balanced_labels(per_class=100)
    shards = dirichlet_split(labels, 6, dirichlet_alpha=0.5, seed=0)
    assert len(shards) == 6
    assert min(len(shard) for shard in shards) >= 1
    _assert_partition(shards, len(labels))


def test_dirichlet_split_is_seeded():
    labels = _balanced_labels(per_class=100)
    first = dirichlet_split(labels, 4, dirichlet_alpha=0.3, seed=5)
    again = dirichlet_split(labels, 4, dirichlet_alpha=0.3, seed=5)
    other = dirichlet_split(labels, 4, dirichlet_alpha=0.3, seed=6)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_dirichlet_alpha_controls_skew():
    labels = _balanced_labels(per_class=1000)

    def mean_class_share_spread(alpha):
        shards = dirichlet_split(labels, 5, dirichlet_alpha=alpha, seed=0)
        counts = np.stack([np.bincount(labels[shard], minlength=10) for shard in shards])
        return np.abs(counts / 1000 - 1 / 5).mean()  # each class's share per agent vs. the uniform 1/5

    assert mean_class_share_spread(1000.0) < 0.02
    assert mean_class_share_spread(0.1) > 0.15


def test_dirichlet_rejects_bad_alpha():
    with pytest.raises(ValueError, match=r"Expected `dirichlet_alpha` to be a finite number > 0, but got 0"):
        dirichlet_split(_balanced_labels(), 3, dirichlet_alpha=0)


def test_dirichlet_gives_up_clearly_when_agents_stay_empty():
    labels = np.random.default_rng(0).integers(0, 10, 60)
    with pytest.raises(ValueError, match=r"in 3 draws with `dirichlet_alpha`=0.001, some agent always got no example"):
        dirichlet_split(labels, 50, dirichlet_alpha=0.001, max_attempts=3)


# --- label noise ---


def test_label_noise_flips_exact_fraction_to_other_classes():
    labels = _balanced_labels(per_class=100)
    shards = uniform_split(len(labels), 4, seed=0)
    noisy = apply_label_noise(labels, shards, {1: 0.3, 3: 1.0}, num_classes=10, seed=0)

    changed = noisy != labels
    assert changed[shards[0]].sum() == 0 and changed[shards[2]].sum() == 0
    assert changed[shards[1]].sum() == round(0.3 * 250) == 75
    assert changed[shards[3]].all()
    assert noisy.min() >= 0 and noisy.max() < 10
    assert labels.tolist() == _balanced_labels(per_class=100).tolist(), "the input labels must not change"


def test_label_noise_rounds_half_up_and_is_seeded():
    labels = np.zeros(20, dtype=np.int64)
    shards = [np.arange(10), np.arange(10, 15), np.arange(15, 20)]
    noisy = apply_label_noise(labels, shards, {1: 0.5, 2: 0.0}, num_classes=2, seed=1)
    assert (noisy[10:15] == 1).sum() == 3  # 2.5 rounds up to 3; with 2 classes the wrong class is always 1
    assert (noisy[:10] == 0).all() and (noisy[15:] == 0).all()

    labels = _balanced_labels(per_class=50)
    shards = uniform_split(len(labels), 2, seed=0)
    first = apply_label_noise(labels, shards, {0: 0.4}, seed=7)
    assert np.array_equal(first, apply_label_noise(labels, shards, {0: 0.4}, seed=7))
    assert not np.array_equal(first, apply_label_noise(labels, shards, {0: 0.4}, seed=8))


def test_label_noise_new_class_is_uniform_over_the_others():
    labels = np.zeros(30000, dtype=np.int64)
    noisy = apply_label_noise(labels, [np.arange(30000)], {0: 1.0}, num_classes=4, seed=0)
    counts = np.bincount(noisy, minlength=4)
    assert counts[0] == 0
    assert np.allclose(counts[1:] / 30000, 1 / 3, atol=0.02)


@pytest.mark.parametrize(
    ("noise", "match"),
    [
        ({0: 1.5}, r"Expected `label_noise\[0\]` to be a fraction in \[0, 1\], but got 1.5"),
        ({0: -0.1}, r"Expected `label_noise\[0\]` to be a fraction in \[0, 1\], but got -0.1"),
        ({2: 0.1}, r"Expected the keys of `label_noise` to be agent indices in \[0, 1\] \(`num_agents`=2\), but got 2"),
    ],
)
def test_label_noise_rejects_bad_mapping(noise, match):
    with pytest.raises(ValueError, match=match):
        apply_label_noise(np.zeros(4, dtype=np.int64), [np.arange(2), np.arange(2, 4)], noise)


def test_label_noise_needs_two_classes():
    with pytest.raises(ValueError, match=r"Label noise needs at least 2 classes.*`num_classes` is 1"):
        apply_label_noise(np.zeros(4, dtype=np.int64), [np.arange(4)], {0: 0.5}, num_classes=1)
