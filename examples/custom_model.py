"""Fair collaborative training with your own model and your own data, on a plain Lightning Trainer.

The three lightning_cgs callbacks go into an ordinary ``L.Trainer``. The data is a user's ``TensorDataset`` (here
scikit-learn's digits, loaded by hand), split among 4 agents; agent 3 is a free rider that reports a zero update,
so the fairness is easy to see: it ends with the lowest reputation and the smallest reward.

    python examples/custom_model.py            # about 10 seconds on 2 CPU cores
"""

from __future__ import annotations

import lightning as L
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import TensorDataset

from lightning_cgs import (
    CollaborativeDataModule,
    CollaborativeModule,
    CosineGradientShapley,
    FairGradientReward,
    FairnessMonitor,
)


class SmallConvNet(nn.Module):
    """Any nn.Module works: each agent gets its own copy of these weights."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(16 * 4 * 4, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def user_datasets() -> tuple[TensorDataset, TensorDataset]:
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target)
    train_x, test_x, train_y, test_y = train_test_split(images, labels, test_size=0.3, random_state=1, stratify=labels)
    return TensorDataset(train_x, train_y), TensorDataset(test_x, test_y)


def main() -> None:
    L.seed_everything(0)
    train, test = user_datasets()
    data = CollaborativeDataModule(train, test_dataset=test, num_agents=4, split="uniform", batch_size=32)
    module = CollaborativeModule(
        SmallConvNet(),
        num_agents=4,
        local_epochs=2,
        optimizer="adam",
        lr=1e-3,
        free_riders={3: "zero"},
    )
    monitor = FairnessMonitor(every_n_rounds=5)
    trainer = L.Trainer(
        max_epochs=15,
        callbacks=[CosineGradientShapley(alpha=0.9, gamma=0.5), FairGradientReward(beta=1.0), monitor],
        default_root_dir="runs/custom_model",
        enable_progress_bar=False,
    )
    trainer.fit(module, data)

    report = monitor.final_report
    print("reputation per agent:", [round(row["reputation"], 3) for row in report.agents])
    print("reward fraction per agent:", [round(row["reward_fraction"], 3) for row in report.agents])


if __name__ == "__main__":
    main()
