"""The round schedule and the RoundStep dataset/sampler, against a plain per-agent loop."""

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from lightning_cgs.data.rounds import RoundSampler, RoundStepDataset
from lightning_cgs.data.schedule import RoundSchedule


def plain_loop_batches(shard_size, batch_size, local_epochs, seed, round_index, agent, drop_last=False):
    """One agent's mini-batches of a round, the way a single-agent training loop would produce them."""
    batches = []
    for epoch in range(local_epochs):
        rng = np.random.default_rng(np.random.SeedSequence([seed, round_index, agent, epoch]))
        order = rng.permutation(shard_size)
        for start in range(0, shard_size, batch_size):
            batch = order[start : start + batch_size]
            if drop_last and len(batch) < batch_size:
                continue
            batches.append((epoch, batch))
    return batches


SHARDS = [7, 20, 3, 16]


@pytest.mark.parametrize("drop_last", [False, True])
def test_plan_equals_plain_loop(drop_last):
    shards = SHARDS if not drop_last else [7, 20, 4, 16]
    schedule = RoundSchedule(shards, batch_size=4, local_epochs=3, seed=11, drop_last=drop_last)
    for round_index in (0, 5):
        plan = schedule.plan(round_index)
        assert len(plan) == schedule.steps_per_round
        for agent, size in enumerate(shards):
            expected = plain_loop_batches(size, 4, 3, 11, round_index, agent, drop_last)
            got = [(item.local_epoch, item.indices) for step in plan for item in step if item.agent == agent]
            assert len(got) == len(expected)
            for (epoch, batch), (expected_epoch, expected_batch) in zip(got, expected, strict=True):
                assert epoch == expected_epoch
                assert np.array_equal(batch, expected_batch)


def test_steps_per_agent_and_inactivity():
    schedule = RoundSchedule(SHARDS, batch_size=4, local_epochs=3, seed=0)
    expected = [3 * math.ceil(size / 4) for size in SHARDS]
    assert schedule.steps_per_agent == expected == [6, 15, 3, 12]
    assert schedule.steps_per_round == 15
    for step_index, step in enumerate(schedule.plan(0)):
        active = [item.agent for item in step]
        assert active == [agent for agent in range(4) if step_index < expected[agent]]


def test_every_example_once_per_local_epoch():
    schedule = RoundSchedule(SHARDS, batch_size=4, local_epochs=3, seed=2)
    seen = {(agent, epoch): [] for agent in range(4) for epoch in range(3)}
    for step in schedule.plan(1):
        for item in step:
            seen[item.agent, item.local_epoch].extend(item.indices.tolist())
    for (agent, _), indices in seen.items():
        assert sorted(indices) == list(range(SHARDS[agent]))


def test_epochs_and_rounds_reshuffle_and_seed_matters():
    schedule = RoundSchedule([50], batch_size=50, local_epochs=2, seed=0)
    first, second = (step[0].indices for step in schedule.plan(0))
    assert not np.array_equal(first, second)
    assert not np.array_equal(first, schedule.plan(1)[0][0].indices)
    assert np.array_equal(first, schedule.plan(0)[0][0].indices)
    assert np.array_equal(first, RoundSchedule([50], 50, 2, seed=0).step(0, 0)[0].indices)
    assert not np.array_equal(first, RoundSchedule([50], 50, 2, seed=1).step(0, 0)[0].indices)


def test_drop_last_counts_full_batches_only():
    schedule = RoundSchedule([9, 4], batch_size=4, local_epochs=2, seed=0, drop_last=True)
    assert schedule.steps_per_agent == [4, 2]
    assert all(len(item.indices) == 4 for step in schedule.plan(0) for item in step)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, r"Expected `batch_size` to be an integer >= 1, but got 0"),
        ({"batch_size": 2.5}, TypeError, r"Expected `batch_size` to be an integer >= 1, but got 2.5"),
        ({"local_epochs": 0}, ValueError, r"Expected `local_epochs` to be an integer >= 1, but got 0"),
        ({"seed": -3}, ValueError, r"Expected `seed` to be an integer >= 0, but got -3"),
        ({"shard_sizes": []}, ValueError, r"Expected `shard_sizes` to list at least one agent, but got an empty list"),
        ({"shard_sizes": [3, 0]}, ValueError, r"`shard_sizes` to be an integer >= 1, but agent 1 has 0"),
        (
            {"shard_sizes": [8, 3], "drop_last": True},
            ValueError,
            r"With `drop_last`=True every shard needs at least `batch_size`=4 examples, but agent 1 has 3",
        ),
    ],
)
def test_schedule_rejects_bad_arguments(kwargs, error, match):
    arguments = {"shard_sizes": [8, 8], "batch_size": 4, "local_epochs": 1, "seed": 0} | kwargs
    with pytest.raises(error, match=match):
        RoundSchedule(**arguments)


