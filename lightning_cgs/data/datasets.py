"""Built-in datasets, loaded whole into memory as tensors, and the registry that names them.

Each loader returns a :class:`DatasetTensors`: ``float32`` inputs of shape ``(n, 1, H, W)`` and ``int64`` targets,
for the training and the test split. Nothing is downloaded: the digits ship inside scikit-learn, and the MNIST and
Fashion-MNIST IDX files are read from a folder on disk.

Example:
    >>> data = load_digits_tensors()
    >>> tuple(data.train_inputs.shape), tuple(data.test_inputs.shape), data.train_targets.dtype
    ((1347, 1, 8, 8), (450, 1, 8, 8), torch.int64)
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
"""Where Debian's ``dataset-fashion-mnist`` package installs the IDX files."""

IDX_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
"""The four files of an MNIST-format dataset, each found plain or gzipped (``.gz``)."""

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class DatasetTensors(NamedTuple):
    """A dataset held in memory: ``(train_inputs, train_targets, test_inputs, test_targets)``."""

    train_inputs: Tensor
    train_targets: Tensor
    test_inputs: Tensor
    test_targets: Tensor


@dataclass(frozen=True)
class DatasetInfo:
    """A registry entry.

    Args:
        loader: called with ``data_dir`` (``None`` for the default), returns the tensors.
        num_classes: number of classes.
        input_shape: shape of one input, without the batch dimension.
        needs_data_dir: whether the data is read from a folder.
        default_data_dir: folder used when ``data_dir`` is ``None``; ``None`` means the user must name one.
    """

    loader: Callable[[str | None], DatasetTensors]
    num_classes: int
    input_shape: tuple[int, ...]
    needs_data_dir: bool = False
    default_data_dir: str | None = None


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (plain, or gzipped when the name ends in ``.gz``) into a numpy array.

    The IDX header is two zero bytes, a type code (``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32,
    ``0x0D`` float32, ``0x0E`` float64), the number of dimensions, and then one big-endian ``uint32`` per dimension.

    Raises:
        ValueError: if the header is malformed or the payload does not match the dimensions.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()

    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file: it does not start with two zero bytes.")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        known = ", ".join(f"0x{code:02X}" for code in _IDX_DTYPES)
        raise ValueError(f"{path} has IDX type code 0x{type_code:02X}; the known codes are {known}.")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(f"{path} ends inside its IDX header ({ndim} dimensions announced).")
    shape = struct.unpack(f">{ndim}I", raw[4:header_size])

    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header_size != expected:
        raise ValueError(
            f"{path} announces shape {shape} of {dtype} ({expected} bytes) but holds {len(raw) - header_size} bytes."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx_files(data_dir: str | Path) -> dict[str, Path]:
    """Locate the four MNIST-format files in ``data_dir``, each as ``<name>`` or ``<name>.gz``.

    Raises:
        FileNotFoundError: naming the folder searched, the files missing (both spellings) and what it holds.
    """
    folder = Path(data_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"`data_dir` must be an existing folder, but got {str(data_dir)!r}.")
    found: dict[str, Path] = {}
    missing = []
    for key, name in IDX_FILES.items():
        candidates = [folder / name, folder / f"{name}.gz"]
        present = [candidate for candidate in candidates if candidate.is_file()]
        if present:
            found[key] = present[0]
        else:
            missing.append(f"{name} or {name}.gz")
    if missing:
        holds = sorted(entry.name for entry in folder.iterdir())[:20]
        raise FileNotFoundError(
            f"`data_dir`={str(data_dir)!r} does not hold the expected IDX files. Searched {folder.resolve()} for: "
            f"{'; '.join(missing)}. The folder holds: {holds or 'nothing'}."
        )
    return found


def load_idx_dataset(data_dir: str | Path, mean: float, std: float) -> DatasetTensors:
    """Load an MNIST-format dataset from ``data_dir``: pixels scaled to ``[0, 1]``, then ``(x - mean) / std``."""
    files = find_idx_files(data_dir)
    splits = []
    for prefix in ("train", "test"):
        images, labels = read_idx(files[f"{prefix}_images"]), read_idx(files[f"{prefix}_labels"])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"The {prefix} files in `data_dir`={str(data_dir)!r} do not pair up: images of shape {images.shape} "
                f"(expected (n, height, width)) and labels of shape {labels.shape} (expected (n,))."
            )
        inputs = torch.from_numpy(images).to(torch.float32).div_(255.0).sub_(mean).div_(std).unsqueeze(1)
        splits += [inputs, torch.from_numpy(labels.astype(np.int64))]
    return DatasetTensors(*splits)


