"""What many tests share: a quiet CPU trainer."""

from __future__ import annotations

import lightning as L


def quiet_trainer(max_epochs: int = 1, **options) -> L.Trainer:
    """A CPU trainer without logger, checkpoints, progress bar or model summary, unless ``options`` ask for them."""
    settings = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        **options,
    }
    return L.Trainer(max_epochs=max_epochs, **settings)
