"""The ``lightning-cgs`` command: LightningCLI over ``CollaborativeModule`` and ``CollaborativeDataModule``.

lightning-cgs fit --config configs/digits.yaml
lightning-cgs fit --config configs/fashion_mnist.yaml --trainer.max_epochs 5
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lightning.pytorch.cli import LightningCLI

from lightning_cgs.data import CollaborativeDataModule
from lightning_cgs.module import CollaborativeModule


class CollaborativeCLI(LightningCLI):
    """LightningCLI with the number of agents given once, in ``data.num_agents``, and linked to the module."""

    def add_arguments_to_parser(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.link_arguments("data.num_agents", "model.num_agents")


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of ``lightning-cgs``."""
    argv = list(sys.argv[1:] if args is None else args)
    CollaborativeCLI(
        CollaborativeModule,
        CollaborativeDataModule,
        args=argv,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
    )


if __name__ == "__main__":
    main()