def load_mnist(data_dir: str | None) -> DatasetTensors:
    """MNIST from the IDX files in ``data_dir`` (there is no default folder), normalised with 0.1307 / 0.3081."""
    if data_dir is None:
        raise ValueError(
            "`data_dir` is required for dataset 'mnist': name the folder that holds the four MNIST IDX files "
            f"({', '.join(IDX_FILES.values())}, plain or .gz), but got None."
        )
    return load_idx_dataset(data_dir, mean=0.1307, std=0.3081)


def load_fashion_mnist(data_dir: str | None = None) -> DatasetTensors:
    """Fashion-MNIST from the IDX files in ``data_dir`` (default :data:`FASHION_MNIST_DIR`), normalised with
    0.2860 / 0.3530."""
    return load_idx_dataset(FASHION_MNIST_DIR if data_dir is None else data_dir, mean=0.2860, std=0.3530)


def load_digits_tensors(data_dir: str | None = None) -> DatasetTensors:
    """scikit-learn's 1797 handwritten 8x8 digits, with a fixed stratified 25 % test split.

    Pixels (0 to 16) are divided by 16, then standardised with the mean and standard deviation of all training pixels.
    The test split uses ``random_state=0``, so it never depends on the run's seed. ``data_dir`` is ignored.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    targets = digits.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, targets, test_size=0.25, random_state=0, stratify=targets
    )
    mean, std = float(train_x.mean()), float(train_x.std())
    return DatasetTensors(
        torch.from_numpy((train_x - mean) / std).unsqueeze(1),
        torch.from_numpy(train_y),
        torch.from_numpy((test_x - mean) / std).unsqueeze(1),
        torch.from_numpy(test_y),
    )


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(load_digits_tensors, num_classes=10, input_shape=(1, 8, 8)),
    "mnist": DatasetInfo(load_mnist, num_classes=10, input_shape=(1, 28, 28), needs_data_dir=True),
    "fashion_mnist": DatasetInfo(
        load_fashion_mnist,
        num_classes=10,
        input_shape=(1, 28, 28),
        needs_data_dir=True,
        default_data_dir=FASHION_MNIST_DIR,
    ),
}
"""The datasets that :class:`~lightning_cgs.data.CollaborativeDataModule` knows by name."""


def get_dataset_info(name: str) -> DatasetInfo:
    """Look up a built-in dataset by name.

    Raises:
        ValueError: listing the known names if ``name`` is not one of them.
    """
    if name not in DATASETS:
        raise ValueError(f"Expected `dataset` to be one of {sorted(DATASETS)} or a torch Dataset, but got {name!r}.")
    return DATASETS[name]


def resolve_data_dir(name: str, data_dir: str | None) -> str | None:
    """The folder that dataset ``name`` will be read from, after checking that it holds the expected files.

    Returns ``None`` for datasets that need no folder.

    Raises:
        ValueError: if the dataset needs a folder, has no default, and none was given.
        FileNotFoundError: if the folder is missing or lacks some file.
    """
    info = get_dataset_info(name)
    if not info.needs_data_dir:
        return None
    folder = data_dir if data_dir is not None else info.default_data_dir
    if folder is None:
        raise ValueError(
            f"`data_dir` is required for dataset {name!r}: name the folder that holds its IDX files "
            f"({', '.join(IDX_FILES.values())}, plain or .gz), but got None."
        )
    find_idx_files(folder)
    return str(folder)
