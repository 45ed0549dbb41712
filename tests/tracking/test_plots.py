"""The PNG figures of a digits run exist, show what they claim, and ``lightning-cgs plot`` draws them again.

What a figure claims is checked on the figure's own artists (lines, points, titles) against ``metrics.csv`` and NumPy;
the PNG files are then shown to be exactly those figures, pixel for pixel.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from lightning_cgs.cli import main
from lightning_cgs.tracking import plots
from lightning_cgs.tracking.series import FairnessSeries
from tests.tracking.conftest import NUM_AGENTS, DigitsRun, digits_collaboration, metrics_by_round, pearson_or_none

FIGURES = ("overview", "reputation", "reward_fraction", "contribution", "accuracy", "contribution_vs_reward")


def csv_series(run: DigitsRun, prefix: str) -> np.ndarray:
    """(rounds, agents) values of ``<prefix>/agent_<i>`` in ``metrics.csv``, rounds that hold them only."""
    by_round = metrics_by_round(run.log_dir / "metrics.csv")
    rows = [values for _, values in sorted(by_round.items()) if f"{prefix}/agent_0" in values]
    return np.array([[values[f"{prefix}/agent_{i}"] for i in range(NUM_AGENTS)] for values in rows])


def live_series(run: DigitsRun) -> FairnessSeries:
    return FairnessSeries.from_report(run.monitor.final_report)


def read_png(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    return imread(path)


def test_every_png_exists_and_is_a_picture(digits_run: DigitsRun) -> None:
    folder = digits_run.log_dir / "plots"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{name}.png" for name in FIGURES)
    assert set(digits_run.monitor.figures) == set(FIGURES)
    for name in FIGURES:
        pixels = read_png(folder / f"{name}.png")
        assert pixels.shape[0] >= 400 and pixels.shape[1] >= 600, name
        assert pixels[..., :3].std() > 0.05, f"{name}.png is blank"


@pytest.mark.parametrize("name", FIGURES)
def test_each_png_is_its_figure(digits_run: DigitsRun, name: str, tmp_path: Path) -> None:
    draw, _ = plots.FIGURES[name]
    draw(live_series(digits_run)).savefig(tmp_path / "again.png", dpi=120)
    np.testing.assert_array_equal(
        read_png(tmp_path / "again.png"), read_png(digits_run.log_dir / "plots" / f"{name}.png")
    )


def agent_lines(ax) -> list:
    return [line for line in ax.get_lines() if line.get_label().startswith("agent ")]


def test_reputation_figure_shows_every_agents_reputation_over_the_rounds(digits_run: DigitsRun) -> None:
    (ax,) = plots.reputation_figure(live_series(digits_run)).axes
    expected = csv_series(digits_run, "cgsv/reputation")
    lines = agent_lines(ax)
    shard_sizes = digits_run.data.shard_sizes
    assert [line.get_label() for line in lines] == [f"agent {i} (n={shard_sizes[i]})" for i in range(NUM_AGENTS)]
    for i, line in enumerate(lines):
        np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])
        np.testing.assert_allclose(line.get_ydata(), expected[:, i], atol=1e-6)
    assert ax.get_title() == "Reputation per agent"
    (reference,) = [line for line in ax.get_lines() if line.get_label() == "equal share 1/N"]
    assert reference.get_ydata()[0] == pytest.approx(1 / NUM_AGENTS)


def test_reward_fraction_figure_shows_q_per_agent(digits_run: DigitsRun) -> None:
    (ax,) = plots.reward_fraction_figure(live_series(digits_run)).axes
    expected = csv_series(digits_run, "reward/fraction")
    for i, line in enumerate(agent_lines(ax)):
        np.testing.assert_allclose(line.get_ydata(), expected[:, i], atol=1e-6)
    np.testing.assert_allclose(expected[-1], digits_run.rewarder.fractions.numpy(), atol=1e-6)
    assert ax.get_ylim() == (0, 1.05)


def test_accuracy_figure_shows_the_evaluated_rounds(digits_run: DigitsRun) -> None:
    (ax,) = plots.accuracy_figure(live_series(digits_run)).axes
    expected = csv_series(digits_run, "test/accuracy")
    lines = agent_lines(ax)
    for i, line in enumerate(lines):
        np.testing.assert_array_equal(line.get_xdata(), [2, 3])  # every_n_rounds=2, and the last round
        np.testing.assert_allclose(line.get_ydata(), expected[:, i], atol=1e-6)
    (server,) = [line for line in ax.get_lines() if line.get_label() == "server"]
    by_round = metrics_by_round(digits_run.log_dir / "metrics.csv")
    np.testing.assert_allclose(server.get_ydata(), [by_round[r]["test/accuracy/server"] for r in (1, 2)], atol=1e-6)


def test_contribution_vs_reward_shows_the_points_the_fit_and_rho(digits_run: DigitsRun) -> None:
    (ax,) = plots.contribution_vs_reward_figure(live_series(digits_run)).axes
    final = csv_series(digits_run, "test/accuracy")[-1]
    standalone = csv_series(digits_run, "test/standalone_accuracy")[-1]

    points = np.concatenate([collection.get_offsets() for collection in ax.collections])
    np.testing.assert_allclose(points, np.stack([standalone, final], axis=1), atol=1e-6)

    rho = pearson_or_none(final, standalone)
    title = ax.get_title()
    if rho is None:
        assert title.startswith("Standalone vs final accuracy: rho_standalone = undefined (all ")
    else:
        assert title == f"Standalone vs final accuracy: rho_standalone = {rho:.3f}"
    slope, intercept = np.polyfit(standalone, final, 1)
    (fit,) = [line for line in ax.get_lines() if line.get_label().startswith("fit:")]
    np.testing.assert_allclose(fit.get_ydata(), slope * fit.get_xdata() + intercept, atol=1e-9)
    assert fit.get_xdata().min() == pytest.approx(standalone.min()) and fit.get_xdata().max() == pytest.approx(
        standalone.max()
    )


def test_plot_command_draws_the_same_figures_from_the_run_folder(digits_run: DigitsRun, tmp_path: Path) -> None:
    main(["plot", str(digits_run.log_dir), "--output", str(tmp_path)])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{name}.png" for name in FIGURES)
    for name in FIGURES:  # the same numbers from metrics.csv give the same pixels
        np.testing.assert_array_equal(
            read_png(tmp_path / f"{name}.png"), read_png(digits_run.log_dir / "plots" / f"{name}.png")
        )


def test_series_from_the_csv_equals_the_live_series(digits_run: DigitsRun) -> None:
    live = live_series(digits_run)
    from_csv = FairnessSeries.from_run_folder(digits_run.log_dir)
    for field in live.__dataclass_fields__:
        np.testing.assert_allclose(getattr(from_csv, field), getattr(live, field), atol=1e-6, err_msg=field)


def test_a_run_without_metrics_csv_is_drawn_from_its_report(digits_run: DigitsRun, tmp_path: Path) -> None:
    shutil.copy(digits_run.log_dir / "fairness_report.json", tmp_path)
    from_report = FairnessSeries.from_run_folder(tmp_path)
    np.testing.assert_allclose(from_report.reputation, csv_series(digits_run, "cgsv/reputation"), atol=1e-6)
    report = json.loads((tmp_path / "fairness_report.json").read_text())
    assert [r["round"] for r in report["per_round"]] == [0, 1, 2]


def test_plot_command_explains_a_wrong_folder(digits_run: DigitsRun, tmp_path: Path) -> None:
    with pytest.raises(
        SystemExit, match=r"lightning-cgs plot: Expected a run folder, but `.*missing` is not a directory"
    ):
        main(["plot", str(tmp_path / "missing")])
    parent = digits_run.log_dir.parent  # runs/digits: holds version_0
    listing = (
        rf"holds neither `metrics.csv` nor `fairness_report.json`\. Run folders below it: .*{digits_run.log_dir.name}"
    )
    with pytest.raises(SystemExit, match=listing):
        main(["plot", str(parent)])


@pytest.fixture
def no_matplotlib(monkeypatch) -> None:
    """matplotlib cannot be imported (as without the ``plot`` extra)."""
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def test_without_matplotlib_training_works_and_says_once_that_pngs_are_skipped(no_matplotlib, tmp_path: Path) -> None:
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(tmp_path, name="run")
    data, module, trainer, _ = digits_collaboration(tmp_path, logger, rounds=1)
    with pytest.warns(
        UserWarning,
        match=r"matplotlib is not installed, so no PNG figures are saved: pip install 'lightning-cgs\[plot\]'",
    ) as caught:
        trainer.fit(module, data)
    assert sum("matplotlib" in str(w.message) for w in caught) == 1
    assert module.round_index == 1
    assert (Path(logger.log_dir) / "fairness_report.json").is_file()
    assert not (Path(logger.log_dir) / "plots").exists()

    with pytest.raises(
        SystemExit, match=r"needs matplotlib, which is not installed: pip install 'lightning-cgs\[plot\]'"
    ):
        main(["plot", str(logger.log_dir)])
