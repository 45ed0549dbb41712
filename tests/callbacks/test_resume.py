"""A run killed mid-way resumes from its last checkpoint to exactly the state of an uninterrupted run."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lightning_cgs import (
    CollaborativeDataModule,
    CollaborativeModule,
    CosineGradientShapley,
    FairGradientReward,
    FairnessMonitor,
)
from lightning_cgs.models import MLP
from tests.helpers import quiet_trainer

ROUNDS = 4


class Killed(RuntimeError):
    pass


class KillAtRound(L.Callback):
    """Simulates a crash at the start of a round (after the previous round's checkpoint was written)."""

    def __init__(self, round_index: int) -> None:
        self.round_index = round_index

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.round_index:
            raise Killed(f"killed at round {self.round_index}")


def build(folder, extra=()):
    L.seed_everything(3, verbose=False)
    data = CollaborativeDataModule("digits", num_agents=3, split="powerlaw", batch_size=32, sample_size_cap=400)
    module = CollaborativeModule(
        MLP(64, 24, 10, dropout=0.2), num_agents=3, local_epochs=2, optimizer="adam", lr=3e-3, lr_decay=0.9
    )
    callbacks = [
        CosineGradientShapley(alpha=0.8),
        FairGradientReward(beta=1.5),
        FairnessMonitor(report=False),
        ModelCheckpoint(dirpath=folder, save_last=True, every_n_epochs=1, save_top_k=-1),
        *extra,
    ]
    trainer = quiet_trainer(max_epochs=ROUNDS, callbacks=callbacks, default_root_dir=folder, enable_checkpointing=True)
    return data, module, trainer, callbacks


def test_killed_run_resumes_to_the_uninterrupted_state(tmp_path) -> None:
    data, straight, trainer, straight_callbacks = build(tmp_path / "straight")
    trainer.fit(straight, data)

    data, killed, trainer, _ = build(tmp_path / "killed", extra=[KillAtRound(2)])
    with pytest.raises(Killed):
        trainer.fit(killed, data)
    assert killed.round_index == 2
    data, resumed, trainer, resumed_callbacks = build(tmp_path / "resumed")
    trainer.fit(resumed, data, ckpt_path=tmp_path / "killed" / "last.ckpt")

    assert resumed.round_index == straight.round_index == ROUNDS
    for a, b in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert a[0] == b[0]
        torch.testing.assert_close(a[1], b[1], atol=0, rtol=0, msg=f"module state {a[0]} differs")
    straight_opt, resumed_opt = straight.trainer.optimizers[0], resumed.trainer.optimizers[0]
    for p, q in zip(straight.pool.stacked_params(), resumed.pool.stacked_params(), strict=True):
        for key in straight_opt.state[p]:
            torch.testing.assert_close(straight_opt.state[p][key], resumed_opt.state[q][key], atol=0, rtol=0)
    for a, b in zip(straight_callbacks[:2], resumed_callbacks[:2], strict=True):
        for key, value in a.state_dict().items():
            other = b.state_dict()[key]
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(value, other, atol=0, rtol=0)
            else:
                assert value == other
    assert straight_callbacks[2].history == resumed_callbacks[2].history
    assert len(resumed_callbacks[2].history) == ROUNDS
    # the per-round records behind the figures and W&B charts survive the restart, each round once
    assert straight_callbacks[2].per_round == resumed_callbacks[2].per_round
    assert [record["round"] for record in resumed_callbacks[2].per_round] == list(range(ROUNDS))


def test_checkpoint_loads_with_weights_only(tmp_path) -> None:
    """Callback and module state are tensors and plain values, so checkpoints load with ``weights_only=True``."""
    data, module, trainer, _ = build(tmp_path)
    trainer.fit(module, data)
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert checkpoint["state_dict"]["rounds_completed"] == ROUNDS


def test_a_checkpoint_from_inside_a_round_is_refused_before_training(tmp_path) -> None:
    data, module, trainer, _ = build(tmp_path / "steps")
    trainer = quiet_trainer(
        max_epochs=1,
        enable_checkpointing=True,
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "steps", every_n_train_steps=2, save_top_k=-1)],
    )
    with pytest.warns(UserWarning, match="No reward was applied"):
        trainer.fit(module, data)
    inside = tmp_path / "steps" / "epoch=0-step=2.ckpt"
    assert inside.exists()
    data, resumed, trainer, _ = build(tmp_path / "resumed")
    with pytest.raises(MisconfigurationException, match=r"saved in the middle of round 0 \(after 2 of its steps\)"):
        trainer.fit(resumed, data, ckpt_path=inside)
    assert resumed.round_index == 0
