"""The LightningDataModule of collaborative training: the data, its split among the agents, and the round loader."""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lightning_cgs.data._checks import (
    check_class_counts,
    check_int,
    check_label_noise,
    check_positive_float,
)
from lightning_cgs.data.datasets import DatasetTensors, get_dataset_info, resolve_data_dir
from lightning_cgs.data.materialise import materialise_dataset
from lightning_cgs.data.rounds import RoundSampler, RoundStepDataset
from lightning_cgs.data.schedule import RoundSchedule, check_full_batches
from lightning_cgs.data.splits import (
    SPLIT_NAMES,
    SplitName,
    apply_label_noise,
    classimbalance_balanced_shard_size,
    classimbalance_split,
    dirichlet_split,
    powerlaw_split,
    uniform_split,
)

DEFAULT_SAMPLES_PER_AGENT = 600
"""Without ``sample_size_cap``, the split uses ``num_agents * 600`` training examples (or all, if fewer)."""


@dataclass
class _Prepared:
    train_inputs: Tensor
    train_targets: Tensor
    test_inputs: Tensor
    test_targets: Tensor
    num_classes: int
    shards: list[np.ndarray]
    class_counts_per_agent: Tensor


class CollaborativeDataModule(L.LightningDataModule):
    """Loads a dataset into memory, splits its training set among ``num_agents`` agents and feeds them together.

    ``setup`` takes a seeded shuffle of ``sample_size_cap`` training examples and divides them with ``split``:

    - ``"uniform"``: equal shards.
    - ``"powerlaw"``: shard sizes spaced between the 1 % and 99 % quantiles of a power law (for 5 agents and 3000
      examples: 71, 336, 600, 865, 1128).
    - ``"classimbalance"``: equal shards of ``sample_size_cap // num_agents`` examples; agent ``k`` sees only the first
      ``class_counts[k]`` classes (default: evenly spaced from 1 to the number of classes). So that the restricted
      agents can find enough examples of their few classes, these shards are drawn from the whole training set.
      Without ``sample_size_cap``, the shards shrink, where needed, to the largest size at which every agent gets
      an even share of each of its classes (:func:`classimbalance_balanced_shard_size`; on the digits with 5 agents:
      74 each). Larger shards would let the one-class agent take all the zeros, leaving none to the others.
    - ``"dirichlet"``: the examples of each class are divided in ``Dirichlet(dirichlet_alpha)`` proportions.

    ``label_noise`` then gives a fraction of some agents' examples a wrong label. The test set is the dataset's own
    test split, shared by all agents. Everything is derived from ``seed``; the same seed gives the same shards and
    the same mini-batches.

    One Lightning epoch is one round. Each item of :meth:`train_dataloader` is a
    :class:`~lightning_cgs.data.batch.RoundStep` holding one mini-batch for every agent still making its
    ``local_epochs`` passes over its shard; its length is the number of steps of a round.

    Args:
        dataset: ``"digits"`` (scikit-learn's 8x8 digits, no download), ``"mnist"``, ``"fashion_mnist"``, or a
            map-style ``Dataset`` of ``(input_tensor, int_label)`` items (a ``TensorDataset`` of inputs and labels
            works too). A user dataset is read whole into memory once in ``setup``, so it must fit; its labels come
            from its ``targets`` attribute if it has one.
        num_agents: number of agents, at least 2.
        split: how the training examples are divided, see above.
        batch_size: mini-batch size of every agent.
        sample_size_cap: training examples to divide; ``None`` means ``min(num_agents * 600, len(train))`` (for
            ``"classimbalance"``, see above).
        test_dataset: the test split of a user ``dataset``; required then, and only then.
        data_dir: folder of the IDX files for ``"mnist"`` (required) and ``"fashion_mnist"`` (default
            ``/usr/share/datasets/fashion-mnist``), each plain or gzipped.
        class_counts: classes seen by each agent, for ``split="classimbalance"`` only.
        dirichlet_alpha: Dirichlet concentration for ``split="dirichlet"``; smaller is more skewed.
        label_noise: ``{agent: fraction}``: that fraction of the agent's examples gets a random wrong label.
        local_epochs: passes over its shard that each agent makes per round; ``None`` reads ``local_epochs`` from
            the trainer's LightningModule when :meth:`train_dataloader` is called.
        drop_last: drop the last, shorter mini-batch of every pass, so that every step of every agent averages
            ``batch_size`` examples (a shard of ``k * batch_size + 1`` examples would otherwise end each pass with a
            step on one example); every shard then needs at least ``batch_size`` examples.
        eval_batch_size: batch size of the test loader.
        num_workers: worker processes of both loaders.
        seed: non-negative integer from which the subsample, the split, the label noise and the batch order derive.

    Raises:
        ValueError: if an argument is out of range (each message names it, what is allowed and what was given),
            or, in ``setup``, if the data cannot be split as asked.
        TypeError: if an argument has the wrong type.
        FileNotFoundError: if ``data_dir`` lacks the dataset's files.

    Example:
        >>> data = CollaborativeDataModule("digits", num_agents=3, split="powerlaw", batch_size=64, local_epochs=1)
        >>> data.setup("fit")
        >>> data.shard_sizes, data.num_classes, data.input_shape
        ([53, 449, 845], 10, (1, 8, 8))
        >>> loader = data.train_dataloader()
        >>> loader.sampler.set_epoch(0)  # Lightning does this at the start of every round
        >>> len(loader), [(step.num_active, step.last) for step in loader][-3:]
        (14, [(1, False), (1, False), (1, True)])
        >>> step = next(iter(loader))
        >>> [(group.agents.tolist(), tuple(group.inputs.shape)) for group in step.groups]
        [([1, 2], (2, 64, 1, 8, 8)), ([0], (1, 53, 1, 8, 8))]
    """

    def __init__(
        self,
        dataset: str | Dataset = "digits",
        num_agents: int = 5,
        split: SplitName = "uniform",
        batch_size: int = 32,
        sample_size_cap: int | None = None,
        test_dataset: Dataset | None = None,
        data_dir: str | None = None,
        class_counts: list[int] | None = None,
        dirichlet_alpha: float = 0.5,
        label_noise: dict[int, float] | None = None,
        local_epochs: int | None = None,
        drop_last: bool = False,
        eval_batch_size: int = 1024,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.num_agents = check_int("num_agents", num_agents, minimum=2)
        if split not in SPLIT_NAMES:
            raise ValueError(f"Expected `split` to be one of {list(SPLIT_NAMES)}, but got {split!r}.")
        self.split: SplitName = split
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.eval_batch_size = check_int("eval_batch_size", eval_batch_size, minimum=1)
        self.num_workers = check_int("num_workers", num_workers, minimum=0)
        self.seed = check_int("seed", seed, minimum=0)
        self.local_epochs = None if local_epochs is None else check_int("local_epochs", local_epochs, minimum=1)
        if not isinstance(drop_last, bool):
            raise TypeError(f"Expected `drop_last` to be True or False, but got {drop_last!r}.")
        self.drop_last = drop_last
        self.dirichlet_alpha = check_positive_float("dirichlet_alpha", dirichlet_alpha)
        self.label_noise = {} if label_noise is None else check_label_noise(label_noise, self.num_agents)
        self.sample_size_cap = self._check_sample_size_cap(sample_size_cap)

        # The data: a registered name (its files checked now) or the user's own Dataset with its test split.
        self.dataset = dataset
        self.test_dataset = test_dataset
        self.data_dir: str | None = None
        known_num_classes: int | None = None
        if isinstance(dataset, str):
            info = get_dataset_info(dataset)
            if test_dataset is not None:
                raise ValueError(
                    f"`test_dataset` is only used with a user Dataset as `dataset`; dataset {dataset!r} has its own "
                    f"test split. Expected None, but got {test_dataset!r}."
                )
            self.data_dir = resolve_data_dir(dataset, data_dir)
            if data_dir is not None and not info.needs_data_dir:
                rank_zero_warn(f"`data_dir`={data_dir!r} is ignored: dataset {dataset!r} is not read from a folder.")
            known_num_classes = info.num_classes
        elif isinstance(dataset, Dataset):
            if not isinstance(test_dataset, Dataset):
                raise ValueError(
                    f"Expected `test_dataset` to be a torch Dataset when `dataset` is one, but got {test_dataset!r}."
                )
            if data_dir is not None:
                rank_zero_warn(f"`data_dir`={data_dir!r} is ignored: `dataset` is a Dataset object.")
        else:
            raise TypeError(
                "Expected `dataset` to be one of 'digits', 'mnist', 'fashion_mnist' or a torch Dataset, "
                f"but got {dataset!r}."
            )

        if class_counts is not None and split != "classimbalance":
            raise ValueError(
                f"`class_counts` is only used by split='classimbalance', but got split={split!r} and "
                f"class_counts={class_counts!r}. Pass class_counts=None or split='classimbalance'."
            )
        self.class_counts = (
            None if class_counts is None else check_class_counts(class_counts, self.num_agents, known_num_classes)
        )

        ignore = ["test_dataset"] + ([] if isinstance(dataset, str) else ["dataset"])
        # A None `local_epochs` would clash with the LightningModule's value when Lightning merges the hparams.
        self.save_hyperparameters(ignore=ignore + (["local_epochs"] if local_epochs is None else []))
        self.schedule: RoundSchedule | None = None
        self._prepared: _Prepared | None = None

    def setup(self, stage: str | None = None) -> None:
        """Load the data and split it among the agents; later calls do nothing.

        Raises:
            ValueError: if ``sample_size_cap`` exceeds the training set, there are more agents than examples, or
                the split is infeasible (e.g. a classimbalance agent lacks examples of its classes).
        """
        if self._prepared is not None:
            return
        data = self._load()
        num_train = len(data.train_targets)
        labels = data.train_targets.numpy()
        num_classes = self._num_classes(data)
        cap = self._resolve_cap(num_train)

        pool_seed, split_seed, noise_seed = np.random.SeedSequence(self.seed).spawn(3)
        order = np.random.default_rng(pool_seed).permutation(num_train).astype(np.int64)
        shard_note = ""
        if self.split == "classimbalance":
            candidates = order
            shard_size = cap // self.num_agents
            if self.sample_size_cap is None:  # the default shrinks until every agent gets all its classes evenly
                balanced = classimbalance_balanced_shard_size(
                    labels, self.num_agents, num_classes=num_classes, class_counts=self.class_counts
                )
                if balanced < shard_size:
                    shard_size = max(balanced, 1)  # 0: some agent's classes are empty, and the split says so
                    shard_note = (
                        f"; classimbalance shards of {shard_size}, the most at which every agent gets an even share "
                        "of each of its classes (pass `sample_size_cap` to choose)"
                    )
            positions = classimbalance_split(
                labels[candidates],
                self.num_agents,
                num_classes=num_classes,
                class_counts=self.class_counts,
                shard_size=shard_size,
                seed=split_seed,
            )
        else:
            candidates = order[:cap]
            if self.split == "uniform":
                positions = uniform_split(cap, self.num_agents, seed=split_seed)
            elif self.split == "powerlaw":
                positions = powerlaw_split(cap, self.num_agents, seed=split_seed)
            else:
                positions = dirichlet_split(
                    labels[candidates],
                    self.num_agents,
                    dirichlet_alpha=self.dirichlet_alpha,
                    num_classes=num_classes,
                    seed=split_seed,
                )
        shards = [np.sort(candidates[agent_positions]) for agent_positions in positions]
        if self.drop_last:  # a shard smaller than one batch would never train: say so now, not in the first round
            check_full_batches([len(shard) for shard in shards], self.batch_size)

        if self.label_noise:
            labels = apply_label_noise(labels, shards, self.label_noise, num_classes=num_classes, seed=noise_seed)
        counts = np.stack([np.bincount(labels[shard], minlength=num_classes) for shard in shards])
        self._prepared = _Prepared(
            train_inputs=data.train_inputs,
            train_targets=torch.from_numpy(np.array(labels, dtype=np.int64)),
            test_inputs=data.test_inputs,
            test_targets=data.test_targets,
            num_classes=num_classes,
            shards=shards,
            class_counts_per_agent=torch.from_numpy(counts.astype(np.int64)),
        )

        noise = f", label_noise={self.label_noise}" if self.label_noise else ""
        rank_zero_info(
            f"CollaborativeDataModule: dataset={self._dataset_name}, num_agents={self.num_agents}, split={self.split}, "
            f"shard_sizes={self.shard_sizes} ({sum(self.shard_sizes)} of {num_train} training examples, "
            f"{len(data.test_targets)} test examples){noise}{shard_note}"
        )

    def train_dataloader(self) -> DataLoader:
        """A loader of :class:`~lightning_cgs.data.batch.RoundStep` items, one round per pass.

        Its sampler's ``set_epoch`` (which Lightning calls at the start of every epoch) selects the round.
        """
        prepared = self._require_setup("train_dataloader")
        self.schedule = RoundSchedule(
            self.shard_sizes, self.batch_size, self._resolve_local_epochs(), seed=self.seed, drop_last=self.drop_last
        )
        dataset = RoundStepDataset(prepared.train_inputs, prepared.train_targets, prepared.shards, self.schedule)
        sampler = RoundSampler(self.schedule.steps_per_round)
        # Lightning creates (and prefetches from) the first iterator before it calls `set_epoch`; when it resumes
        # from a checkpoint, that first iterator serves the resumed round, so it must start at the right round.
        sampler.set_epoch(self._upcoming_round())
        return DataLoader(
            dataset,
            batch_size=None,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _upcoming_round(self) -> int:
        """The round the trainer's fit loop runs next (0 without a trainer): what Lightning passes to ``set_epoch``."""
        fit_loop = getattr(self.trainer, "fit_loop", None)
        return int(fit_loop.epoch_progress.current.processed) if fit_loop is not None else 0

    def test_dataloader(self) -> DataLoader:
        """A loader of ``(inputs, targets)`` batches over the test split, in order."""
        prepared = self._require_setup("test_dataloader")
        return DataLoader(
            TensorDataset(prepared.test_inputs, prepared.test_targets),
            batch_size=self.eval_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
        )

    def agent_dataset(self, agent: int) -> TensorDataset:
        """Agent ``agent``'s training examples (with their possibly noisy labels), e.g. for a standalone baseline."""
        prepared = self._require_setup("agent_dataset")
        agent = check_int("agent", agent, minimum=0, maximum=self.num_agents - 1)
        rows = torch.from_numpy(prepared.shards[agent])
        return TensorDataset(prepared.train_inputs[rows], prepared.train_targets[rows])

    @property
    def shard_sizes(self) -> list[int]:
        """Number of training examples of each agent."""
        return [len(shard) for shard in self._require_setup("shard_sizes").shards]

    @property
    def shard_indices(self) -> list[Tensor]:
        """Per agent, the sorted rows of :attr:`train_inputs` it owns."""
        return [torch.from_numpy(shard) for shard in self._require_setup("shard_indices").shards]

    @property
    def num_classes(self) -> int:
        return self._require_setup("num_classes").num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, without the batch dimension."""
        return tuple(self._require_setup("input_shape").train_inputs.shape[1:])

    @property
    def class_counts_per_agent(self) -> Tensor:
        """``(num_agents, num_classes)`` table: how many examples of each (possibly noisy) label each agent holds."""
        return self._require_setup("class_counts_per_agent").class_counts_per_agent

    @property
    def train_inputs(self) -> Tensor:
        return self._require_setup("train_inputs").train_inputs

    @property
    def train_targets(self) -> Tensor:
        """Training labels, label noise included."""
        return self._require_setup("train_targets").train_targets

    @property
    def test_inputs(self) -> Tensor:
        return self._require_setup("test_inputs").test_inputs

    @property
    def test_targets(self) -> Tensor:
        return self._require_setup("test_targets").test_targets

    @property
    def _dataset_name(self) -> str:
        return self.dataset if isinstance(self.dataset, str) else type(self.dataset).__name__

    def _load(self) -> DatasetTensors:
        if isinstance(self.dataset, str):
            return get_dataset_info(self.dataset).loader(self.data_dir)
        train_inputs, train_targets = materialise_dataset(self.dataset, "dataset")
        test_inputs, test_targets = materialise_dataset(self.test_dataset, "test_dataset")
        if train_inputs.shape[1:] != test_inputs.shape[1:]:
            raise ValueError(
                f"Expected the inputs of `dataset` and `test_dataset` to have the same shape, but got "
                f"{tuple(train_inputs.shape[1:])} and {tuple(test_inputs.shape[1:])}."
            )
        return DatasetTensors(train_inputs, train_targets, test_inputs, test_targets)

    def _num_classes(self, data: DatasetTensors) -> int:
        if isinstance(self.dataset, str):
            return get_dataset_info(self.dataset).num_classes
        num_classes = int(max(data.train_targets.max(), data.test_targets.max())) + 1
        if self.class_counts is not None:
            check_class_counts(self.class_counts, self.num_agents, num_classes)
        return num_classes

    def _check_sample_size_cap(self, cap: int | None) -> int | None:
        if cap is None:
            return None
        if isinstance(cap, bool) or not isinstance(cap, (int, np.integer)) or cap < self.num_agents:
            raise ValueError(
                f"Expected `sample_size_cap` to be None or an integer >= `num_agents`={self.num_agents} (at least one "
                f"example per agent), but got {cap!r}."
            )
        return int(cap)

    def _resolve_cap(self, num_train: int) -> int:
        if self.sample_size_cap is None:
            if num_train < self.num_agents:
                raise ValueError(
                    f"`num_agents`={self.num_agents} exceeds the {num_train} training examples of "
                    f"{self._dataset_name}: every agent needs at least one. Lower `num_agents`."
                )
            return min(self.num_agents * DEFAULT_SAMPLES_PER_AGENT, num_train)
        if self.sample_size_cap > num_train:
            raise ValueError(
                f"Expected `sample_size_cap` to be at most the {num_train} training examples of {self._dataset_name} "
                f"(or None), but got {self.sample_size_cap}."
            )
        return self.sample_size_cap

    def _resolve_local_epochs(self) -> int:
        if self.local_epochs is not None:
            return self.local_epochs
        module = None if self.trainer is None else self.trainer.lightning_module
        if module is None:
            raise RuntimeError(
                "`local_epochs` is None, so it is read from the trainer's LightningModule, but no trainer with a "
                "module is attached. Pass `local_epochs` (an integer >= 1) to CollaborativeDataModule."
            )
        value = getattr(module, "local_epochs", None)
        if value is None:
            value = module.hparams.get("local_epochs")
        if value is None:
            raise ValueError(
                f"`local_epochs` is None, so it is read from the LightningModule, but {type(module).__name__} has no "
                "`local_epochs` attribute or hparam. Pass `local_epochs` (an integer >= 1) to CollaborativeDataModule."
            )
        return check_int("local_epochs", value, minimum=1)

    def _require_setup(self, what: str) -> _Prepared:
        if self._prepared is None:
            raise RuntimeError(f"`{what}` needs the data: call `setup()` on the CollaborativeDataModule first.")
        return self._prepared
