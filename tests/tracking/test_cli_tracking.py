"""W&B and the progress bar from ``lightning-cgs``: the ``wandb:`` section, ``--trainer.logger``, ``plot``."""

from __future__ import annotations

from pathlib import Path

import pytest
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from lightning_cgs import CollaborativeWandbLogger, RoundProgressBar
from lightning_cgs.cli import build_cli, main, with_wandb_logger
from lightning_cgs.tracking.wandb_logger import WandbOptions
from tests.tracking.conftest import isolated_wandb
from tests.tracking.wandb_records import OfflineRun, finish_and_load

ROOT = Path(__file__).resolve().parents[2]
DIGITS = str(ROOT / "configs" / "digits.yaml")
SMALL = ["--data.sample_size_cap=240", "--data.batch_size=32", "--trainer.enable_checkpointing=false"]


def small_fit(folder: Path, *extra: str) -> None:
    main(
        [
            "fit",
            "--config",
            DIGITS,
            "--trainer.max_epochs=2",
            f"--trainer.logger.init_args.save_dir={folder}",
            f"--trainer.default_root_dir={folder}",
            "--trainer.enable_progress_bar=false",
            *SMALL,
            *extra,
        ]
    )


def finished_run(save_dir: Path) -> OfflineRun:
    (run_folder,) = (save_dir / "wandb").glob("offline-run-*")
    return finish_and_load(run_folder)


@pytest.mark.parametrize("config", ["digits.yaml", "fashion_mnist.yaml"])
def test_every_config_has_a_wandb_section_that_adds_the_logger_after_its_own(config: str, tmp_path: Path) -> None:
    cli = build_cli(
        [
            "--config",
            str(ROOT / "configs" / config),
            "--wandb.enabled=true",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
        ],
        run=False,
    )
    csv_logger, wandb_logger = cli.trainer.loggers
    assert isinstance(csv_logger, CSVLogger) and isinstance(wandb_logger, CollaborativeWandbLogger)
    assert wandb_logger.save_dir == str(tmp_path)  # W&B files next to the CSV logger's
    assert wandb_logger.requested_mode == "auto"
    assert wandb_logger._experiment is None  # nothing starts before training


def test_the_round_progress_bar_is_the_default_and_can_be_replaced_or_switched_off(tmp_path: Path) -> None:
    base = ["--config", DIGITS, f"--trainer.default_root_dir={tmp_path}"]
    assert isinstance(build_cli(base, run=False).trainer.progress_bar_callback, RoundProgressBar)
    assert build_cli([*base, "--trainer.enable_progress_bar=false"], run=False).trainer.progress_bar_callback is None
    own = build_cli([*base, "--trainer.callbacks+=lightning.pytorch.callbacks.TQDMProgressBar"], run=False)
    assert type(own.trainer.progress_bar_callback) is TQDMProgressBar


def test_fit_with_the_wandb_section_logs_the_run_and_its_whole_config(tmp_path: Path) -> None:
    with isolated_wandb(tmp_path / "wandb-home"):
        with pytest.warns(UserWarning, match="W&B logs offline: no W&B API key was found"):
            small_fit(tmp_path, "--wandb.enabled=true", "--wandb.tags=[unit, digits]")
        run = finished_run(tmp_path)
    (log_dir,) = (tmp_path / "digits").iterdir()
    assert (log_dir / "metrics.csv").is_file() and (log_dir / "plots" / "overview.png").is_file()
    assert run.summary["report/rounds"] == 2
    assert len(run.table("report/agents")["data"]) == 5
    cli_config = run.config["cli"]  # the whole parsed config, as in config.yaml
    assert cli_config["trainer"]["max_epochs"] == 2
    assert cli_config["model"]["model"]["class_path"] == "lightning_cgs.models.MLP"
    assert cli_config["data"]["sample_size_cap"] == 240
    assert cli_config["wandb"]["tags"] == ["unit", "digits"]


def test_trainer_logger_can_name_the_wandb_logger_alone(tmp_path: Path) -> None:
    with isolated_wandb(tmp_path / "wandb-home"):
        small_fit(
            tmp_path,
            "--trainer.logger=lightning_cgs.CollaborativeWandbLogger",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--trainer.logger.init_args.mode=offline",
            "--trainer.logger.init_args.project=solo",
        )
        run = finished_run(tmp_path)
    # the report and figures go to the run's own folder (Lightning's checkpoint folder for W&B), not the shared save_dir
    (run_dir,) = (tmp_path / "solo").iterdir()
    assert run_dir.name in run.folder.name
    assert (run_dir / "fairness_report.json").is_file() and (run_dir / "plots" / "reputation.png").is_file()
    assert not (tmp_path / "fairness_report.json").exists()
    # without metrics.csv, `plot` draws from the report's per-round records
    main(["plot", str(run_dir), "--output", str(tmp_path / "again")])
    assert (tmp_path / "again" / "reputation.png").is_file()


def test_with_wandb_logger_keeps_the_configs_logger_first() -> None:
    options = WandbOptions(enabled=True, project="p", mode="offline", tags=["a"], network_timeout=0.5)
    csv_logger = CSVLogger("somewhere")
    first, added = with_wandb_logger(csv_logger, options, default_root_dir="root")
    assert first is csv_logger and isinstance(added, CollaborativeWandbLogger)
    assert added.save_dir == "somewhere" and added.requested_mode == "offline" and added._wandb_init["tags"] == ["a"]
    assert added.network_timeout == 0.5 and added._project == "p"

    (only,) = with_wandb_logger(False, options, default_root_dir="root")
    assert isinstance(only, CollaborativeWandbLogger) and only.save_dir == "root"

    default, _ = with_wandb_logger(True, options, default_root_dir="root")  # Lightning's default: a CSV logger
    assert isinstance(default, CSVLogger) and default.save_dir == "root"

    existing = WandbLogger(save_dir="x")
    assert with_wandb_logger([csv_logger, existing], options, None) == [csv_logger, existing]
