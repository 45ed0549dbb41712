"""``FairnessSeries``: a run's per-round numbers as plain arrays, from the live callbacks or a finished run's files.

The figures (:mod:`lightning_cgs.tracking.plots`) and the W&B charts (:mod:`lightning_cgs.tracking.wandb_views`) read
only this, so a live run and ``lightning-cgs plot`` draw the same pictures from the same numbers.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lightning_cgs.report import FairnessReport

METRICS_FILE = "metrics.csv"
REPORT_FILE = "fairness_report.json"

# Per-agent series and the metric key each one is logged under (one key per agent: ``<prefix>/agent_<i>``).
ROUND_KEYS = {
    "contributions": "cgsv/contribution",
    "reputation": "cgsv/reputation",
    "reward_fraction": "reward/fraction",
}
EVALUATION_KEYS = {
    "accuracy": "test/accuracy",
    "standalone_accuracy": "test/standalone_accuracy",
}


@dataclass
class FairnessSeries:
    """What the pictures of a run show, as NumPy arrays (``NaN`` where a value was not measured).

    Round numbers count completed rounds: 1 is the end of the first round.

    Attributes:
        rounds: ``(R,)`` the rounds of the per-round series.
        contributions: ``(R, N)`` the contribution psi of every agent in every round.
        reputation: ``(R, N)`` every agent's reputation after every round.
        reward_fraction: ``(R, N)`` every agent's reward fraction q in every round.
        evaluated_rounds: ``(E,)`` the rounds after which the agents were evaluated.
        accuracy: ``(E, N)`` test accuracy of every agent's model.
        standalone_accuracy: ``(E, N)`` test accuracy of every agent's standalone twin.
        server_accuracy: ``(E,)`` test accuracy of the server model.
        rho_standalone: ``(E,)`` the fairness measure after each evaluation (``NaN`` where undefined).
        rho_cgsv: ``(E,)`` correlation of accuracies with reputations after each evaluation.
        shard_sizes: ``(N,)`` examples per agent (``-1`` where unknown).
        final_accuracy: ``(N,)`` every agent's final test accuracy (its reward).
        final_standalone_accuracy: ``(N,)`` every agent's standalone accuracy (its contribution).
    """

    rounds: np.ndarray
    contributions: np.ndarray
    reputation: np.ndarray
    reward_fraction: np.ndarray
    evaluated_rounds: np.ndarray
    accuracy: np.ndarray
    standalone_accuracy: np.ndarray
    server_accuracy: np.ndarray
    rho_standalone: np.ndarray
    rho_cgsv: np.ndarray
    shard_sizes: np.ndarray
    final_accuracy: np.ndarray
    final_standalone_accuracy: np.ndarray

    @property
    def num_agents(self) -> int:
        return int(self.shard_sizes.shape[0])

    def agent_labels(self) -> list[str]:
        """``"agent 3 (n=412)"`` for every agent (without the size where it is unknown)."""
        return [
            f"agent {i}" + (f" (n={int(size)})" if size >= 0 else "")
            for i, size in enumerate(self.shard_sizes.tolist())
        ]

    # ------------------------------------------------------------------------------------------ constructors
    @classmethod
    def from_records(
        cls,
        num_agents: int,
        per_round: Iterable[Mapping[str, Any]],
        evaluations: Iterable[Mapping[str, Any]],
        agents: Iterable[Mapping[str, Any]] = (),
    ) -> FairnessSeries:
        """Build the series from the records that :class:`~lightning_cgs.FairnessMonitor` keeps.

        Args:
            num_agents: N.
            per_round: one mapping per round: ``round`` (0-based index), ``contributions``, ``reputation`` and
                ``reward_fraction`` (lists of N numbers, or ``None``).
            evaluations: one mapping per evaluation: ``round`` (0-based index), ``accuracy``,
                ``standalone_accuracy`` (lists or ``None``), ``server_accuracy``, ``rho_standalone``, ``rho_cgsv``.
            agents: the final per-agent rows of the report (``shard_size``, ``final_accuracy``,
                ``standalone_accuracy``); without them the last evaluation stands for the final state.
        """
        per_round, evaluations, agents = list(per_round), list(evaluations), list(agents)
        columns = {name: _matrix([record.get(name) for record in per_round], num_agents) for name in ROUND_KEYS}
        accuracy = _matrix([record.get("accuracy") for record in evaluations], num_agents)
        standalone = _matrix([record.get("standalone_accuracy") for record in evaluations], num_agents)
        if agents:
            shard_sizes = np.array([_number(row.get("shard_size"), -1) for row in agents], dtype=np.int64)
            final = np.array([_number(row.get("final_accuracy")) for row in agents], dtype=np.float64)
            final_standalone = np.array([_number(row.get("standalone_accuracy")) for row in agents], dtype=np.float64)
        else:
            shard_sizes = np.full(num_agents, -1, dtype=np.int64)
            final = accuracy[-1].copy() if len(evaluations) else np.full(num_agents, np.nan)
            final_standalone = standalone[-1].copy() if len(evaluations) else np.full(num_agents, np.nan)
        return cls(
            rounds=np.array([int(record["round"]) + 1 for record in per_round], dtype=np.int64),
            contributions=columns["contributions"],
            reputation=columns["reputation"],
            reward_fraction=columns["reward_fraction"],
            evaluated_rounds=np.array([int(record["round"]) + 1 for record in evaluations], dtype=np.int64),
            accuracy=accuracy,
            standalone_accuracy=standalone,
            server_accuracy=np.array([_number(r.get("server_accuracy")) for r in evaluations], dtype=np.float64),
            rho_standalone=np.array([_number(r.get("rho_standalone")) for r in evaluations], dtype=np.float64),
            rho_cgsv=np.array([_number(r.get("rho_cgsv")) for r in evaluations], dtype=np.float64),
            shard_sizes=shard_sizes,
            final_accuracy=final,
            final_standalone_accuracy=final_standalone,
        )

    @classmethod
    def from_report(cls, report: FairnessReport) -> FairnessSeries:
        """The series of a finished run's :class:`~lightning_cgs.FairnessReport` (what the live run plots)."""
        return cls.from_records(len(report.agents), report.per_round, report.history, report.agents)

    @classmethod
    def from_metrics_csv(cls, path: str | Path, agents: Iterable[Mapping[str, Any]] = ()) -> FairnessSeries:
        """Read the series from the ``metrics.csv`` that Lightning's ``CSVLogger`` wrote during a run.

        Rows of one round (Lightning's ``epoch``) are merged; the round-end metrics of the callbacks
        (``cgsv/...``, ``reward/...``, ``test/...``, ``fairness/...``) become the series.

        Args:
            path: the ``metrics.csv`` file.
            agents: the final per-agent rows of the run's report, if there is one.

        Raises:
            ValueError: If the file holds none of the per-agent metrics of lightning_cgs.
        """
        path = Path(path)
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        header = set(rows[0]) if rows else set()
        num_agents = _count_agents(header)
        if num_agents == 0:
            raise ValueError(
                f"`{path}` holds no per-agent metrics of lightning_cgs (columns such as "
                "`cgsv/reputation/agent_0` or `test/accuracy/agent_0`); is it the metrics file of a lightning_cgs run?"
            )

        merged: dict[int, dict[str, float]] = {}
        for row in rows:
            epoch = _round_of(row)
            if epoch is None:
                continue
            values = merged.setdefault(epoch, {})
            for key, text in row.items():
                if text not in ("", None):
                    values[key] = float(text)

        def agent_values(values: Mapping[str, float], prefix: str) -> list[float] | None:
            found = [values.get(f"{prefix}/agent_{i}") for i in range(num_agents)]
            return None if all(v is None for v in found) else [math.nan if v is None else v for v in found]

        per_round, evaluations = [], []
        for index in sorted(merged):
            values = merged[index]
            record = {name: agent_values(values, prefix) for name, prefix in ROUND_KEYS.items()}
            if any(v is not None for v in record.values()):
                per_round.append({"round": index, **record})
            if agent_values(values, "test/accuracy") is not None:
                evaluations.append(
                    {
                        "round": index,
                        **{name: agent_values(values, prefix) for name, prefix in EVALUATION_KEYS.items()},
                        "server_accuracy": values.get("test/accuracy/server"),
                        "rho_standalone": values.get("fairness/rho_standalone"),
                        "rho_cgsv": values.get("fairness/rho_cgsv"),
                    }
                )
        return cls.from_records(num_agents, per_round, evaluations, agents)

    @classmethod
    def from_run_folder(cls, folder: str | Path) -> FairnessSeries:
        """Read a finished run's folder: its ``metrics.csv`` and, if present, its ``fairness_report.json``.

        Without a ``metrics.csv`` (a run logged only to W&B) the per-round records saved in the report are used.

        Raises:
            FileNotFoundError: If the folder holds neither file; the message lists run folders found below it.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"Expected a run folder, but `{folder}` is not a directory.")
        metrics, report_path = folder / METRICS_FILE, folder / REPORT_FILE
        report = json.loads(report_path.read_text()) if report_path.is_file() else None
        agents = report.get("agents", []) if report else []
        if metrics.is_file():
            return cls.from_metrics_csv(metrics, agents)
        if report is not None:
            return cls.from_records(len(agents), report.get("per_round", []), report.get("history", []), agents)
        candidates = sorted(
            str(path.parent) for pattern in (METRICS_FILE, REPORT_FILE) for path in folder.glob(f"**/{pattern}")
        )
        hint = (
            f" Run folders below it: {', '.join(dict.fromkeys(candidates))}."
            if candidates
            else " Is it the log folder of a run (for example `runs/digits/version_0`)?"
        )
        raise FileNotFoundError(f"`{folder}` holds neither `{METRICS_FILE}` nor `{REPORT_FILE}`.{hint}")


def _matrix(rows: list[Any], num_agents: int) -> np.ndarray:
    matrix = np.full((len(rows), num_agents), np.nan, dtype=np.float64)
    for r, row in enumerate(rows):
        if row is not None:
            matrix[r] = [_number(v) for v in row]
    return matrix


def _number(value: Any, missing: float = math.nan) -> float:
    if value is None or value == "":
        return missing
    return float(value)


def _count_agents(columns: Iterable[str]) -> int:
    indices = [
        int(column.rsplit("agent_", 1)[1])
        for column in columns
        if "/agent_" in column and column.rsplit("agent_", 1)[1].isdigit()
    ]
    return max(indices) + 1 if indices else 0


def _round_of(row: Mapping[str, str]) -> int | None:
    """0-based round index of a ``metrics.csv`` row: from ``round`` (1-based, logged by the monitor) or ``epoch``."""
    if row.get("round"):
        return int(float(row["round"])) - 1
    if row.get("epoch"):
        return int(float(row["epoch"]))
    return None
