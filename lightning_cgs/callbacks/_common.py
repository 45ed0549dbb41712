"""What the round-end callbacks share: finding the module, the round's end, and their required order."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lightning_cgs.data.batch import RoundStep
from lightning_cgs.module import CollaborativeModule

# The order in which the round-end callbacks must act: score, reward, then evaluate.
ROUND_END_ORDER = ("CosineGradientShapley", "FairGradientReward", "FairnessMonitor")


def require_module(callback: L.Callback, pl_module: L.LightningModule) -> CollaborativeModule:
    if not isinstance(pl_module, CollaborativeModule):
        raise MisconfigurationException(
            f"`{type(callback).__name__}` works with a `CollaborativeModule`, but the trainer runs "
            f"`{type(pl_module).__name__}`."
        )
    return pl_module


def find_callback(trainer: L.Trainer, name: str) -> Any | None:
    for callback in trainer.callbacks:
        if any(cls.__name__ == name for cls in type(callback).__mro__):
            return callback
    return None


def check_order(trainer: L.Trainer, callback: L.Callback, requires: tuple[str, ...] = ()) -> None:
    """Raise unless the round-end callbacks come in the order of ``ROUND_END_ORDER`` and ``requires`` are present."""
    positions = {}
    for index, cb in enumerate(trainer.callbacks):
        for name in ROUND_END_ORDER:
            if any(cls.__name__ == name for cls in type(cb).__mro__):
                if name in positions:
                    raise MisconfigurationException(f"`Trainer(callbacks=...)` holds more than one `{name}`.")
                positions[name] = index
    own = type(callback).__name__
    for name in requires:
        if name not in positions:
            raise MisconfigurationException(
                f"`{own}` needs a `{name}` callback before it in `Trainer(callbacks=[...])`, but there is none."
            )
    present = [name for name in ROUND_END_ORDER if name in positions]
    if [positions[name] for name in present] != sorted(positions[name] for name in present):
        actual = sorted(present, key=positions.__getitem__)
        raise MisconfigurationException(
            f"The round-end callbacks must act in the order {list(present)}, but `Trainer(callbacks=...)` lists "
            f"them as {actual}. Reorder them."
        )


def is_round_end(batch: Any) -> bool:
    return isinstance(batch, RoundStep) and batch.last


class RoundEndCallback(L.Callback):
    """Base of the round-end callbacks: it finds the round's end and hands the module to :meth:`on_round_end`.

    The round ends after the training step of its last batch, before validation and before any checkpoint of the
    epoch, so validation and checkpoints always see the agents after their rewards. Subclasses name the callbacks
    they need before them in ``requires``.
    """

    requires: tuple[str, ...] = ()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        require_module(self, pl_module)
        check_order(trainer, self, requires=self.requires)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if is_round_end(batch):
            self.on_round_end(trainer, require_module(self, pl_module))

    def on_round_end(self, trainer: L.Trainer, module: CollaborativeModule) -> None:
        """Act on the finished round (``module.round_index`` is its 0-based index)."""
        raise NotImplementedError
