"""Parallel submodels against N separate models trained one after another (the agent pool).

The reference (tests/reference.py) is a plain loop of ``nn.Module`` agents with ``torch.optim`` optimizers and
``ExponentialLR`` schedules. With no reward callback, agents keep their own updates, so two rounds are pure local
training and the stacked store must match the reference row by row.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_cgs import CollaborativeModule
from tests.helpers import quiet_trainer
from tests.reference import PlannedLoader, ReferenceAgents, ReferenceConfig, ReplayDropout

SHARD_SIZES = [8, 14, 18, 25]  # unequal: last batches of 3, 4, 3 and 5 (BatchNorm needs a few samples)
BATCH, EPOCHS, ROUNDS = 5, 2, 2
P_DROP = 0.3


def make_model(dropout: nn.Module) -> nn.Module:
    torch.manual_seed(7)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), dropout, nn.Linear(16, 3))


def make_shards() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(3)
    return [
        (torch.randn(n, 6, generator=generator), torch.randint(0, 3, (n,), generator=generator)) for n in SHARD_SIZES
    ]


CONFIGS = {
    "sgd-momentum": ReferenceConfig("sgd", 0.05, 0.9, {"momentum": 0.9, "weight_decay": 1e-3, "nesterov": True}),
    "adam": ReferenceConfig("adam", 0.003, 0.8, {"weight_decay": 1e-3}),
}


def run_pool(config: ReferenceConfig, execution: str, shards) -> CollaborativeModule:
    module = CollaborativeModule(
        make_model(nn.Dropout(P_DROP)),
        num_agents=len(SHARD_SIZES),
        local_epochs=EPOCHS,
        optimizer=config.optimizer,
        lr=config.lr,
        lr_decay=config.lr_decay,
        optimizer_options=config.options,
        execution=execution,
        standalone_baseline=False,
    )
    trainer = quiet_trainer(max_epochs=ROUNDS)
    torch.manual_seed(1234)
    with pytest.warns(UserWarning, match="No reward was applied"):
        trainer.fit(module, train_dataloaders=PlannedLoader(shards, BATCH, EPOCHS, seed=5))
    return module


def run_reference(config: ReferenceConfig, vectorized: bool, shards) -> ReferenceAgents:
    width_model = make_model(ReplayDropout(16) if vectorized else nn.Dropout(P_DROP))
    agents = ReferenceAgents(width_model, len(SHARD_SIZES), config)
    loader = PlannedLoader(shards, BATCH, EPOCHS, seed=5)
    torch.manual_seed(1234)
    for round_index in range(ROUNDS):
        agents.train_round(loader.steps(round_index), shards, replay_dropout=P_DROP if vectorized else None)
    return agents


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request):
    """float32 within 1e-5 (the issue's bar); float64 within 1e-10 shows the semantics are exact, not just close."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(request.param)
    yield request.param
    torch.set_default_dtype(previous)


@pytest.mark.parametrize("execution", ["vectorized", "sequential"])
@pytest.mark.parametrize("config_name", list(CONFIGS))
def test_stacked_agents_match_separate_models(execution: str, config_name: str, dtype: torch.dtype) -> None:
    config, shards = CONFIGS[config_name], make_shards()
    tolerance = 1e-5 if dtype == torch.float32 else 1e-10
    module = run_pool(config, execution, shards)
    reference = run_reference(config, execution == "vectorized", shards)

    names = module.pool.param_names + module.pool.buffer_names
    stacked = module.pool.stacked_params() + module.pool.stacked_buffers()
    for agent, model in enumerate(reference.models):
        expected = dict(model.named_parameters()) | dict(model.named_buffers())
        for name, tensor in zip(names, stacked, strict=True):
            torch.testing.assert_close(
                tensor[agent].detach(),
                expected[name].detach(),
                atol=tolerance,
                rtol=0,
                msg=lambda m, a=agent, n=name: f"agent {a}, {n}: {m}",
            )
    # the agents really trained, and differently from each other
    assert module.pool.stacked_params()[0].dtype == dtype
    first = module.pool.stacked_params()[0].detach()
    assert not torch.allclose(first[0], first[1])
    assert not torch.allclose(first[0], make_model(nn.Identity())[0].weight)


def test_unequal_shards_take_exactly_their_steps() -> None:
    """Each agent takes E * ceil(n_i / B) optimizer steps per round, no more, also for Adam (per-row counts)."""
    config, shards = CONFIGS["adam"], make_shards()
    module = run_pool(config, "sequential", shards)
    optimizer = module.trainer.optimizers[0]
    steps = optimizer.state[module.pool.stacked_params()[0]]["step"]
    expected = [ROUNDS * EPOCHS * -(-n // BATCH) for n in SHARD_SIZES]
    assert steps.tolist() == expected
