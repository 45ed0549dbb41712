"""Shared pieces of the tracking tests: a small digits collaboration, and W&B isolated in a temporary folder."""

from __future__ import annotations

import contextlib
import csv
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
from lightning.pytorch.loggers import CSVLogger

from lightning_cgs import (
    CollaborativeDataModule,
    CollaborativeModule,
    CosineGradientShapley,
    FairGradientReward,
    FairnessMonitor,
    RoundProgressBar,
)
from lightning_cgs.models import MLP
from tests.helpers import quiet_trainer

NUM_AGENTS = 3
ALPHA, BETA, LR = 0.8, 1.0, 0.3

# Variables that would let a test reach a real W&B account or change the mode of every run in the process.
_WANDB_VARIABLES = (
    "WANDB_API_KEY",
    "WANDB_IDENTITY_TOKEN_FILE",
    "WANDB_MODE",
    "WANDB_BASE_URL",
    "WANDB_ENTITY",
    "WANDB_PROJECT",
    "WANDB_RUN_ID",
    "WANDB_RESUME",
)


def closed_local_url() -> str:
    """An http URL on this machine where nothing listens: every connection is refused at once (no network)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def isolated_wandb(folder: Path) -> Iterator[None]:
    """W&B with its files, settings and credentials in ``folder``, no key, and an unreachable server.

    W&B reads the environment once per process (``wandb.setup``), so its singleton is torn down before and after;
    a run left open is finished, and the whole environment is restored afterwards, also what ``wandb`` or Lightning's
    ``WandbLogger(offline=True)`` set on their own (``WANDB_MODE`` for the whole process).
    """
    import wandb

    environment = dict(os.environ)
    wandb.finish()
    wandb.teardown()
    with pytest.MonkeyPatch.context() as patch:
        for name in _WANDB_VARIABLES:
            patch.delenv(name, raising=False)
        for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
            (folder / name.lower()).mkdir(parents=True, exist_ok=True)
            patch.setenv(name, str(folder / name.lower()))
        netrc = folder / "netrc"
        netrc.write_text("")
        patch.setenv("NETRC", str(netrc))
        patch.setenv("WANDB_BASE_URL", closed_local_url())
        patch.setenv("WANDB_SILENT", "true")
        patch.setenv("WANDB_CONSOLE", "off")
        patch.setenv("WANDB_X_DISABLE_STATS", "true")
        try:
            yield
        finally:
            wandb.finish()
            wandb.teardown()
    os.environ.clear()
    os.environ.update(environment)


@pytest.fixture
def wandb_sandbox(tmp_path: Path) -> Iterator[Path]:
    with isolated_wandb(tmp_path / "wandb-home"):
        yield tmp_path


def digits_collaboration(
    folder: Path,
    logger: Any,
    rounds: int = 2,
    monitor: FairnessMonitor | None = None,
    extra_callbacks: Sequence[L.Callback] = (),
    enable_progress_bar: bool = False,
) -> tuple[CollaborativeDataModule, CollaborativeModule, L.Trainer, list[L.Callback]]:
    """Three agents of a small MLP on a powerlaw split of 450 digits (the agents' shards differ in size)."""
    L.seed_everything(0, verbose=False)
    data = CollaborativeDataModule(
        "digits", num_agents=NUM_AGENTS, split="powerlaw", batch_size=32, sample_size_cap=450
    )
    module = CollaborativeModule(MLP(64, 16, 10), num_agents=NUM_AGENTS, local_epochs=1, lr=LR)
    callbacks = [
        CosineGradientShapley(alpha=ALPHA),
        FairGradientReward(beta=BETA),
        monitor if monitor is not None else FairnessMonitor(),
        *extra_callbacks,
    ]
    trainer = quiet_trainer(
        max_epochs=rounds,
        logger=logger,
        enable_progress_bar=enable_progress_bar,
        callbacks=callbacks,
        default_root_dir=folder,
        log_every_n_steps=1,
    )
    return data, module, trainer, callbacks


def pearson_or_none(x: Sequence[float], y: Sequence[float]) -> float | None:
    """The Pearson correlation with NumPy; ``None`` when a side is constant (where lightning_cgs reports undefined)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def metrics_by_round(path: Path) -> dict[int, dict[str, float]]:
    """``metrics.csv`` read independently of the package: 0-based round (Lightning's epoch) -> merged values."""
    merged: dict[int, dict[str, float]] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            values = merged.setdefault(int(float(row["epoch"])), {})
            values.update({key: float(value) for key, value in row.items() if value})
    return merged


def metric_steps(path: Path, key: str) -> list[tuple[int, float]]:
    """Every ``(step, value)`` at which ``metrics.csv`` holds ``key``."""
    with path.open(newline="") as handle:
        return [(int(row["step"]), float(row[key])) for row in csv.DictReader(handle) if row.get(key)]


@dataclass
class DigitsRun:
    """A finished 3-round digits collaboration logged with Lightning's ``CSVLogger`` (evaluated after rounds 2, 3)."""

    log_dir: Path
    data: CollaborativeDataModule
    trainer: L.Trainer
    scorer: CosineGradientShapley
    rewarder: FairGradientReward
    monitor: FairnessMonitor
    progress_bar: RoundProgressBar


@pytest.fixture(scope="package")
def digits_run(tmp_path_factory) -> DigitsRun:
    folder = tmp_path_factory.mktemp("digits")
    logger = CSVLogger(folder, name="digits")
    bar = RoundProgressBar()
    data, module, trainer, (scorer, rewarder, monitor, _) = digits_collaboration(
        folder,
        logger,
        rounds=3,
        monitor=FairnessMonitor(every_n_rounds=2),
        extra_callbacks=[bar],
        enable_progress_bar=True,
    )
    trainer.fit(module, data)
    return DigitsRun(Path(logger.log_dir), data, trainer, scorer, rewarder, monitor, bar)
