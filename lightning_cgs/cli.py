"""The ``lightning-cgs`` command: LightningCLI over the collaborative module and datamodule, and ``plot``.

lightning-cgs fit --config configs/digits.yaml
lightning-cgs fit --config configs/fashion_mnist.yaml --trainer.max_epochs 5 --wandb.enabled true
lightning-cgs plot runs/digits/version_0
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info

from lightning_cgs.data import CollaborativeDataModule
from lightning_cgs.module import CollaborativeModule
from lightning_cgs.tracking.plots import PLOT_EXTRA, matplotlib_available, save_figures
from lightning_cgs.tracking.progress import RoundProgressBar
from lightning_cgs.tracking.series import FairnessSeries
from lightning_cgs.tracking.wandb_logger import WandbOptions
from lightning_cgs.tracking.wandb_views import update_wandb_config, wandb_loggers

DESCRIPTION = (
    "Fair rewards for collaborative machine learning (CGSV). `lightning-cgs fit --config configs/digits.yaml` trains; "
    "`lightning-cgs plot RUN_FOLDER` draws the figures of a finished run (see `lightning-cgs plot --help`)."
)


class CollaborativeCLI(LightningCLI):
    """LightningCLI with the number of agents given once, a ``wandb:`` section and the round progress bar.

    - ``data.num_agents`` is linked to ``model.num_agents``.
    - ``wandb.enabled: true`` (or ``--wandb.enabled true``) adds a
      :class:`~lightning_cgs.tracking.CollaborativeWandbLogger` after the config's logger, which stays first (the
      run's log folder and ``metrics.csv``). ``--trainer.logger`` can also name the W&B logger directly.
    - Unless the trainer's callbacks hold a progress bar or ``trainer.enable_progress_bar`` is false, the bar is a
      :class:`~lightning_cgs.tracking.RoundProgressBar`.
    - The whole parsed config goes to the W&B config under ``cli``.
    """

    def add_arguments_to_parser(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.link_arguments("data.num_agents", "model.num_agents")
        parser.add_class_arguments(WandbOptions, "wandb")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = self._get(self.config_init, "trainer", default={})
        options = self._get(self.config_init, "wandb")
        if isinstance(options, WandbOptions) and options.enabled and "logger" not in kwargs:
            kwargs["logger"] = with_wandb_logger(config.get("logger"), options, config.get("default_root_dir"))
        if "callbacks" not in kwargs and config.get("enable_progress_bar") is not False:
            callbacks = _as_list(config.get("callbacks"))
            if not any(isinstance(callback, ProgressBar) for callback in callbacks):
                kwargs["callbacks"] = [*callbacks, RoundProgressBar()]
        return super().instantiate_trainer(**kwargs)


class _SaveConfigCallback(SaveConfigCallback):
    """Saves ``config.yaml`` in the log folder, and sends the same config to the trainer's W&B loggers."""

    def save_config(self, trainer: Trainer, pl_module: Any, stage: str) -> None:
        if wandb_loggers(trainer):
            update_wandb_config(trainer, {"cli": yaml.safe_load(self.parser.dump(self.config))})


def with_wandb_logger(logger: Any, options: WandbOptions, default_root_dir: str | None) -> list[Logger]:
    """The trainer's loggers with the W&B logger of ``options`` added last (none is added if one is there).

    ``logger`` is the trainer's ``logger`` argument: a logger, a list of them, ``True``/``None`` (Lightning's default,
    replaced by a ``CSVLogger`` so that ``metrics.csv`` exists) or ``False`` (only W&B).
    """
    if logger is False:
        loggers: list[Logger] = []
    elif logger is None or logger is True:
        loggers = [CSVLogger(save_dir=default_root_dir or ".")]
    else:
        loggers = _as_list(logger)
    if any(isinstance(existing, WandbLogger) for existing in loggers):
        rank_zero_info("`wandb.enabled`: the trainer already has a W&B logger; no second one is added.")
        return loggers
    save_dir = next((lg.save_dir for lg in loggers if lg.save_dir is not None), None) or default_root_dir or "."
    return [*loggers, options.build_logger(save_dir)]


def _as_list(value: Any) -> list[Any]:
    if value is None or isinstance(value, bool):
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


# ------------------------------------------------------------------------------------------------------ plot
def plot_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightning-cgs plot",
        description=(
            "Draw the figures of a finished run (reputation, reward fraction, contribution psi and accuracy per "
            "agent over the rounds; contribution vs reward with the fitted line and rho_standalone; an overview) "
            "from its metrics.csv and fairness_report.json."
        ),
    )
    parser.add_argument("run_folder", type=Path, help="the run's log folder, e.g. runs/digits/version_0")
    parser.add_argument("--output", type=Path, default=None, help="where to write (default: RUN_FOLDER/plots)")
    parser.add_argument("--format", default="png", choices=("png", "pdf", "svg"), help="file format (default: png)")
    parser.add_argument("--dpi", type=int, default=120, help="resolution of PNG files (default: 120)")
    return parser


def plot_main(args: Sequence[str]) -> dict[str, Path]:
    """``lightning-cgs plot``: draw a finished run's figures; returns the written files by figure name.

    Raises:
        SystemExit: with a message, if matplotlib is missing or the folder is not a run's log folder.
    """
    options = plot_parser().parse_args(list(args))
    if not matplotlib_available():
        raise SystemExit(
            f"lightning-cgs plot: drawing the figures needs matplotlib, which is not installed: {PLOT_EXTRA}"
        )
    try:
        series = FairnessSeries.from_run_folder(options.run_folder)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"lightning-cgs plot: {error}") from None
    output = options.output if options.output is not None else options.run_folder / "plots"
    written = save_figures(series, output, dpi=options.dpi, fmt=options.format)
    rank_zero_info("\n".join(["Figures:", *(f"  {path}" for path in written.values())]))
    return written


def build_cli(args: Sequence[str] | None, run: bool = True) -> CollaborativeCLI:
    """The ``lightning-cgs`` LightningCLI on ``args`` (``None``: the command line); ``run=False`` only builds the
    module, data and trainer."""
    return CollaborativeCLI(
        CollaborativeModule,
        CollaborativeDataModule,
        args=None if args is None else list(args),
        run=run,
        auto_configure_optimizers=False,
        save_config_callback=_SaveConfigCallback,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"description": DESCRIPTION},
    )


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of ``lightning-cgs``: ``plot`` draws a finished run's figures; anything else goes to LightningCLI."""
    argv = list(sys.argv[1:] if args is None else args)
    # Lightning 2.6 calls a torch.utils._pytree API that torch 2.13 deprecates, once per run; nothing for a user to do
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )
    if argv and argv[0] == "plot":
        plot_main(argv[1:])
        return
    build_cli(args)  # None lets LightningCLI read the command line itself


if __name__ == "__main__":
    main()
