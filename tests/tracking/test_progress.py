"""The progress bar shows the round, rho and the best accuracy while training runs."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

from lightning_cgs import FairnessMonitor, RoundProgressBar
from tests.tracking.conftest import DigitsRun, metrics_by_round


def test_the_bar_counts_rounds_and_shows_the_last_evaluation(digits_run: DigitsRun) -> None:
    bar = digits_run.progress_bar
    assert digits_run.trainer.progress_bar_callback is bar
    assert bar.train_progress_bar.desc.startswith("Round 3/3")
    last = metrics_by_round(digits_run.log_dir / "metrics.csv")[2]
    postfix = bar.train_progress_bar.postfix
    assert f"rho={Tqdm.format_num(last['fairness/rho_standalone'])}" in postfix
    assert f"rho_cgsv={Tqdm.format_num(last['fairness/rho_cgsv'])}" in postfix
    assert f"best_acc={Tqdm.format_num(last['test/accuracy/best'])}" in postfix
    assert "fairness/" not in postfix and "test/" not in postfix


def test_before_the_first_evaluation_rho_and_best_accuracy_are_shown_as_pending() -> None:
    bar = RoundProgressBar()
    trainer = L.Trainer(logger=False, callbacks=[FairnessMonitor(), bar], max_epochs=7)
    shown = bar.get_metrics(trainer, None)
    assert shown == {"rho": "-", "best_acc": "-"}

    without_monitor = RoundProgressBar()
    trainer = L.Trainer(logger=False, callbacks=[without_monitor])
    assert without_monitor.get_metrics(trainer, None) == {}
