"""Two rounds with a real ``CollaborativeWandbLogger`` offline, checked in the run's own ``.wandb`` records.

Expected values come from elsewhere: the callbacks' state, the datamodule, and the ``metrics.csv`` that Lightning's
``CSVLogger`` wrote next to W&B (correlations recomputed with NumPy).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from lightning.pytorch.loggers import CSVLogger

from lightning_cgs import CollaborativeWandbLogger
from tests.tracking.conftest import (
    ALPHA,
    BETA,
    LR,
    NUM_AGENTS,
    digits_collaboration,
    isolated_wandb,
    metric_steps,
    metrics_by_round,
    pearson_or_none,
)
from tests.tracking.wandb_records import OfflineRun, finish_and_load

ROUNDS = 2


@dataclass
class Finished:
    run: OfflineRun
    metrics_csv: Path
    by_round: dict[int, dict[str, float]]
    shard_sizes: list[int]
    reputation: list[float]
    fractions: list[float]
    mode_during_run: str | None
    logger: CollaborativeWandbLogger


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Finished:
    folder = tmp_path_factory.mktemp("offline")
    with isolated_wandb(folder / "wandb-home"):
        logger = CollaborativeWandbLogger(save_dir=folder, project="tests", mode="offline")
        csv_logger = CSVLogger(folder, name="csv")
        data, module, trainer, (scorer, rewarder, _) = digits_collaboration(folder, [csv_logger, logger], ROUNDS)
        trainer.fit(module, data)
        mode_during_run = os.environ.get("WANDB_MODE")
        run = finish_and_load(logger.experiment.settings.sync_dir)
    metrics_csv = Path(csv_logger.log_dir) / "metrics.csv"
    return Finished(
        run=run,
        metrics_csv=metrics_csv,
        by_round=metrics_by_round(metrics_csv),
        shard_sizes=list(data.shard_sizes),
        reputation=scorer.reputation.tolist(),
        fractions=rewarder.fractions.tolist(),
        mode_during_run=mode_during_run,
        logger=logger,
    )


def last_evaluation(finished: Finished) -> dict[str, float]:
    return finished.by_round[ROUNDS - 1]


def agent_values(values: dict[str, float], prefix: str) -> np.ndarray:
    return np.array([values[f"{prefix}/agent_{i}"] for i in range(NUM_AGENTS)])


def test_the_run_is_offline_and_the_process_mode_untouched(finished: Finished) -> None:
    assert finished.logger.mode == "offline"
    assert finished.logger.fallback_reason is None
    assert finished.mode_during_run is None  # unlike WandbLogger(offline=True), no process-wide WANDB_MODE


def test_summary_holds_the_final_measures(finished: Finished) -> None:
    last = last_evaluation(finished)
    accuracy = agent_values(last, "test/accuracy")
    standalone = agent_values(last, "test/standalone_accuracy")
    summary = finished.run.summary

    assert summary["report/rounds"] == ROUNDS
    for measure, expected in (
        ("rho_standalone", pearson_or_none(accuracy, standalone)),
        ("rho_cgsv", pearson_or_none(accuracy, finished.reputation)),
    ):
        if expected is None:  # undefined: left out of the summary, never a NaN
            assert f"report/{measure}" not in summary
        else:
            assert summary[f"report/{measure}"] == pytest.approx(expected, abs=1e-5)
    assert summary["report/individual_rationality"] == pytest.approx(float(np.mean(accuracy >= standalone)))
    assert summary["report/best_accuracy"] == pytest.approx(accuracy.max(), abs=1e-6)
    assert summary["report/mean_accuracy"] == pytest.approx(accuracy.mean(), abs=1e-6)
    assert summary["report/server_accuracy"] == pytest.approx(last["test/accuracy/server"], abs=1e-6)
    # the per-round scalars end at their last values
    assert summary["fairness/rho_standalone"] == pytest.approx(last["fairness/rho_standalone"], abs=1e-6)
    assert summary["round"] == ROUNDS
    for i in range(NUM_AGENTS):
        assert summary[f"cgsv/reputation/agent_{i}"] == pytest.approx(finished.reputation[i], abs=1e-6)
        assert summary[f"reward/fraction/agent_{i}"] == pytest.approx(finished.fractions[i], abs=1e-6)
        assert summary[f"test/accuracy/agent_{i}"] == pytest.approx(accuracy[i], abs=1e-6)


def test_per_agent_table_matches_the_callbacks_and_the_csv(finished: Finished) -> None:
    table = finished.run.table("report/agents")
    assert table["columns"] == [
        "agent",
        "shard_size",
        "standalone_accuracy",
        "final_accuracy",
        "reputation",
        "reward_fraction",
    ]
    last = last_evaluation(finished)
    assert len(table["data"]) == NUM_AGENTS
    for i, (agent, shard, standalone, final, reputation, fraction) in enumerate(table["data"]):
        assert agent == i
        assert shard == finished.shard_sizes[i]
        assert standalone == pytest.approx(last[f"test/standalone_accuracy/agent_{i}"], abs=1e-6)
        assert final == pytest.approx(last[f"test/accuracy/agent_{i}"], abs=1e-6)
        assert reputation == pytest.approx(finished.reputation[i], abs=1e-6)
        assert fraction == pytest.approx(finished.fractions[i], abs=1e-6)
    assert math.isclose(sum(row[4] for row in table["data"]), 1.0, abs_tol=1e-5)
    assert max(row[5] for row in table["data"]) == 1.0


@pytest.mark.parametrize(
    "key",
    [
        "round",
        *(
            f"{prefix}/agent_{i}"
            for prefix in ("cgsv/contribution", "cgsv/reputation", "reward/fraction")
            for i in range(NUM_AGENTS)
        ),
        "test/accuracy/agent_1",
        "test/loss/agent_2",
        "fairness/rho_standalone",
        "fairness/rho_cgsv",
        "fairness/individual_rationality",
        "test/accuracy/best",
        "test/accuracy/server",
    ],
)
def test_every_round_is_on_lightnings_step_axis(finished: Finished, key: str) -> None:
    """W&B holds the same values at the same ``trainer/global_step`` as the CSV logger's ``step``."""
    in_wandb = [(row["trainer/global_step"], row[key]) for row in finished.run.rows_with(key)]
    in_csv = metric_steps(finished.metrics_csv, key)
    assert len(in_csv) == ROUNDS
    assert [step for step, _ in in_wandb] == [step for step, _ in in_csv]
    assert [value for _, value in in_wandb] == pytest.approx([value for _, value in in_csv], abs=1e-6)


