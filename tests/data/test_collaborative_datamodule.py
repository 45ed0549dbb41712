"""CollaborativeDataModule end to end on the digits, on user datasets, under a Trainer, and its error messages."""

import math

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from lightning_cgs.data import (
    CollaborativeDataModule,
    RoundStep,
    default_class_counts,
    load_digits_tensors,
    powerlaw_shard_sizes,
)
from tests.helpers import quiet_trainer


@pytest.fixture(scope="module")
def clean_digits():
    return load_digits_tensors()


def make_datamodule(**kwargs):
    data = CollaborativeDataModule(**kwargs)
    data.setup("fit")
    return data


def run_round(data, round_index):
    loader = data.train_dataloader()
    loader.sampler.set_epoch(round_index)
    return list(loader)


# --- end to end ---


def test_digits_uniform_round(clean_digits):
    data = make_datamodule(dataset="digits", num_agents=5, batch_size=32, local_epochs=2, seed=0)
    # No cap: min(5 * 600, 1347) = 1347 examples, dealt 270, 270, 269, 269, 269.
    assert data.shard_sizes == [270, 270, 269, 269, 269]
    assert data.num_classes == 10 and data.input_shape == (1, 8, 8)
    assert sorted(torch.cat(data.shard_indices).tolist()) == list(range(1347))
    assert data.class_counts_per_agent.shape == (5, 10)
    assert data.class_counts_per_agent.sum(dim=1).tolist() == data.shard_sizes

    steps = run_round(data, 0)
    # 2 * ceil(270 / 32) = 2 * ceil(269 / 32) = 18 steps, every agent active at each.
    assert len(data.train_dataloader()) == data.schedule.steps_per_round == len(steps) == 18
    assert all(isinstance(step, RoundStep) and step.num_active == 5 for step in steps)
    assert [step.last for step in steps] == [False] * 17 + [True]
    assert [step.step_index for step in steps] == list(range(18))
    # The last batch of each pass: 270 % 32 = 14 for agents 0-1, 269 % 32 = 13 for agents 2-4.
    for step_index in (8, 17):
        groups = steps[step_index].groups
        assert [(group.agents.tolist(), group.batch_size) for group in groups] == [([0, 1], 14), ([2, 3, 4], 13)]
    group = steps[0].groups[0]
    assert group.inputs.shape == (5, 32, 1, 8, 8) and group.inputs.dtype == torch.float32
    assert group.targets.shape == (5, 32) and group.targets.dtype == torch.int64
    assert group.local_epochs.tolist() == [0] * 5 and steps[9].groups[0].local_epochs.tolist() == [1] * 5

    # Each agent meets each of its examples once per local epoch, with the true inputs and labels.
    inputs_to_row = {tuple(row.flatten().tolist()): index for index, row in enumerate(clean_digits.train_inputs)}
    for agent, shard in enumerate(data.shard_indices):
        rows = []
        for step in steps:
            for group in step.groups:
                if agent in group.agents.tolist():
                    position = group.agents.tolist().index(agent)
                    batch_rows = [inputs_to_row[tuple(x.flatten().tolist())] for x in group.inputs[position]]
                    assert group.targets[position].tolist() == clean_digits.train_targets[batch_rows].tolist()
                    rows += batch_rows
        assert sorted(rows) == sorted(shard.tolist() * 2)


def test_rounds_differ_and_repeat(clean_digits):
    data = make_datamodule(num_agents=3, batch_size=64, local_epochs=1)
    first, again, second = run_round(data, 0), run_round(data, 0), run_round(data, 1)
    assert torch.equal(first[0].groups[0].inputs, again[0].groups[0].inputs)
    assert not torch.equal(first[0].groups[0].inputs, second[0].groups[0].inputs)
    assert second[0].round_index == 1


def test_test_dataloader(clean_digits):
    data = make_datamodule(num_agents=2, eval_batch_size=100)
    batches = list(data.test_dataloader())
    assert [len(targets) for _, targets in batches] == [100, 100, 100, 100, 50]
    assert batches[0][0].shape == (100, 1, 8, 8)
    assert torch.equal(torch.cat([targets for _, targets in batches]), clean_digits.test_targets)
    assert not hasattr(CollaborativeDataModule, "val_dataloader") or (
        CollaborativeDataModule.val_dataloader is L.LightningDataModule.val_dataloader
    )


