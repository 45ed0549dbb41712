"""Helpers shared by the data tests: IDX files written by hand."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest


def _write_idx(path: Path, array: np.ndarray, type_code: int, big_endian_dtype: str) -> None:
    """Write ``array`` as an IDX file (gzipped if ``path`` ends in .gz): zero, zero, type code, rank, dims, data."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(big_endian_dtype).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def _write_fake_mnist(folder: Path, num_train=12, num_test=6, gz=True) -> tuple[np.ndarray, np.ndarray]:
    """Write the four MNIST files, 28x28 random uint8 images, labels ``index % 10``; the test split repeats the
    first training examples."""
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    images = rng.integers(0, 256, (num_train, 28, 28)).astype(np.uint8)
    labels = (np.arange(num_train) % 10).astype(np.uint8)
    _write_idx(folder / f"train-images-idx3-ubyte{suffix}", images, 0x08, "u1")
    _write_idx(folder / f"train-labels-idx1-ubyte{suffix}", labels, 0x08, "u1")
    _write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", images[:num_test], 0x08, "u1")
    _write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", labels[:num_test], 0x08, "u1")
    return images, labels


@pytest.fixture
def write_idx():
    return _write_idx


@pytest.fixture
def write_fake_mnist():
    return _write_fake_mnist
