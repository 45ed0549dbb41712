"""The IDX reader on files written here and on the real Fashion-MNIST, the digits loader and the registry."""

from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_cgs.data.datasets import (
    DATASETS,
    FASHION_MNIST_DIR,
    find_idx_files,
    get_dataset_info,
    load_digits_tensors,
    load_fashion_mnist,
    load_mnist,
    read_idx,
    resolve_data_dir,
)

HAS_FASHION_MNIST = all(
    (Path(FASHION_MNIST_DIR) / f"{name}.gz").is_file()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte")
)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_ubyte_plain_and_gzipped(tmp_path, suffix, write_idx):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / f"tiny-idx3-ubyte{suffix}"
    write_idx(path, array, 0x08, "u1")
    read = read_idx(path)
    assert read.shape == (2, 3, 4) and read.dtype == np.uint8
    assert np.array_equal(read, array)
    assert read.flags.writeable


@pytest.mark.parametrize(
    ("type_code", "big_endian", "native"),
    [(0x09, ">i1", np.int8), (0x0B, ">i2", np.int16), (0x0C, ">i4", np.int32), (0x0D, ">f4", np.float32)],
)
def test_read_idx_big_endian_types(tmp_path, type_code, big_endian, native, write_idx):
    array = np.array([[-3, 2], [1, 100]], dtype=native)
    write_idx(tmp_path / "values.idx", array, type_code, big_endian)
    read = read_idx(tmp_path / "values.idx")
    assert read.dtype == np.dtype(native)
    assert np.array_equal(read, array)


def test_read_idx_rejects_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(bytes([1, 0, 8, 1, 0, 0, 0, 1, 7]))
    with pytest.raises(ValueError, match=r"is not an IDX file: it does not start with two zero bytes"):
        read_idx(path)


def test_read_idx_rejects_unknown_type_code(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 7]))
    with pytest.raises(ValueError, match=r"has IDX type code 0x42; the known codes are 0x08, 0x09"):
        read_idx(path)


def test_read_idx_rejects_truncated_payload(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(bytes([0, 0, 0x08, 1, 0, 0, 0, 5, 1, 2]))
    with pytest.raises(ValueError, match=r"announces shape \(5,\) of uint8 \(5 bytes\) but holds 2 bytes"):
        read_idx(path)


def test_find_idx_files_lists_missing_names_and_folder(tmp_path, write_idx):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((1, 2, 2), np.uint8), 0x08, "u1")
    with pytest.raises(FileNotFoundError) as info:
        find_idx_files(tmp_path)
    message = str(info.value)
    assert "train-labels-idx1-ubyte or train-labels-idx1-ubyte.gz" in message
    assert "t10k-images-idx3-ubyte or t10k-images-idx3-ubyte.gz" in message
    assert "t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte.gz" in message
    assert "train-images-idx3-ubyte or" not in message
    assert str(tmp_path.resolve()) in message
    with pytest.raises(FileNotFoundError, match=r"`data_dir`=.* does not hold the expected IDX files\. Searched"):
        find_idx_files(tmp_path)


def test_find_idx_files_rejects_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"`data_dir` must be an existing folder, but got '.*nowhere'"):
        find_idx_files(tmp_path / "nowhere")


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_from_written_files(tmp_path, gz, write_fake_mnist):
    images, labels = write_fake_mnist(tmp_path, gz=gz)
    data = load_mnist(str(tmp_path))
    assert data.train_inputs.shape == (12, 1, 28, 28) and data.train_inputs.dtype == torch.float32
    assert data.test_inputs.shape == (6, 1, 28, 28)
    assert data.train_targets.dtype == torch.int64 and data.train_targets.tolist() == labels.tolist()
    expected = (images.astype(np.float64) / 255 - 0.1307) / 0.3081
    assert np.allclose(data.train_inputs[:, 0].numpy(), expected, atol=1e-5)


def test_load_mnist_needs_data_dir():
    with pytest.raises(ValueError, match=r"`data_dir` is required for dataset 'mnist'.*but got None"):
        load_mnist(None)


def test_load_mnist_rejects_mismatched_files(tmp_path, write_idx, write_fake_mnist):
    write_fake_mnist(tmp_path, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, np.uint8), 0x08, "u1")
    with pytest.raises(ValueError, match=r"The train files in `data_dir`=.* do not pair up"):
        load_mnist(str(tmp_path))


@pytest.mark.skipif(not HAS_FASHION_MNIST, reason=f"Fashion-MNIST IDX files not installed in {FASHION_MNIST_DIR}")
def test_real_fashion_mnist():
    raw_labels = read_idx(Path(FASHION_MNIST_DIR) / "train-labels-idx1-ubyte.gz")
    assert raw_labels.shape == (60000,) and raw_labels.dtype == np.uint8
    assert np.bincount(raw_labels).tolist() == [6000] * 10

    data = load_fashion_mnist()
    assert data.train_inputs.shape == (60000, 1, 28, 28) and data.train_inputs.dtype == torch.float32
    assert data.test_inputs.shape == (10000, 1, 28, 28)
    assert torch.equal(data.train_targets, torch.from_numpy(raw_labels.astype(np.int64)))
    assert torch.bincount(data.test_targets).tolist() == [1000] * 10
    # 0.2860 / 0.3530 are the training pixels' own mean and std, so the result is close to standard.
    assert abs(float(data.train_inputs.mean())) < 0.01
    assert abs(float(data.train_inputs.std()) - 1.0) < 0.01


def test_digits_loader_split_and_scaling():
    data = load_digits_tensors()
    assert data.train_inputs.shape == (1347, 1, 8, 8) and data.test_inputs.shape == (450, 1, 8, 8)
    assert data.train_inputs.dtype == torch.float32 and data.test_targets.dtype == torch.int64
    assert abs(float(data.train_inputs.mean())) < 1e-4
    assert abs(float(data.train_inputs.std()) - 1.0) < 1e-3
    # Stratified: every digit makes up the same share of both splits (to within one example).
    test_counts = torch.bincount(data.test_targets, minlength=10)
    train_counts = torch.bincount(data.train_targets, minlength=10)
    assert torch.all((test_counts * 3 - train_counts).abs() <= 3)

    again = load_digits_tensors()
    assert torch.equal(data.test_inputs, again.test_inputs) and torch.equal(data.test_targets, again.test_targets)


def test_registry():
    assert sorted(DATASETS) == ["digits", "fashion_mnist", "mnist"]
    assert get_dataset_info("digits").input_shape == (1, 8, 8)
    assert get_dataset_info("mnist").num_classes == 10
    with pytest.raises(ValueError, match=r"Expected `dataset` to be one of \['digits', 'fashion_mnist', 'mnist'\]"):
        get_dataset_info("cifar10")


def test_resolve_data_dir(tmp_path, write_fake_mnist):
    assert resolve_data_dir("digits", None) is None
    write_fake_mnist(tmp_path)
    assert resolve_data_dir("mnist", str(tmp_path)) == str(tmp_path)
    with pytest.raises(ValueError, match=r"`data_dir` is required for dataset 'mnist'"):
        resolve_data_dir("mnist", None)
    with pytest.raises(FileNotFoundError, match=r"does not hold the expected IDX files"):
        resolve_data_dir("fashion_mnist", str(tmp_path / ".."))