def test_setup_is_idempotent_and_seeded():
    data = make_datamodule(num_agents=4, split="dirichlet", seed=3)
    shards = [shard.clone() for shard in data.shard_indices]
    data.setup("test")
    assert all(torch.equal(a, b) for a, b in zip(shards, data.shard_indices, strict=True))
    same = make_datamodule(num_agents=4, split="dirichlet", seed=3)
    other = make_datamodule(num_agents=4, split="dirichlet", seed=4)
    assert all(torch.equal(a, b) for a, b in zip(shards, same.shard_indices, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(shards, other.shard_indices, strict=True))


def test_sample_size_cap_and_powerlaw():
    data = make_datamodule(num_agents=5, split="powerlaw", sample_size_cap=1000)
    assert data.shard_sizes == powerlaw_shard_sizes(1000, 5)
    assert len(set(torch.cat(data.shard_indices).tolist())) == 1000


def test_classimbalance_on_digits(clean_digits):
    data = make_datamodule(num_agents=5, split="classimbalance", sample_size_cap=500)
    assert data.shard_sizes == [100] * 5
    for agent, num_seen in enumerate([1, 3, 5, 7, 10]):
        labels = clean_digits.train_targets[data.shard_indices[agent]]
        assert int(labels.max()) < num_seen
        assert data.class_counts_per_agent[agent, num_seen:].sum() == 0
    assert len(set(torch.cat(data.shard_indices).tolist())) == 500

    custom = make_datamodule(num_agents=3, split="classimbalance", sample_size_cap=300, class_counts=[2, 10, 4])
    assert [int(custom.train_targets[shard].max()) + 1 for shard in custom.shard_indices] == [2, 10, 4]


def test_classimbalance_infeasible_on_digits_fails_in_setup():
    # An explicit cap of 1345: 269 examples per agent, but the digits have only about 134 training zeros.
    data = CollaborativeDataModule(num_agents=5, split="classimbalance", sample_size_cap=1345)
    with pytest.raises(
        ValueError,
        match=r"agent 0 \(classes \[0\]\) needs 269 examples, but only 13\d examples.*the largest shard every agent "
        r"can fill is 13\d\)",
    ):
        data.setup("fit")


@pytest.mark.parametrize("num_agents", [2, 5, 10])
def test_classimbalance_default_shards_give_every_agent_all_its_classes_evenly(clean_digits, num_agents):
    # Without a cap, 1347 // N examples per agent (at most 600) cannot be spread evenly over agent 0's only class.
    # Expected: the largest size at which each agent may take ceil(size / c_k) of each of its classes, by trying
    # every size from the top with a plain loop over the classes.
    labels = clean_digits.train_targets.numpy()
    counts = default_class_counts(num_agents, 10)
    per_class = [int((labels == label).sum()) for label in range(10)]
    expected = min(len(labels) // num_agents, 600)
    while any(sum(math.ceil(expected / c) for c in counts if c > j) > per_class[j] for j in range(10)):
        expected -= 1
    assert expected < min(len(labels) // num_agents, 600)  # the default did need to shrink
    data = make_datamodule(num_agents=num_agents, split="classimbalance")
    assert data.shard_sizes == [expected] * num_agents
    for agent, seen in enumerate(counts):  # every class the agent should see, each within one of the others
        histogram = data.class_counts_per_agent[agent]
        assert histogram[seen:].sum() == 0
        assert int(histogram[:seen].max()) - int(histogram[:seen].min()) <= 1
        assert int(histogram[:seen].min()) == expected // seen
    assert len(set(torch.cat(data.shard_indices).tolist())) == expected * num_agents


def test_drop_last_gives_every_step_a_full_batch():
    data = make_datamodule(num_agents=3, split="powerlaw", batch_size=16, local_epochs=2, drop_last=True)
    assert data.shard_sizes == [53, 449, 845]
    steps = run_round(data, 0)
    taken = [0, 0, 0]
    for step in steps:
        for group in step.groups:
            assert group.batch_size == 16  # no shorter last batch
            for agent in group.agents.tolist():
                taken[agent] += 1
    assert taken == [2 * (53 // 16), 2 * (449 // 16), 2 * (845 // 16)]  # E * floor(n / B)
    assert len(steps) == 2 * (845 // 16)


def test_drop_last_with_a_shard_smaller_than_a_batch_fails_in_setup():
    data = CollaborativeDataModule(num_agents=3, split="powerlaw", batch_size=64, drop_last=True)
    with pytest.raises(
        ValueError,
        match=r"With `drop_last`=True every shard needs at least `batch_size`=64 examples, but agent 0 has 53 and "
        r"would never train",
    ):
        data.setup("fit")


def test_drop_last_must_be_a_bool():
    with pytest.raises(TypeError, match=r"Expected `drop_last` to be True or False, but got 'yes'"):
        CollaborativeDataModule(num_agents=3, drop_last="yes")


def test_dirichlet_on_digits():
    data = make_datamodule(num_agents=4, split="dirichlet", dirichlet_alpha=0.2, sample_size_cap=800)
    assert sum(data.shard_sizes) == 800 and min(data.shard_sizes) >= 1


def test_label_noise_through_the_datamodule(clean_digits):
    data = make_datamodule(num_agents=4, label_noise={0: 0.5, 2: 0.1}, batch_size=400, local_epochs=1)
    clean, noisy = clean_digits.train_targets, data.train_targets
    changed = [int((clean[shard] != noisy[shard]).sum()) for shard in data.shard_indices]
    assert data.shard_sizes == [337, 337, 337, 336]
    assert changed == [round(0.5 * 337 + 1e-9), 0, round(0.1 * 337), 0] == [169, 0, 34, 0]
    assert int((clean != noisy).sum()) == 169 + 34
    # The training batches carry the noisy labels.
    group = run_round(data, 0)[0].groups[0]
    rows = data.shard_indices[0]
    assert sorted(group.targets[0].tolist()) == sorted(noisy[rows].tolist())
    assert data.class_counts_per_agent[0].tolist() == torch.bincount(noisy[rows], minlength=10).tolist()


def test_agent_dataset():
    data = make_datamodule(num_agents=3)
    inputs, targets = data.agent_dataset(1).tensors
    assert inputs.shape == (449, 1, 8, 8) and torch.equal(targets, data.train_targets[data.shard_indices[1]])
    with pytest.raises(ValueError, match=r"Expected `agent` to be an integer in \[0, 2\], but got 3"):
        data.agent_dataset(3)


def test_mnist_from_folder(tmp_path, write_fake_mnist):
    write_fake_mnist(tmp_path, num_train=12, num_test=6)
    data = make_datamodule(dataset="mnist", data_dir=str(tmp_path), num_agents=3, batch_size=2, local_epochs=1)
    assert data.shard_sizes == [4, 4, 4] and data.input_shape == (1, 28, 28)
    assert run_round(data, 0)[0].groups[0].inputs.shape == (3, 2, 1, 28, 28)


def test_worker_processes_build_the_same_steps():
    data = make_datamodule(num_agents=2, batch_size=256, local_epochs=1)
    in_process = run_round(data, 1)
    data.num_workers = 1
    in_worker = run_round(data, 1)
    assert len(in_worker) == len(in_process)
    assert torch.equal(in_worker[-1].groups[0].inputs, in_process[-1].groups[0].inputs)


# --- user datasets ---


def test_user_tensor_dataset():
    generator = torch.Generator().manual_seed(0)
    train = TensorDataset(torch.randn(100, 3, generator=generator, dtype=torch.float64), torch.arange(100) % 4)
    test = TensorDataset(torch.randn(20, 3, generator=generator), torch.arange(20) % 4)
    data = make_datamodule(dataset=train, test_dataset=test, num_agents=4, batch_size=10, local_epochs=1)
    assert data.shard_sizes == [25] * 4 and data.input_shape == (3,) and data.num_classes == 4
    assert data.train_inputs.dtype == torch.float32
    steps = run_round(data, 0)
    assert len(steps) == 3 and steps[0].groups[0].inputs.shape == (4, 10, 3)
    assert "dataset" not in data.hparams and "test_dataset" not in data.hparams and "local_epochs" in data.hparams


class PairDataset(Dataset):
    def __init__(self, count, with_targets):
        self.inputs = torch.arange(count * 4, dtype=torch.float32).view(count, 2, 2)
        self.labels = [index % 3 for index in range(count)]
        if with_targets:
            self.targets = self.labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.inputs[index], self.labels[index]


@pytest.mark.parametrize("with_targets", [True, False])
def test_user_map_style_dataset(with_targets):
    data = make_datamodule(
        dataset=PairDataset(30, with_targets), test_dataset=PairDataset(9, with_targets), num_agents=3, local_epochs=1
    )
    assert data.input_shape == (2, 2) and data.num_classes == 3
    assert data.train_targets.tolist() == [index % 3 for index in range(30)]
    assert torch.equal(data.test_inputs, PairDataset(9, False).inputs)


def test_user_dataset_with_fewer_examples_than_agents():
    tiny = TensorDataset(torch.zeros(3, 2), torch.tensor([0, 1, 0]))
    data = CollaborativeDataModule(dataset=tiny, test_dataset=tiny, num_agents=5)
    with pytest.raises(ValueError, match=r"`num_agents`=5 exceeds the 3 training examples of TensorDataset"):
        data.setup("fit")


def test_user_dataset_bad_items():
    class Triples(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return torch.zeros(2), 0, "extra"

    data = CollaborativeDataModule(dataset=Triples(), test_dataset=Triples(), num_agents=2)
    with pytest.raises(TypeError, match=r"Expected the items of `dataset` to be \(input_tensor, int_label\) pairs"):
        data.setup("fit")


def test_user_dataset_class_counts_checked_in_setup():
    train = TensorDataset(torch.zeros(40, 2), torch.arange(40) % 4)
    data = CollaborativeDataModule(
        dataset=train, test_dataset=train, num_agents=2, split="classimbalance", class_counts=[1, 5]
    )
    with pytest.raises(ValueError, match=r"Expected `class_counts\[1\]` to be an integer in \[1, 4, the number of"):
        data.setup("fit")


# --- with Trainer ---


class RecordingModule(L.LightningModule):
    """Takes no real step: records what the datamodule hands to `training_step`."""

    def __init__(self, local_epochs):
        super().__init__()
        self.local_epochs = local_epochs
        self.automatic_optimization = False
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen = []

    def training_step(self, batch, batch_idx):
        self.seen.append((type(batch), batch.round_index, batch.step_index, batch.last, batch_idx))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_sets_round_and_local_epochs_come_from_module():
    data = CollaborativeDataModule(num_agents=3, batch_size=128, seed=1)
    module = RecordingModule(local_epochs=2)
    trainer = quiet_trainer(max_epochs=2)
    trainer.fit(module, data)
    # 449 examples per agent, 2 * ceil(449 / 128) = 8 steps per round.
    assert trainer.num_training_batches == data.schedule.steps_per_round == 8
    assert data.schedule.local_epochs == 2
    expected = [(RoundStep, r, t, t == 7, t) for r in range(2) for t in range(8)]
    assert module.seen == expected


def test_local_epochs_needs_a_trainer_or_a_value():
    data = make_datamodule(num_agents=2)
    with pytest.raises(RuntimeError, match=r"`local_epochs` is None, so it is read from the trainer's LightningModule"):
        data.train_dataloader()


def test_local_epochs_missing_on_module():
    data = make_datamodule(num_agents=2)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(L.LightningModule())
    data.trainer = trainer
    with pytest.raises(ValueError, match=r"LightningModule has no `local_epochs` attribute or hparam"):
        data.train_dataloader()


def test_loaders_need_setup():
    data = CollaborativeDataModule(num_agents=2, local_epochs=1)
    with pytest.raises(RuntimeError, match=r"`train_dataloader` needs the data: call `setup\(\)`"):
        data.train_dataloader()
    with pytest.raises(RuntimeError, match=r"`shard_sizes` needs the data: call `setup\(\)`"):
        data.shard_sizes  # noqa: B018


# --- bad input ---


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_agents": 1}, ValueError, r"Expected `num_agents` to be an integer >= 2, but got 1"),
        ({"num_agents": "5"}, TypeError, r"Expected `num_agents` to be an integer >= 2, but got '5'"),
        ({"batch_size": 0}, ValueError, r"Expected `batch_size` to be an integer >= 1, but got 0"),
        ({"eval_batch_size": 0}, ValueError, r"Expected `eval_batch_size` to be an integer >= 1, but got 0"),
        ({"num_workers": -1}, ValueError, r"Expected `num_workers` to be an integer >= 0, but got -1"),
        ({"seed": -1}, ValueError, r"Expected `seed` to be an integer >= 0, but got -1"),
        ({"local_epochs": 0}, ValueError, r"Expected `local_epochs` to be an integer >= 1, but got 0"),
        (
            {"split": "iid"},
            ValueError,
            r"Expected `split` to be one of \['uniform', 'powerlaw', 'classimbalance', 'dirichlet'\], but got 'iid'",
        ),
        (
            {"dataset": "cifar10"},
            ValueError,
            r"Expected `dataset` to be one of \['digits', 'fashion_mnist', 'mnist'\] or a torch Dataset, "
            r"but got 'cifar10'",
        ),
        ({"dataset": 42}, TypeError, r"Expected `dataset` to be one of 'digits', .* or a torch Dataset, but got 42"),
        ({"dirichlet_alpha": 0}, ValueError, r"Expected `dirichlet_alpha` to be a finite number > 0, but got 0"),
        ({"dirichlet_alpha": -1.0}, ValueError, r"`dirichlet_alpha` to be a finite number > 0, but got -1.0"),
        ({"dirichlet_alpha": float("inf")}, ValueError, r"`dirichlet_alpha` to be a finite number > 0, but got inf"),
        (
            {"label_noise": {5: 0.1}},
            ValueError,
            r"Expected the keys of `label_noise` to be agent indices in \[0, 4\] \(`num_agents`=5\), but got 5",
        ),
        (
            {"label_noise": {0: 1.5}},
            ValueError,
            r"Expected `label_noise\[0\]` to be a fraction in \[0, 1\], but got 1.5",
        ),
        (
            {"label_noise": [0.1]},
            TypeError,
            r"Expected `label_noise` to be a dict \{agent: fraction\}, but got \[0.1\]",
        ),
        (
            {"sample_size_cap": 3},
            ValueError,
            r"Expected `sample_size_cap` to be None or an integer >= `num_agents`=5 .*, but got 3",
        ),
        (
            {"class_counts": [1, 2, 3, 4, 5]},
            ValueError,
            r"`class_counts` is only used by split='classimbalance', but got split='uniform'",
        ),
        (
            {"split": "classimbalance", "class_counts": [1, 2, 3, 4, 11]},
            ValueError,
            r"Expected `class_counts\[4\]` to be an integer in \[1, 10, the number of classes\], but got 11",
        ),
        (
            {"split": "classimbalance", "class_counts": [0, 2, 3, 4, 5]},
            ValueError,
            r"Expected `class_counts\[0\]` to be an integer in \[1, 10, the number of classes\], but got 0",
        ),
        (
            {"split": "classimbalance", "class_counts": [1, 2]},
            ValueError,
            r"Expected `class_counts` to hold one entry per agent \(5 entries, `num_agents`=5\), but got 2 entries",
        ),
        (
            {"test_dataset": TensorDataset(torch.zeros(2, 1), torch.zeros(2))},
            ValueError,
            r"`test_dataset` is only used with a user Dataset as `dataset`; dataset 'digits' has its own test split",
        ),
        (
            {"dataset": TensorDataset(torch.zeros(2, 1), torch.zeros(2))},
            ValueError,
            r"Expected `test_dataset` to be a torch Dataset when `dataset` is one, but got None",
        ),
        ({"dataset": "mnist"}, ValueError, r"`data_dir` is required for dataset 'mnist'.*but got None"),
        (
            {"dataset": "mnist", "data_dir": "/no/such/folder"},
            FileNotFoundError,
            r"`data_dir` must be an existing folder, but got '/no/such/folder'",
        ),
    ],
)
def test_constructor_rejects(kwargs, error, match):
    with pytest.raises(error, match=match):
        CollaborativeDataModule(**kwargs)


def test_data_dir_without_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not hold the expected IDX files.*train-images-idx3-ubyte\.gz"):
        CollaborativeDataModule(dataset="fashion_mnist", data_dir=str(tmp_path))


def test_data_dir_ignored_for_digits_warns(tmp_path):
    with pytest.warns(UserWarning, match=r"`data_dir`=.* is ignored: dataset 'digits' is not read from a folder"):
        CollaborativeDataModule(dataset="digits", data_dir=str(tmp_path))


def test_cap_larger_than_training_set_fails_in_setup():
    data = CollaborativeDataModule(num_agents=5, sample_size_cap=5000)
    with pytest.raises(ValueError, match=r"`sample_size_cap` to be at most the 1347 training examples of digits"):
        data.setup("fit")


def test_setup_logs_one_summary(caplog):
    import logging

    with caplog.at_level(logging.INFO):
        make_datamodule(num_agents=2, label_noise={1: 0.2})
    summaries = [record.getMessage() for record in caplog.records if "CollaborativeDataModule" in record.getMessage()]
    assert summaries == [
        "CollaborativeDataModule: dataset=digits, num_agents=2, split=uniform, shard_sizes=[600, 600] "
        "(1200 of 1347 training examples, 450 test examples), label_noise={1: 0.2}"
    ]


def test_user_dataset_uses_numpy_labels_too():
    train = TensorDataset(torch.zeros(10, 2), torch.from_numpy(np.arange(10) % 2))
    data = make_datamodule(dataset=train, test_dataset=train, num_agents=2)
    assert data.num_classes == 2
