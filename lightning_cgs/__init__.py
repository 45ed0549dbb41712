"""lightning_cgs: fair rewards for collaborative machine learning in PyTorch Lightning.

Cosine gradient Shapley values (CGSV) and gradient-driven rewards, after Xu et al., "Gradient Driven Rewards to
Guarantee Fairness in Collaborative Machine Learning", NeurIPS 2021.
"""

from lightning_cgs.callbacks import CosineGradientShapley, FairGradientReward, FairnessMonitor
from lightning_cgs.data import CollaborativeDataModule
from lightning_cgs.evaluation import Evaluation
from lightning_cgs.module import CollaborativeModule
from lightning_cgs.report import FairnessReport
from lightning_cgs.tracking import CollaborativeWandbLogger, FairnessSeries, RoundProgressBar

__version__ = "0.1.0"

__all__ = [
    "CollaborativeDataModule",
    "CollaborativeModule",
    "CollaborativeWandbLogger",
    "CosineGradientShapley",
    "Evaluation",
    "FairGradientReward",
    "FairnessMonitor",
    "FairnessReport",
    "FairnessSeries",
    "RoundProgressBar",
    "__version__",
]
