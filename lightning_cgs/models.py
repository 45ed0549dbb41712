"""Small reference architectures for the configs and benchmarks. Any ``nn.Module`` works as an agent model."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class MLP(nn.Module):
    """A multilayer perceptron over flattened inputs that returns logits.

    Args:
        in_features: size of one flattened input (64 for 8x8 digits, 784 for 28x28 images).
        hidden_features: width of each hidden layer (an int for one layer, a list for several).
        num_classes: number of outputs.
        dropout: dropout probability after each hidden activation (0 disables it).

    Example:
        >>> import torch
        >>> MLP(64, [32], 10)(torch.zeros(5, 1, 8, 8)).shape
        torch.Size([5, 10])
    """

    def __init__(
        self, in_features: int, hidden_features: int | list[int] = 64, num_classes: int = 10, dropout: float = 0.0
    ) -> None:
        super().__init__()
        widths = [hidden_features] if isinstance(hidden_features, int) else list(hidden_features)
        if in_features < 1 or num_classes < 1 or any(w < 1 for w in widths):
            raise ValueError(
                f"Expected `in_features`, `hidden_features` and `num_classes` to be >= 1, but got in_features="
                f"{in_features}, hidden_features={hidden_features}, num_classes={num_classes}."
            )
        if not 0 <= dropout < 1:
            raise ValueError(f"Expected argument `dropout` to be in [0, 1), but got {dropout!r}.")
        layers: list[nn.Module] = [nn.Flatten()]
        previous = in_features
        for width in widths:
            layers += [nn.Linear(previous, width), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            previous = width
        layers.append(nn.Linear(previous, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class PaperCNN(nn.Module):
    """The convolutional network that the CGSV paper's code uses for MNIST, returning logits.

    Two convolutions (64 filters of 3x3, then 16 of 7x7), each followed by tanh and 2x2 max pooling, then a
    200-unit tanh layer and the output layer (about 104k weights). The paper feeds 32x32 images; 28x28 inputs are
    zero-padded to 32x32 here, so MNIST and Fashion-MNIST can be used as they are.

    Args:
        in_channels: image channels.
        num_classes: number of outputs.

    Example:
        >>> import torch
        >>> PaperCNN()(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3)
        self.conv2 = nn.Conv2d(64, 16, kernel_size=7)
        self.fc1 = nn.Linear(16 * 4 * 4, 200)
        self.fc2 = nn.Linear(200, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] == 28 and x.shape[-2] == 28:
            x = F.pad(x, (2, 2, 2, 2))
        x = F.max_pool2d(self.conv1(x).tanh(), 2)
        x = F.max_pool2d(self.conv2(x).tanh(), 2)
        x = self.fc1(x.flatten(1)).tanh()
        return self.fc2(x)


__all__ = ["MLP", "PaperCNN"]
