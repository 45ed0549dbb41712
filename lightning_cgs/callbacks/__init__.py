"""Round-end callbacks: score contributions, reward agents, monitor fairness (they act in this order)."""

from lightning_cgs.callbacks.cgsv import CosineGradientShapley
from lightning_cgs.callbacks.monitor import FairnessMonitor
from lightning_cgs.callbacks.reward import FairGradientReward

__all__ = ["CosineGradientShapley", "FairGradientReward", "FairnessMonitor"]
