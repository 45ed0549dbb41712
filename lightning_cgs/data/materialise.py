"""Reading a user's map-style ``Dataset`` into two in-memory tensors, inputs and integer labels."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset


def materialise_dataset(dataset: Dataset, argument: str = "dataset") -> tuple[Tensor, Tensor]:
    """Stack every item of ``dataset`` into ``(inputs, labels)``.

    A ``TensorDataset`` must hold exactly two tensors, inputs and labels, and is used as it is. Any other dataset
    must support ``len`` and integer indexing with items ``(input_tensor, int_label)``; its labels come from its
    ``targets`` attribute when it has one (as torchvision datasets do), else from the items. Floating-point inputs
    become ``float32``; integer inputs (token ids, say) keep their type. Labels become ``int64``.

    Args:
        dataset: the dataset; the whole of it must fit in memory.
        argument: the name of the argument it came from, for error messages.

    Raises:
        TypeError: if the dataset has no length or its items are not ``(input, label)`` pairs of tensors.
        ValueError: if it is empty, or its labels are not non-negative integers, one per input.

    Example:
        >>> dataset = TensorDataset(torch.zeros(4, 2, dtype=torch.float64), torch.tensor([0, 1, 1, 2]))
        >>> inputs, labels = materialise_dataset(dataset)
        >>> inputs.dtype, labels.tolist()
        (torch.float32, [0, 1, 1, 2])
    """
    if isinstance(dataset, TensorDataset):
        if len(dataset.tensors) != 2:
            raise ValueError(
                f"Expected `{argument}`, a TensorDataset, to hold two tensors (inputs, labels), but it holds "
                f"{len(dataset.tensors)}."
            )
        inputs, labels = dataset.tensors
    else:
        inputs, labels = _stack_items(dataset, argument)

    if len(inputs) == 0:
        raise ValueError(f"Expected `{argument}` to hold at least one example, but it is empty.")
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or len(labels) != len(inputs):
        raise ValueError(
            f"Expected `{argument}` to have one label per input ({len(inputs)} inputs), but got labels of shape "
            f"{tuple(labels.shape)}."
        )
    if labels.is_floating_point() and not torch.equal(labels, labels.round()):
        raise ValueError(f"Expected the labels of `{argument}` to be integer class indices, but got {labels.dtype}.")
    if labels.is_complex() or labels.dtype == torch.bool or int(labels.min()) < 0:
        raise ValueError(
            f"Expected the labels of `{argument}` to be integer class indices >= 0, but got dtype {labels.dtype} "
            f"with smallest value {labels.min().item()}."
        )
    if inputs.is_floating_point():
        inputs = inputs.to(torch.float32)
    return inputs, labels.to(torch.int64)


def _stack_items(dataset: Dataset, argument: str) -> tuple[Tensor, Tensor]:
    try:
        length = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"Expected `{argument}` to be a map-style Dataset with `__len__`, but got {type(dataset).__name__}."
        ) from None

    inputs, item_labels = [], []
    for index in range(length):
        item = dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(
                f"Expected the items of `{argument}` to be (input_tensor, int_label) pairs, but item {index} is "
                f"{type(item).__name__}."
            )
        features, label = item
        try:
            inputs.append(torch.as_tensor(features))
        except (TypeError, RuntimeError, ValueError):
            raise TypeError(
                f"Expected the inputs of `{argument}` to be tensors (or arrays), but item {index} holds "
                f"{type(features).__name__}; add a transform that converts it (torchvision's ToTensor, say)."
            ) from None
        item_labels.append(label)

    if not inputs:
        return torch.empty(0), torch.empty(0, dtype=torch.int64)
    shapes = {tuple(features.shape) for features in inputs}
    if len(shapes) > 1:
        raise ValueError(f"Expected every input of `{argument}` to have the same shape, but got {sorted(shapes)}.")
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return torch.stack(inputs), torch.as_tensor(targets)
    try:
        labels = torch.tensor([torch.as_tensor(label).item() for label in item_labels])
    except (TypeError, RuntimeError, ValueError):
        raise TypeError(
            f"Expected the labels of `{argument}` to be single integers (class indices), but got e.g. "
            f"{item_labels[0]!r}."
        ) from None
    return torch.stack(inputs), labels
