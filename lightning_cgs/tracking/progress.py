"""``RoundProgressBar``: Lightning's TQDM bar that counts rounds and shows rho and the best accuracy."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar
from typing_extensions import override

# What the bar shows, by the name a metric is logged under; ``None`` hides a metric.
SHORT_NAMES: dict[str, str | None] = {
    "fairness/rho_standalone": "rho",
    "fairness/rho_cgsv": "rho_cgsv",
    "test/accuracy/best": "best_acc",
    "train/loss_step": "loss",
    "train/loss": "loss",
    "train/loss_epoch": None,
}
_PLACEHOLDER = "-"


class RoundProgressBar(TQDMProgressBar):
    """A progress bar for collaborative training: ``Round 3/30`` and the fairness of the last evaluation.

    Each round (one Lightning epoch) gets a bar over its steps, described as ``Round <r>/<rounds>``. After the loss
    come ``rho`` (rho_standalone), ``rho_cgsv`` and ``best_acc`` (the best agent's test accuracy) from the latest
    evaluation of :class:`~lightning_cgs.FairnessMonitor`, shown as ``-`` until the first evaluation. Other metrics
    logged with ``prog_bar=True`` keep their names.

    ``lightning-cgs fit`` adds this bar unless the trainer's callbacks hold another progress bar or
    ``trainer.enable_progress_bar`` is false.

    Args:
        refresh_rate: update the bar every n steps (0 disables it).
        process_position: line of the bar, for several bars at once.
        leave: keep the finished bar of every round on screen.

    Example:
        >>> RoundProgressBar(refresh_rate=10)
        RoundProgressBar(refresh_rate=10)
    """

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False) -> None:
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=leave)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(refresh_rate={self.refresh_rate})"

    @override
    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(round_description(trainer.current_epoch, trainer.max_epochs))

    @override
    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        return shorten_metrics(super().get_metrics(trainer, pl_module), with_placeholders=_has_monitor(trainer))


def round_description(current_epoch: int, max_epochs: int | None) -> str:
    """``"Round 3/30"`` for the third round (``current_epoch == 2``) of 30; without a total when there is none.

    Example:
        >>> round_description(2, 30), round_description(0, -1)
        ('Round 3/30', 'Round 1')
    """
    total = f"/{max_epochs}" if max_epochs is not None and max_epochs > 0 else ""
    return f"Round {current_epoch + 1}{total}"


def shorten_metrics(metrics: dict[str, Any], with_placeholders: bool = True) -> dict[str, Any]:
    """Rename the metrics of :data:`SHORT_NAMES` and keep the rest; ``-`` stands for rho and the best accuracy until
    they are measured.

    Example:
        >>> shorten_metrics({"v_num": 0, "train/loss_step": 0.5, "fairness/rho_standalone": 0.9})
        {'v_num': 0, 'loss': 0.5, 'rho': 0.9, 'best_acc': '-'}
    """
    shown: dict[str, Any] = {}
    for key, value in metrics.items():
        name = SHORT_NAMES.get(key, key)
        if name is not None:
            shown[name] = value
    if with_placeholders:
        for name in ("rho", "best_acc"):
            shown.setdefault(name, _PLACEHOLDER)
    return shown


def _has_monitor(trainer: L.Trainer) -> bool:
    return any(cls.__name__ == "FairnessMonitor" for callback in trainer.callbacks for cls in type(callback).__mro__)
