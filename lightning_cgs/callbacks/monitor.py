"""``FairnessMonitor``: evaluate every agent, measure fairness, log it, and write the final report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lightning_cgs.callbacks._common import check_order, find_callback, is_round_end, require_module
from lightning_cgs.module import CollaborativeModule, Evaluation, evaluation_metrics
from lightning_cgs.report import FairnessReport, fairness_measures, median_seconds

_PROGRESS_BAR_KEYS = ("fairness/rho_standalone", "fairness/rho_cgsv", "test/accuracy/best")


class FairnessMonitor(L.Callback):
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

    A correlation of a constant vector is undefined: it is then not logged that round and reported as undefined.
    At the end of training it prints the report and saves it as ``fairness_report.csv`` and ``.json`` in the
    trainer's log folder.

    Args:
        every_n_rounds: evaluate after every n-th round (and after the last).
        dataloader: the evaluation data; ``None`` uses ``trainer.datamodule.test_dataloader()``.
        report: print and save the final report.

    Example:
        >>> FairnessMonitor(every_n_rounds=5)
        FairnessMonitor(every_n_rounds=5)
    """

    def __init__(self, every_n_rounds: int = 1, dataloader: Any = None, report: bool = True) -> None:
        if isinstance(every_n_rounds, bool) or not isinstance(every_n_rounds, int) or every_n_rounds < 1:
            raise ValueError(f"Expected argument `every_n_rounds` to be an integer >= 1, but got {every_n_rounds!r}.")
        self.every_n_rounds = every_n_rounds
        self.dataloader = dataloader
        self.report = report
        self.history: list[dict[str, Any]] = []
        self.last_evaluated_round = -1
        self.final_report: FairnessReport | None = None
        self._evaluation: Evaluation | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(every_n_rounds={self.every_n_rounds})"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        module = require_module(self, pl_module)
        check_order(trainer, self)
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
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not is_round_end(batch):
            return
        module = require_module(self, pl_module)
        round_index = module.round_index
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
        if self.report:
            self._write_report(trainer, self.final_report)

    # ------------------------------------------------------------------------------------------------- work
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
            "server_accuracy": evaluation.server_accuracy,
            "seconds_per_round": median_seconds(module.round_history),
        }
        return FairnessReport(agents=rows, summary=summary, rounds=module.round_index, history=list(self.history))

    @rank_zero_only
    def _write_report(self, trainer: L.Trainer, report: FairnessReport) -> None:
        folder = Path(trainer.log_dir or trainer.default_root_dir)
        csv_path, json_path = report.save(folder)
        rank_zero_info(
            f"\nFairness report after {report.rounds} rounds\n{report.format()}\nSaved: {csv_path}, {json_path}"
        )

    # ------------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "last_evaluated_round": self.last_evaluated_round}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict["history"])
        self.last_evaluated_round = int(state_dict["last_evaluated_round"])