def test_step_out_of_range():
    schedule = RoundSchedule([8], batch_size=4, local_epochs=1)
    with pytest.raises(IndexError, match=r"Expected `step_index` in \[0, 1\] \(`steps_per_round`=2\), but got 2"):
        schedule.step(0, 2)
    with pytest.raises(ValueError, match=r"Expected `round_index` to be an integer >= 0, but got -1"):
        schedule.step(-1, 0)


# --- RoundStep dataset/sampler ---


def make_round_dataset(shard_sizes=(7, 20, 3, 16), batch_size=4, local_epochs=2, seed=0):
    total = sum(shard_sizes)
    order = np.random.default_rng(99).permutation(total)
    shards = [np.sort(part) for part in np.split(order, np.cumsum(shard_sizes)[:-1])]
    inputs = torch.arange(total, dtype=torch.float32).view(total, 1, 1).expand(total, 2, 3).contiguous()
    targets = torch.arange(total) * 10
    schedule = RoundSchedule(list(shard_sizes), batch_size, local_epochs, seed=seed)
    return RoundStepDataset(inputs, targets, shards, schedule), shards


def test_round_step_groups_and_rows():
    dataset, shards = make_round_dataset()
    schedule = dataset.schedule
    assert len(dataset) == schedule.steps_per_round == 10
    for step_index in range(len(dataset)):
        step = dataset[(3, step_index)]
        assert (step.round_index, step.step_index) == (3, step_index)
        assert step.last == (step_index == len(dataset) - 1)

        sizes = [group.batch_size for group in step.groups]
        assert sizes == sorted(set(sizes), reverse=True), "one group per size, largest first"
        agents = torch.cat([group.agents for group in step.groups]).tolist()
        expected = schedule.step(3, step_index)
        assert sorted(agents) == [item.agent for item in expected]
        assert step.num_active == len(expected)

        by_agent = {item.agent: item for item in expected}
        for group in step.groups:
            assert group.inputs.shape == (len(group.agents), group.batch_size, 2, 3)
            assert group.targets.shape == (len(group.agents), group.batch_size)
            assert group.agents.tolist() == sorted(group.agents.tolist())
            for row, (agent, epoch) in enumerate(zip(group.agents.tolist(), group.local_epochs.tolist(), strict=True)):
                item = by_agent[agent]
                rows = shards[agent][item.indices]
                assert epoch == item.local_epoch
                assert group.inputs[row, :, 0, 0].long().tolist() == rows.tolist()
                assert group.targets[row].tolist() == (rows * 10).tolist()


def test_round_step_mixed_sizes_example():
    # Shards 7 and 3 with batch 4: step 0 has both at 4 and 3; step 1 only agent 0 with its last 3.
    dataset, _ = make_round_dataset(shard_sizes=(7, 3), local_epochs=1)
    first, second = dataset[(0, 0)], dataset[(0, 1)]
    assert [(group.agents.tolist(), group.batch_size) for group in first.groups] == [([0], 4), ([1], 3)]
    assert [(group.agents.tolist(), group.batch_size) for group in second.groups] == [([0], 3)]
    assert second.last and not first.last


def test_round_step_dataset_checks_shards_against_schedule():
    schedule = RoundSchedule([3, 2], batch_size=2, local_epochs=1)
    with pytest.raises(ValueError, match=r"Shard 1 holds 3 examples, but the schedule expects 2"):
        RoundStepDataset(torch.zeros(6, 1), torch.zeros(6), [np.arange(3), np.arange(3, 6)], schedule)


def test_round_step_dataset_wants_round_and_step():
    dataset, _ = make_round_dataset()
    with pytest.raises(TypeError, match=r"a key \(round_index, step_index\), as RoundSampler yields, but got 3"):
        dataset[3]


def test_sampler_follows_set_epoch_and_is_left_alone_by_lightning():
    sampler = RoundSampler(3)
    assert isinstance(sampler, DistributedSampler)  # Lightning does not wrap a DistributedSampler under DDP
    assert len(sampler) == 3
    assert list(sampler) == [(0, 0), (0, 1), (0, 2)]
    sampler.set_epoch(4)
    assert list(sampler) == [(4, 0), (4, 1), (4, 2)]


def test_dataloader_over_round_dataset():
    dataset, _ = make_round_dataset()
    sampler = RoundSampler(len(dataset))
    loader = DataLoader(dataset, batch_size=None, sampler=sampler)
    sampler.set_epoch(2)
    steps = list(loader)
    assert len(loader) == len(steps) == 10
    assert [step.round_index for step in steps] == [2] * 10
    assert [step.last for step in steps] == [False] * 9 + [True]
    assert torch.equal(steps[4].groups[0].inputs, dataset[(2, 4)].groups[0].inputs)
