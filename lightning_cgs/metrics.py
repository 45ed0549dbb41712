"""Classification accuracy and loss of many models at once, as a torchmetrics ``Metric``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric


class ModelwiseClassification(Metric):
    """Accuracy and mean loss of ``num_models`` classifiers evaluated on the same examples.

    ``update`` takes the outputs of all models on one batch, ``(M, n, C)``, and the ``(n,)`` targets. States are
    sums, so the metric reduces correctly across processes.

    Args:
        num_models: ``M``.
        loss: ``"cross_entropy"`` for logits or ``"nll"`` for log-probabilities.

    Example:
        >>> metric = ModelwiseClassification(num_models=2)
        >>> outputs = torch.tensor([[[2.0, 0.0], [0.0, 2.0]], [[2.0, 0.0], [2.0, 0.0]]])
        >>> metric.update(outputs, torch.tensor([0, 1]))
        >>> metric.compute()["accuracy"]
        tensor([1.0000, 0.5000])
    """

    full_state_update = False

    def __init__(self, num_models: int, loss: str = "cross_entropy", **kwargs) -> None:
        super().__init__(**kwargs)
        if not isinstance(num_models, int) or num_models < 1:
            raise ValueError(f"Expected argument `num_models` to be an int >= 1, but got {num_models!r}.")
        self.num_models = num_models
        self.loss = loss
        self.add_state("correct", default=torch.zeros(num_models, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("loss_sum", default=torch.zeros(num_models, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, outputs: Tensor, targets: Tensor) -> None:
        if outputs.dim() != 3 or outputs.shape[0] != self.num_models or outputs.shape[1] != targets.shape[0]:
            raise ValueError(
                f"Expected `outputs` of shape ({self.num_models}, n, num_classes) matching `targets` of shape (n,), "
                f"but got {tuple(outputs.shape)} and {tuple(targets.shape)}."
            )
        self.correct += (outputs.argmax(-1) == targets).sum(-1).to(torch.float64)
        flat = outputs.reshape(-1, outputs.shape[-1]).float()
        expanded = targets.repeat(self.num_models)
        if self.loss == "nll":
            per_example = F.nll_loss(flat, expanded, reduction="none")
        else:
            per_example = F.cross_entropy(flat, expanded, reduction="none")
        self.loss_sum += per_example.reshape(self.num_models, -1).sum(-1).to(torch.float64)
        self.total += targets.shape[0]

    def compute(self) -> dict[str, Tensor]:
        total = self.total.clamp(min=1)
        return {"accuracy": (self.correct / total).float(), "loss": (self.loss_sum / total).float()}
