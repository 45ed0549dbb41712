"""Tracking a collaboration: W&B logging with an offline fallback, the W&B views, PNG figures and a progress bar.

- :class:`CollaborativeWandbLogger`: Lightning's ``WandbLogger``, online when possible, offline otherwise, never a
  crash.
- :mod:`~lightning_cgs.tracking.wandb_views`: the final per-agent table, summary, charts and figures in W&B.
- :mod:`~lightning_cgs.tracking.plots`: the figures as PNG files (matplotlib, the ``plot`` extra).
- :class:`FairnessSeries`: the per-round numbers behind both, from a live run or a finished run's files.
- :class:`RoundProgressBar`: ``Round 3/30`` with rho and the best accuracy.
"""

from lightning_cgs.tracking.plots import matplotlib_available, save_figures
from lightning_cgs.tracking.progress import RoundProgressBar
from lightning_cgs.tracking.series import FairnessSeries
from lightning_cgs.tracking.wandb_logger import CollaborativeWandbLogger, WandbOptions, resolve_wandb_mode
from lightning_cgs.tracking.wandb_views import publish_report

__all__ = [
    "CollaborativeWandbLogger",
    "FairnessSeries",
    "RoundProgressBar",
    "WandbOptions",
    "matplotlib_available",
    "publish_report",
    "resolve_wandb_mode",
    "save_figures",
]
