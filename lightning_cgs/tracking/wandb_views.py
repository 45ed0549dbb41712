"""The W&B views of a run: its configuration, the final per-agent table, the summary, charts and figures.

:class:`~lightning_cgs.FairnessMonitor` calls these on rank zero for every ``WandbLogger`` among the trainer's loggers
(Lightning's own or :class:`~lightning_cgs.tracking.CollaborativeWandbLogger`). Nothing here passes a step to W&B:
the rows land on Lightning's ``trainer/global_step`` axis through W&B's ``step_sync``. A W&B error is reported once
and never reaches training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.fabric.loggers.logger import _DummyExperiment
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_warn

from lightning_cgs.report import AGENT_COLUMNS, SUMMARY_KEYS, FairnessReport
from lightning_cgs.tracking.plots import contribution_vs_reward_fit, describe_fit, describe_rho
from lightning_cgs.tracking.series import FairnessSeries

TABLE_KEY = "report/agents"
SUMMARY_PREFIX = "report/"
CHART_PREFIX = "charts/"
IMAGE_PREFIX = "plots/"


def wandb_loggers(trainer: L.Trainer) -> list[WandbLogger]:
    """The trainer's W&B loggers."""
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]


def update_wandb_config(trainer: L.Trainer, values: Mapping[str, Any]) -> None:
    """Add ``values`` to the W&B config of every W&B logger (rank zero only; a W&B error is reported once)."""
    if not trainer.is_global_zero:
        return
    clean = _jsonable(dict(values))
    for logger in wandb_loggers(trainer):
        _safely(
            logger, "updating the run's config", lambda lg: lg.experiment.config.update(clean, allow_val_change=True)
        )


def report_table(report: FairnessReport) -> tuple[list[str], list[list[Any]]]:
    """The columns and rows of the per-agent table: the columns of ``fairness_report.csv``, ``None`` where n/a."""
    columns = list(AGENT_COLUMNS)
    return columns, [[_cell(row.get(column)) for column in columns] for row in report.agents]


def report_summary(report: FairnessReport) -> dict[str, float | int]:
    """The report's measures under ``report/<measure>`` (undefined measures are left out), and ``report/rounds``."""
    summary: dict[str, float | int] = {f"{SUMMARY_PREFIX}rounds": int(report.rounds)}
    for key in SUMMARY_KEYS:
        value = report.summary.get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            summary[f"{SUMMARY_PREFIX}{key}"] = value
    return summary


def publish_report(
    trainer: L.Trainer, report: FairnessReport, series: FairnessSeries, images: Mapping[str, Path] | None = None
) -> None:
    """Send the final views to every W&B logger (rank zero only).

    - the summary: ``report/<measure>`` for every defined measure of the report, and ``report/rounds``;
    - ``report/agents``: a W&B Table with the columns of the CLI's report;
    - ``charts/reputation``, ``charts/reward_fraction``, ``charts/contribution``, ``charts/accuracy``: one line per
      agent over the rounds; ``charts/contribution_vs_reward``: final accuracy against standalone accuracy, with
      rho_standalone and the fitted line in the title;
    - ``plots/<name>``: the PNG figures, when they were drawn.
    """
    if not trainer.is_global_zero:
        return
    loggers = wandb_loggers(trainer)
    if not loggers:
        return
    import wandb

    summary = report_summary(report)
    columns, rows = report_table(report)
    payload: dict[str, Any] = {TABLE_KEY: wandb.Table(columns=columns, data=rows)}
    payload.update(_charts(wandb, series))
    for name, path in (images or {}).items():
        payload[f"{IMAGE_PREFIX}{name}"] = wandb.Image(str(path), caption=name.replace("_", " "))

    def send(logger: WandbLogger) -> None:
        experiment = logger.experiment
        experiment.summary.update(summary)
        experiment.log(payload)

    for logger in loggers:
        _safely(logger, "sending the final report", send)


def _charts(wandb: Any, series: FairnessSeries) -> dict[str, Any]:
    charts: dict[str, Any] = {}
    labels = series.agent_labels()
    lines = {
        "reputation": (series.rounds, series.reputation, "Reputation per agent"),
        "reward_fraction": (series.rounds, series.reward_fraction, "Reward fraction q per agent"),
        "contribution": (series.rounds, series.contributions, "Contribution psi per agent"),
        "accuracy": (series.evaluated_rounds, series.accuracy, "Test accuracy per agent"),
    }
    for name, (rounds, values, title) in lines.items():
        if values.size == 0 or bool(np.all(np.isnan(values))):
            continue
        charts[f"{CHART_PREFIX}{name}"] = wandb.plot.line_series(
            xs=[int(r) for r in rounds],
            ys=[[_cell(v) for v in values[:, i]] for i in range(values.shape[1])],
            keys=labels,
            title=title,
            xname="round",
        )

    rho, line = contribution_vs_reward_fit(series.final_standalone_accuracy, series.final_accuracy)
    points = [
        [i, float(x), float(y)]
        for i, (x, y) in enumerate(zip(series.final_standalone_accuracy, series.final_accuracy, strict=True))
        if not (math.isnan(x) or math.isnan(y))
    ]
    if points:
        standalone, final = series.final_standalone_accuracy, series.final_accuracy
        title = f"Standalone vs final accuracy: rho_standalone = {describe_rho(rho, standalone, final)}"
        if line is not None:
            title += f" (fit: {describe_fit(*line)})"
        table = wandb.Table(columns=["agent", "standalone_accuracy", "final_accuracy"], data=points)
        charts[f"{CHART_PREFIX}contribution_vs_reward"] = wandb.plot.scatter(
            table, "standalone_accuracy", "final_accuracy", title=title
        )
    return charts


def _safely(logger: WandbLogger, what: str, action: Callable[[WandbLogger], Any]) -> None:
    if getattr(logger, "failed", False):
        return
    try:
        if isinstance(logger.experiment, _DummyExperiment):  # W&B disabled after a failed start
            return
        action(logger)
    except Exception as error:  # noqa: BLE001 - W&B must never stop training
        if hasattr(logger, "disable_after_error"):
            logger.disable_after_error(what, error)
        elif not getattr(logger, "_lightning_cgs_warned", False):
            logger._lightning_cgs_warned = True  # type: ignore[attr-defined]
            rank_zero_warn(f"W&B failed while {what} ({type(error).__name__}: {error}); training goes on.")


def _cell(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _jsonable(value: Any) -> Any:
    """Plain JSON values for the W&B config: infinities as strings, tensors and arrays as lists."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
