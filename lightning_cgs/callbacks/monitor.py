"""``FairnessMonitor``: evaluate every agent, measure fairness, log it, and write the final report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lightning_cgs.callbacks._common import RoundEndCallback, find_callback, require_module
from lightning_cgs.evaluation import Evaluation, evaluation_metrics
from lightning_cgs.module import CollaborativeModule
from lightning_cgs.report import FairnessReport, fairness_measures, mean_over_evaluations, median_seconds
from lightning_cgs.tracking.plots import PLOT_EXTRA, matplotlib_available, save_figures
from lightning_cgs.tracking.series import FairnessSeries
from lightning_cgs.tracking.wandb_views import publish_report, update_wandb_config, wandb_loggers

_PROGRESS_BAR_KEYS = ("fairness/rho_standalone", "fairness/rho_cgsv", "test/accuracy/best")


class FairnessMonitor(RoundEndCallback):
    """Evaluate all agents, their standalone twins and the server model, and measure how fair the rewards were.

    Every ``every_n_rounds`` rounds, and always after the last one, it evaluates every model on the test data in
    one pass and logs, through the trainer's loggers:

    - ``test/accuracy/agent_<i>``, ``test/loss/agent_<i>``, ``test/standalone_accuracy/agent_<i>``,
      ``test/accuracy/server``, ``test/accuracy/best``, ``test/accuracy/mean``;
    - ``fairness/rho_standalone``: Pearson correlation between the agents' accuracies (what they got) and their
      standalone twins' accuracies (what they brought);
    - ``fairness/rho_cgsv``: Pearson correlation between the agents' accuracies and their reputations;
    - ``fairness/individual_rationality``: the share of agents at least as accurate as their standalone twin;
    - ``time/seconds_per_round``: training, scoring and rewarding, evaluation excluded.

    Every round it also logs ``round`` (rounds completed: 1 after the first round) and keeps every agent's
    contribution, reputation and reward fraction (in its state, so a resumed run keeps them).

    A correlation of a constant vector is undefined: it is then not logged that round and reported as undefined.
    At the end of training, on rank zero, it

    - prints the report and saves it as ``fairness_report.csv`` and ``.json`` in the run's log folder (the
      trainer's ``log_dir``; for a W&B logger listed first, ``<save_dir>/<project>/<run id>`` as for checkpoints);
    - draws the figures of :mod:`lightning_cgs.tracking.plots` as PNG files in ``<log folder>/plots`` (needs
      matplotlib, the ``plot`` extra; without it they are skipped with one warning);
    - sends the views of :func:`lightning_cgs.tracking.wandb_views.publish_report` (per-agent table, summary,
      charts, the figures) to every ``WandbLogger`` of the trainer. At the start of training it adds the callbacks'
      settings and the shard sizes to the W&B config.

    Args:
        every_n_rounds: evaluate after every n-th round (and after the last).
        dataloader: the evaluation data; ``None`` uses ``trainer.datamodule.test_dataloader()``.
        report: print and save the final report.
        plots: save the PNG figures; ``None`` (default) saves them when ``report`` is on.
        wandb_views: send the config, table, summary, charts and figures to the trainer's W&B loggers.

    Example:
        >>> FairnessMonitor(every_n_rounds=5)
        FairnessMonitor(every_n_rounds=5)
    """

    def __init__(
        self,
        every_n_rounds: int = 1,
        dataloader: Any = None,
        report: bool = True,
        plots: bool | None = None,
        wandb_views: bool = True,
    ) -> None:
        if isinstance(every_n_rounds, bool) or not isinstance(every_n_rounds, int) or every_n_rounds < 1:
            raise ValueError(f"Expected argument `every_n_rounds` to be an integer >= 1, but got {every_n_rounds!r}.")
        self.every_n_rounds = every_n_rounds
        self.dataloader = dataloader
        self.report = report
        self.plots = report if plots is None else bool(plots)
        self.wandb_views = wandb_views
        self.history: list[dict[str, Any]] = []
        self.per_round: list[dict[str, Any]] = []
        self.last_evaluated_round = -1
        self.final_report: FairnessReport | None = None
        self.figures: dict[str, Path] = {}
        self._evaluation: Evaluation | None = None
        self._warned_no_matplotlib = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(every_n_rounds={self.every_n_rounds})"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        module = require_module(self, pl_module)
        if self.dataloader is None and not hasattr(getattr(trainer, "datamodule", None), "test_dataloader"):
            raise MisconfigurationException(
                "`FairnessMonitor` needs evaluation data: pass `FairnessMonitor(dataloader=...)` or fit with a "
                "datamodule that defines `test_dataloader()`."
            )
        if not module.standalone_baseline:
            rank_zero_warn(
                "`FairnessMonitor`: the module has `standalone_baseline=False`, so rho_standalone and individual "
                "rationality are not measured."
            )

    # ------------------------------------------------------------------------------------------------- hooks
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.wandb_views and wandb_loggers(trainer):
            update_wandb_config(trainer, self._run_config(trainer, require_module(self, pl_module)))

    def on_round_end(self, trainer: L.Trainer, module: CollaborativeModule) -> None:
        round_index = module.round_index
        self._record_round(module, round_index)
        last = trainer.max_epochs is not None and trainer.max_epochs > 0 and round_index + 1 >= trainer.max_epochs
        if round_index <= self.last_evaluated_round:
            return
        if (round_index + 1) % self.every_n_rounds == 0 or last:
            self._evaluate_and_log(trainer, module, round_index)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        module = require_module(self, pl_module)
        final_round = module.round_index - 1
        if final_round < 0:
            return
        if self.last_evaluated_round < final_round or self._evaluation is None:
            self._evaluation = module.evaluate(self._dataloader(trainer))
            self.last_evaluated_round = final_round
        self.final_report = self._build_report(trainer, module, self._evaluation)
        if not (self.report or self.plots or (self.wandb_views and wandb_loggers(trainer))):
            return
        log_dir = trainer.log_dir  # on every rank: it broadcasts
        if not trainer.is_global_zero:
            return
        folder = run_folder(trainer, log_dir)
        if self.report:
            self._write_report(folder, self.final_report)
        series = FairnessSeries.from_report(self.final_report)
        if self.plots:
            self.figures = self._save_figures(series, folder / "plots")
        if self.wandb_views:
            publish_report(trainer, self.final_report, series, self.figures)

    # ------------------------------------------------------------------------------------------------- work
    def _record_round(self, module: CollaborativeModule, round_index: int) -> None:
        """Keep this round's contributions, reputations and reward fractions (once, also across a resume)."""
        if self.per_round and self.per_round[-1]["round"] >= round_index:
            return
        record = module.round
        self.per_round.append(
            {
                "round": round_index,
                "contributions": _as_list(None if record is None else record.contributions),
                "reputation": _as_list(None if record is None else record.reputation),
                "reward_fraction": _as_list(None if record is None else record.reward_fractions),
            }
        )
        module.log("round", float(round_index + 1), on_step=False, on_epoch=True, batch_size=1)

    def _dataloader(self, trainer: L.Trainer) -> Any:
        return self.dataloader if self.dataloader is not None else trainer.datamodule.test_dataloader()

    def _evaluate_and_log(self, trainer: L.Trainer, module: CollaborativeModule, round_index: int) -> None:
        evaluation = module.evaluate(self._dataloader(trainer))
        reputation = self._reputation(trainer)
        measures = fairness_measures(evaluation.accuracy, evaluation.standalone_accuracy, reputation)

        metrics = evaluation_metrics(evaluation, prefix="test")
        metrics.update({f"fairness/{key}": value for key, value in measures.items() if value is not None})
        seconds = median_seconds(module.round_history + [module.round.seconds if module.round else {}])
        if seconds is not None:
            metrics["time/seconds_per_round"] = seconds
        # per-agent values straight to the loggers; the few summaries through `log`, where other callbacks
        # (checkpointing, early stopping) and the progress bar can see them
        per_agent = {key: metrics.pop(key) for key in list(metrics) if "/agent_" in key}
        module.log_round_metrics(per_agent)
        shown = {k: metrics.pop(k) for k in _PROGRESS_BAR_KEYS if k in metrics}
        module.log_dict(metrics, on_step=False, on_epoch=True, batch_size=1)
        module.log_dict(shown, on_step=False, on_epoch=True, batch_size=1, prog_bar=True)

        self._evaluation = evaluation
        self.last_evaluated_round = round_index
        self.history.append(
            {
                "round": round_index,
                **measures,
                "best_accuracy": float(evaluation.accuracy.max()),
                "mean_accuracy": float(evaluation.accuracy.mean()),
                "server_accuracy": evaluation.server_accuracy,
                "accuracy": evaluation.accuracy.tolist(),
                "standalone_accuracy": (
                    evaluation.standalone_accuracy.tolist() if evaluation.standalone_accuracy is not None else None
                ),
            }
        )

    @staticmethod
    def _reputation(trainer: L.Trainer) -> torch.Tensor | None:
        scorer = find_callback(trainer, "CosineGradientShapley")
        return None if scorer is None or scorer.reputation is None else scorer.reputation

    def _build_report(self, trainer: L.Trainer, module: CollaborativeModule, evaluation: Evaluation) -> FairnessReport:
        reputation = self._reputation(trainer)
        rewarder = find_callback(trainer, "FairGradientReward")
        fractions = None if rewarder is None else rewarder.fractions
        standalone = evaluation.standalone_accuracy
        rows = []
        for i in range(module.num_agents):
            rows.append(
                {
                    "agent": i,
                    "shard_size": int(module.shard_sizes[i]),
                    "standalone_accuracy": None if standalone is None else float(standalone[i]),
                    "final_accuracy": float(evaluation.accuracy[i]),
                    "reputation": None if reputation is None else float(reputation[i]),
                    "reward_fraction": None if fractions is None else float(fractions[i]),
                }
            )
        measures = fairness_measures(evaluation.accuracy, standalone, reputation)
        summary = {
            **measures,
            "best_accuracy": float(evaluation.accuracy.max()),
            "mean_accuracy": float(evaluation.accuracy.mean()),
            "accuracy_spread": float(evaluation.accuracy.max() - evaluation.accuracy.min()),
            "server_accuracy": evaluation.server_accuracy,
            "rho_standalone_mean": mean_over_evaluations(self.history, "rho_standalone"),
            "rho_cgsv_mean": mean_over_evaluations(self.history, "rho_cgsv"),
            "seconds_per_round": median_seconds(module.round_history),
        }
        return FairnessReport(
            agents=rows,
            summary=summary,
            rounds=module.round_index,
            history=list(self.history),
            per_round=list(self.per_round),
        )

    @rank_zero_only
    def _write_report(self, folder: Path, report: FairnessReport) -> None:
        csv_path, json_path = report.save(folder)
        # the run's result goes to standard output (Lightning's own messages go to standard error)
        print(
            f"\nFairness report after {report.rounds} round{'s' if report.rounds != 1 else ''}\n{report.format()}\n"
            f"Saved: {csv_path}, {json_path}",
            flush=True,
        )

    def _save_figures(self, series: FairnessSeries, folder: Path) -> dict[str, Path]:
        if not matplotlib_available():
            if not self._warned_no_matplotlib:
                rank_zero_warn(
                    f"`FairnessMonitor`: matplotlib is not installed, so no PNG figures are saved: {PLOT_EXTRA}"
                )
                self._warned_no_matplotlib = True
            return {}
        try:
            figures = save_figures(series, folder)
        except Exception as error:  # noqa: BLE001 - a figure must never fail a finished training
            rank_zero_warn(f"`FairnessMonitor`: drawing the figures failed ({type(error).__name__}: {error}).")
            return {}
        rank_zero_info(f"Figures: {', '.join(str(path) for path in figures.values())}")
        return figures

    def _run_config(self, trainer: L.Trainer, module: CollaborativeModule) -> dict[str, Any]:
        """What the W&B config gets beyond the module's and datamodule's hyperparameters."""
        config: dict[str, Any] = {"rounds": trainer.max_epochs, "monitor": {"every_n_rounds": self.every_n_rounds}}
        scorer = find_callback(trainer, "CosineGradientShapley")
        if scorer is not None:
            config["cgsv"] = {
                key: getattr(scorer, key)
                for key in ("alpha", "gamma", "eps", "reputation_floor", "first_round_weights")
            }
        rewarder = find_callback(trainer, "FairGradientReward")
        if rewarder is not None:
            config["reward"] = {"beta": rewarder.beta, "mode": rewarder.mode}
        try:
            config["shard_sizes"] = [int(n) for n in trainer.datamodule.shard_sizes]
        except Exception:  # noqa: BLE001 - no datamodule, or one without shard sizes: known after the first round
            if int(module.shard_sizes.sum()) > 0:
                config["shard_sizes"] = module.shard_sizes.tolist()
        return config

    # ------------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "per_round": self.per_round,
            "last_evaluated_round": self.last_evaluated_round,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict["history"])
        self.per_round = list(state_dict.get("per_round", []))
        self.last_evaluated_round = int(state_dict["last_evaluated_round"])


def run_folder(trainer: L.Trainer, log_dir: str | None) -> Path:
    """The run's own log folder on rank zero: ``log_dir`` (the trainer's), or, when a W&B logger comes first (its
    ``log_dir`` is the ``save_dir`` that all runs share), ``<save_dir>/<project>/<run id>``, where Lightning puts that
    run's checkpoints."""
    first = trainer.loggers[0] if trainer.loggers else None
    if isinstance(first, WandbLogger) and first.save_dir is not None and isinstance(first.version, str):
        return Path(first.save_dir) / str(first.name) / first.version
    return Path(log_dir or trainer.default_root_dir)


def _as_list(values: torch.Tensor | None) -> list[float] | None:
    return None if values is None else [float(v) for v in values.detach().cpu().tolist()]
