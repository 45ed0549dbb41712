"""The ``lightning-cgs`` command on the shipped digits config, and the report it leaves behind."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from pathlib import Path

import pytest

from lightning_cgs.cli import main

ROOT = Path(__file__).resolve().parents[1]


def powerlaw_sizes(total: int, agents: int, exponent: float = 1.65911332899) -> list[int]:
    """The powerlaw split of the README's "Data" section, worked out with the math module: linspace between
    the 1% and 99% quantiles."""
    low, high = 0.01 ** (1 / exponent), 0.99 ** (1 / exponent)
    points = [low + (high - low) * k / (agents - 1) for k in range(agents)]
    sizes = [math.ceil(round(p / sum(points) * total, 9)) for p in points]
    sizes[-1] -= sum(sizes) - total
    return sizes


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        main(
            [
                "fit",
                "--config",
                str(ROOT / "configs" / "digits.yaml"),
                "--trainer.max_epochs=3",
                f"--trainer.logger.init_args.save_dir={folder}",
                f"--trainer.default_root_dir={folder}",
                "--trainer.enable_progress_bar=false",
            ]
        )
    (run,) = (folder / "digits").iterdir()
    (folder / "stdout.txt").write_text(printed.getvalue())
    return run


def test_the_report_is_printed_on_standard_output(digits_run: Path) -> None:
    """`lightning-cgs fit ... > log.txt` keeps the result: the table goes to stdout, Lightning's messages to stderr."""
    printed = (digits_run.parents[1] / "stdout.txt").read_text()
    assert "Fairness report after 3 rounds" in printed
    assert f"Saved: {digits_run / 'fairness_report.csv'}, {digits_run / 'fairness_report.json'}" in printed
    report = json.loads((digits_run / "fairness_report.json").read_text())
    table = printed.split("Fairness report after 3 rounds", 1)[1]
    cells = [[cell.strip() for cell in line.split("|")] for line in table.splitlines() if "|" in line]
    for row in report["agents"]:  # each agent's row: its index, then its shard size
        assert [str(row["agent"]), str(row["shard_size"])] in [line[:2] for line in cells]


def test_fit_writes_the_report_and_the_metrics(digits_run: Path) -> None:
    report = json.loads((digits_run / "fairness_report.json").read_text())
    assert report["rounds"] == 3
    assert [row["agent"] for row in report["agents"]] == [0, 1, 2, 3, 4]
    assert [row["shard_size"] for row in report["agents"]] == powerlaw_sizes(1347, 5)
    assert set(report["summary"]) >= {
        "rho_standalone",
        "rho_cgsv",
        "individual_rationality",
        "best_accuracy",
        "server_accuracy",
        "seconds_per_round",
    }
    reputations = [row["reputation"] for row in report["agents"]]
    assert math.isclose(sum(reputations), 1.0, abs_tol=1e-5)
    assert max(row["reward_fraction"] for row in report["agents"]) == 1.0

    # the report agrees with what was logged after the last round
    by_step: dict[int, dict[str, str]] = {}
    with (digits_run / "metrics.csv").open() as handle:
        for row in csv.DictReader(handle):  # a step's values may be spread over several rows
            by_step.setdefault(int(row["step"]), {}).update({k: v for k, v in row.items() if v})
    last = by_step[max(by_step)]
    for row in report["agents"]:
        i = row["agent"]
        assert math.isclose(float(last[f"test/accuracy/agent_{i}"]), row["final_accuracy"], abs_tol=1e-6)
        assert math.isclose(
            float(last[f"test/standalone_accuracy/agent_{i}"]), row["standalone_accuracy"], abs_tol=1e-6
        )
        assert math.isclose(float(last[f"cgsv/reputation/agent_{i}"]), row["reputation"], abs_tol=1e-6)
        assert math.isclose(float(last[f"reward/fraction/agent_{i}"]), row["reward_fraction"], abs_tol=1e-6)
    best = max(row["final_accuracy"] for row in report["agents"])
    assert math.isclose(report["summary"]["best_accuracy"], best, abs_tol=1e-6)
    spread = best - min(row["final_accuracy"] for row in report["agents"])
    assert math.isclose(report["summary"]["accuracy_spread"], spread, abs_tol=1e-6)
    # the run means of the correlations, from the values logged at every evaluation
    for key in ("rho_standalone", "rho_cgsv"):
        logged = [float(row[f"fairness/{key}"]) for row in by_step.values() if row.get(f"fairness/{key}")]
        expected = sum(logged) / len(logged) if logged else None
        if expected is None:
            assert report["summary"][f"{key}_mean"] is None
        else:
            assert math.isclose(report["summary"][f"{key}_mean"], expected, abs_tol=1e-6)


def test_report_csv_has_the_table_and_the_summary(digits_run: Path) -> None:
    with (digits_run / "fairness_report.csv").open() as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == ["agent", "shard_size", "standalone_accuracy", "final_accuracy", "reputation", "reward_fraction"]
    assert [line[0] for line in lines[1:6]] == ["0", "1", "2", "3", "4"]
    measures = dict(line for line in lines[7:] if len(line) == 2)
    assert measures["rounds"] == "3"
    assert {"rho_standalone", "rho_cgsv", "individual_rationality", "seconds_per_round"} <= set(measures)


def test_config_is_saved_for_reproduction(digits_run: Path) -> None:
    saved = (digits_run / "config.yaml").read_text()
    assert "lightning_cgs.CosineGradientShapley" in saved
    assert "num_agents: 5" in saved


def test_unknown_dataset_fails_before_training(tmp_path) -> None:
    message = (
        r"Expected `dataset` to be one of \['digits', 'fashion_mnist', 'mnist'\] or a torch Dataset, but got 'cifar100'"
    )
    with pytest.raises(ValueError, match=message):
        main(
            [
                "fit",
                "--config",
                str(ROOT / "configs" / "digits.yaml"),
                "--data.dataset=cifar100",
                f"--trainer.default_root_dir={tmp_path}",
            ]
        )
