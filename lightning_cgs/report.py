"""The fairness report: per-agent outcomes and the fairness measures (README: "The report")."""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from lightning_cgs.functional import individual_rationality, pearson_correlation

AGENT_COLUMNS = (
    "agent",
    "shard_size",
    "standalone_accuracy",
    "final_accuracy",
    "reputation",
    "reward_fraction",
)
SUMMARY_KEYS = (
    "rho_standalone",
    "rho_cgsv",
    "individual_rationality",
    "best_accuracy",
    "mean_accuracy",
    "accuracy_spread",
    "server_accuracy",
    "rho_standalone_mean",
    "rho_cgsv_mean",
    "seconds_per_round",
)


def fairness_measures(
    accuracy: Tensor, standalone_accuracy: Tensor | None, reputation: Tensor | None
) -> dict[str, float | None]:
    """rho_standalone, rho_cgsv and individual rationality; ``None`` where a measure is undefined.

    A correlation is undefined when either side is constant (for instance, every agent reached the same accuracy).
    """
    measures: dict[str, float | None] = {"rho_standalone": None, "rho_cgsv": None, "individual_rationality": None}
    if standalone_accuracy is not None:
        measures["rho_standalone"] = pearson_correlation(accuracy, standalone_accuracy)
        measures["individual_rationality"] = individual_rationality(accuracy, standalone_accuracy)
    if reputation is not None:
        measures["rho_cgsv"] = pearson_correlation(accuracy, reputation.to(accuracy.dtype))
    return measures


@dataclass
class FairnessReport:
    """The final per-agent table and summary of a run.

    Attributes:
        agents: one row per agent, with the keys of ``AGENT_COLUMNS``.
        summary: the fairness and performance measures, with the keys of ``SUMMARY_KEYS`` (``None`` where undefined).
        rounds: rounds completed.
        history: one record per evaluation: ``round`` (0-based index), the measures, ``accuracy`` and
            ``standalone_accuracy`` of every agent, ``server_accuracy``.
        per_round: one record per round: ``round`` (0-based index), every agent's ``contributions``, ``reputation``
            and ``reward_fraction`` (``None`` where the callback that computes it was absent).
    """

    agents: list[dict[str, Any]]
    summary: dict[str, float | int | None]
    rounds: int
    history: list[dict[str, Any]] = field(default_factory=list)
    per_round: list[dict[str, Any]] = field(default_factory=list)

    def format(self) -> str:
        """A plain-text table, as printed at the end of a run."""
        header = ["agent", "shard", "standalone acc", "final acc", "reputation", "reward q"]
        lines = [" | ".join(f"{h:>14}" for h in header)]
        lines.append("-" * len(lines[0]))
        for row in self.agents:
            cells = [
                str(row["agent"]),
                str(row["shard_size"]),
                _fmt(row["standalone_accuracy"]),
                _fmt(row["final_accuracy"]),
                _fmt(row["reputation"]),
                _fmt(row["reward_fraction"]),
            ]
            lines.append(" | ".join(f"{c:>14}" for c in cells))
        lines.append("")
        lines.append(f"rounds: {self.rounds}")
        for key in SUMMARY_KEYS:
            value = self.summary.get(key)
            lines.append(f"{key}: {_fmt(value) if value is not None else self._why_missing(key)}")
        return "\n".join(lines)

    def _why_missing(self, key: str) -> str:
        """Why a summary value is ``None``: its inputs were not measured, or a correlation had a constant side."""
        if key.startswith("rho_cgsv") and all(row["reputation"] is None for row in self.agents):
            return "n/a (no reputations: CosineGradientShapley was not in the callbacks)"
        needs_twins = key.startswith("rho_standalone") or key == "individual_rationality"
        if needs_twins and all(row["standalone_accuracy"] is None for row in self.agents):
            return "n/a (no standalone accuracies: standalone_baseline=False)"
        if key.startswith("rho"):
            return "undefined (a constant vector has no correlation)"
        return "n/a"

    def save(self, folder: str | Path, stem: str = "fairness_report") -> tuple[Path, Path]:
        """Write ``<stem>.csv`` (one row per agent, then the summary as ``key,value`` rows) and ``<stem>.json``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        csv_path, json_path = folder / f"{stem}.csv", folder / f"{stem}.json"
        with csv_path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(AGENT_COLUMNS)
            for row in self.agents:
                writer.writerow([_csv_value(row[column]) for column in AGENT_COLUMNS])
            writer.writerow([])
            writer.writerow(["measure", "value"])
            writer.writerow(["rounds", self.rounds])
            for key in SUMMARY_KEYS:
                writer.writerow([key, _csv_value(self.summary.get(key))])
        json_path.write_text(json.dumps(asdict(self), indent=2, default=_json_default) + "\n")
        return csv_path, json_path


def mean_over_evaluations(history: list[dict[str, Any]], key: str) -> float | None:
    """Mean of a measure over the evaluations of a run where it was defined (``None`` if it never was).

    A correlation at one evaluation can hang on a test example or two when the agents' models are alike; its mean
    over the run says whether the sign holds.
    """
    values = [entry[key] for entry in history if entry.get(key) is not None]
    return statistics.fmean(values) if values else None


def median_seconds(history: list[dict[str, float]]) -> float | None:
    """Median over rounds of the time spent training, scoring and rewarding (evaluation excluded)."""
    totals = [sum(v for k, v in entry.items() if k in ("train", "cgsv", "reward")) for entry in history]
    totals = [t for t in totals if t > 0]
    return statistics.median(totals) if totals else None


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _csv_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.tolist()
    raise TypeError(f"Cannot serialise {type(value).__name__}")