def test_the_x_axis_is_lightnings(finished: Finished) -> None:
    steps = {(m.glob_name, m.step_metric) for m in finished.run.metrics if m.glob_name}
    assert ("*", "trainer/global_step") in steps
    assert all("trainer/global_step" in row for row in finished.run.history)


def test_config_holds_the_hyperparameters_and_the_shard_sizes(finished: Finished) -> None:
    config = finished.run.config
    assert config["num_agents"] == NUM_AGENTS and config["lr"] == LR  # the module's hyperparameters
    assert config["dataset"] == "digits" and config["split"] == "powerlaw"  # the datamodule's
    assert config["cgsv"]["alpha"] == ALPHA and config["reward"]["beta"] == BETA  # the callbacks'
    assert config["rounds"] == ROUNDS
    assert config["shard_sizes"] == finished.shard_sizes


def chart_title(finished: Finished, key: str) -> str:
    return finished.run.config["_wandb"]["visualize"][key]["panel_config"]["stringSettings"]["title"]


def test_charts_hold_the_series(finished: Finished) -> None:
    # reputation per agent over rounds: W&B's line series table has rows (round, agent label, value)
    table = finished.run.table("charts/reputation_table")
    assert table["columns"] == ["step", "lineKey", "lineVal"]
    rows: list[list[Any]] = table["data"]
    assert len(rows) == ROUNDS * NUM_AGENTS
    for round_index, values in sorted(finished.by_round.items()):
        for i in range(NUM_AGENTS):
            (value,) = [v for step, label, v in rows if label.startswith(f"agent {i} ") and step == round_index + 1]
            assert value == pytest.approx(values[f"cgsv/reputation/agent_{i}"], abs=1e-6)
    assert chart_title(finished, "charts/reputation") == "Reputation per agent"
    assert "charts/reward_fraction" in finished.run.config["_wandb"]["visualize"]

    last = last_evaluation(finished)
    rho = pearson_or_none(agent_values(last, "test/accuracy"), agent_values(last, "test/standalone_accuracy"))
    title = chart_title(finished, "charts/contribution_vs_reward")
    assert ("rho_standalone = undefined" if rho is None else f"rho_standalone = {rho:.3f}") in title
    points = finished.run.table("charts/contribution_vs_reward_table")["data"]
    assert [p[0] for p in points] == list(range(NUM_AGENTS))


def test_figures_are_in_the_run(finished: Finished) -> None:
    for name in ("overview", "reputation", "reward_fraction", "contribution_vs_reward"):
        path = finished.run.media_file(f"plots/{name}")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lightnings_own_wandb_logger_gets_the_same_views(tmp_path: Path) -> None:
    """``FairnessMonitor`` publishes to any W&B logger; Lightning's sets WANDB_MODE, which the sandbox restores."""
    from lightning.pytorch.loggers import WandbLogger

    mode_before = os.environ.get("WANDB_MODE")
    with isolated_wandb(tmp_path / "wandb-home"):
        logger = WandbLogger(save_dir=tmp_path, project="tests", offline=True)
        data, module, trainer, (scorer, _, _) = digits_collaboration(tmp_path, logger, rounds=1)
        trainer.fit(module, data)
        assert os.environ.get("WANDB_MODE") == "dryrun"  # Lightning's process-wide switch
        run = finish_and_load(logger.experiment.settings.sync_dir)
    assert os.environ.get("WANDB_MODE") == mode_before  # other tests are unaffected
    table = run.table("report/agents")
    assert [row[4] for row in table["data"]] == pytest.approx(scorer.reputation.tolist(), abs=1e-6)
    assert run.summary["report/rounds"] == 1
    # the report and figures of a W&B-only run go to <save_dir>/<project>/<run id>, not the shared save_dir
    assert (tmp_path / "tests" / logger.version / "plots" / "overview.png").is_file()
