"""Layer 5 of lightning_cgs: datasets, their split among the agents, and the loaders that feed the agent pool."""

from lightning_cgs.data.batch import AgentBatch, RoundStep
from lightning_cgs.data.datamodule import CollaborativeDataModule
from lightning_cgs.data.datasets import (
    DATASETS,
    DatasetInfo,
    DatasetTensors,
    find_idx_files,
    get_dataset_info,
    load_digits_tensors,
    load_fashion_mnist,
    load_mnist,
    read_idx,
)
from lightning_cgs.data.materialise import materialise_dataset
from lightning_cgs.data.rounds import RoundSampler, RoundStepDataset
from lightning_cgs.data.schedule import RoundSchedule, ScheduledBatch
from lightning_cgs.data.splits import (
    POWERLAW_EXPONENT,
    SPLIT_NAMES,
    SplitName,
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

__all__ = [
    "DATASETS",
    "POWERLAW_EXPONENT",
    "SPLIT_NAMES",
    "AgentBatch",
    "CollaborativeDataModule",
    "DatasetInfo",
    "DatasetTensors",
    "RoundSampler",
    "RoundSchedule",
    "RoundStep",
    "RoundStepDataset",
    "ScheduledBatch",
    "SplitName",
    "apply_label_noise",
    "classimbalance_balanced_shard_size",
    "classimbalance_max_shard_size",
    "classimbalance_split",
    "default_class_counts",
    "dirichlet_split",
    "find_idx_files",
    "get_dataset_info",
    "load_digits_tensors",
    "load_fashion_mnist",
    "load_mnist",
    "materialise_dataset",
    "powerlaw_shard_sizes",
    "powerlaw_split",
    "read_idx",
    "uniform_shard_sizes",
    "uniform_split",
]
