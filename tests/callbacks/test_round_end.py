"""The full round (local training, CGSV, reputations, rewards) against a plain-loop implementation of the algorithm."""

from __future__ import annotations

import copy
import math

import lightning as L
import pytest
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import nn

from lightning_cgs import (
    CollaborativeDataModule,
    CollaborativeModule,
    CosineGradientShapley,
    FairGradientReward,
    FairnessMonitor,
)
from lightning_cgs.models import MLP
from tests.helpers import quiet_trainer
from tests.reference import PlannedLoader, ReferenceAgents, ReferenceConfig, reference_cgsv_round

SHARD_SIZES = [6, 11, 17]
BATCH, EPOCHS, ROUNDS = 4, 2, 3
ALPHA, GAMMA = 0.5, 0.7


def make_model() -> nn.Module:
    torch.manual_seed(11)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))


def make_shards(nan_agent: int | None = None):
    generator = torch.Generator().manual_seed(4)
    shards = [
        (torch.randn(n, 5, generator=generator), torch.randint(0, 3, (n,), generator=generator)) for n in SHARD_SIZES
    ]
    if nan_agent is not None:
        shards[nan_agent][0][0, 0] = float("nan")
    return shards


def trainer(max_epochs: int, callbacks: list) -> L.Trainer:
    return quiet_trainer(max_epochs=max_epochs, callbacks=callbacks)


def fit(beta: float, mode: str, shards, execution: str = "sequential", **module_options):
    module = CollaborativeModule(
        make_model(),
        num_agents=len(SHARD_SIZES),
        local_epochs=EPOCHS,
        optimizer="sgd",
        lr=0.1,
        lr_decay=0.9,
        optimizer_options={"momentum": 0.5},
        execution=execution,
        standalone_baseline=False,
        **module_options,
    )
    scorer, rewarder = CosineGradientShapley(alpha=ALPHA, gamma=GAMMA), FairGradientReward(beta=beta, mode=mode)
    trainer(ROUNDS, [scorer, rewarder]).fit(module, train_dataloaders=PlannedLoader(shards, BATCH, EPOCHS, seed=2))
    return module, scorer, rewarder


def reference_run(beta: float, mode: str, shards, keep_own_update: bool = False, decay_every: str = "local_epoch"):
    """The paper's loop: train each agent, score, reward (layer mode per tensor; global mode over the whole vector).

    With ``keep_own_update``, an agent adds its own (raw) update of the round to its reward."""
    agents = ReferenceAgents(make_model(), len(SHARD_SIZES), ReferenceConfig("sgd", 0.1, 0.9, {"momentum": 0.5}))
    server = copy.deepcopy(make_model())
    loader = PlannedLoader(shards, BATCH, EPOCHS, seed=2)
    reputation, history = None, []
    for round_index in range(ROUNDS):
        start = [[p.detach().clone() for p in m.parameters()] for m in agents.models]
        agents.train_round(loader.steps(round_index), shards, decay_every=decay_every)
        deltas = [
            [p.detach() - s for p, s in zip(m.parameters(), st, strict=True)]
            for m, st in zip(agents.models, start, strict=True)
        ]
        if mode == "global":  # one tensor holding every weight: the ranking runs over all of them together
            result = reference_cgsv_round(
                [[torch.cat([d.flatten() for d in delta])] for delta in deltas],
                reputation,
                SHARD_SIZES,
                ALPHA,
                GAMMA,
                beta,
            )
            shapes = [p.shape for p in agents.models[0].parameters()]
            result["rewards"] = [list(torch.split(r[0], [math.prod(s) for s in shapes])) for r in result["rewards"]]
            result["rewards"] = [[t.reshape(s) for t, s in zip(r, shapes, strict=True)] for r in result["rewards"]]
            result["aggregate"] = [
                t.reshape(s)
                for t, s in zip(
                    torch.split(result["aggregate"][0], [math.prod(s) for s in shapes]), shapes, strict=True
                )
            ]
        else:
            result = reference_cgsv_round(deltas, reputation, SHARD_SIZES, ALPHA, GAMMA, beta)
        with torch.no_grad():
            for model, st, reward, delta in zip(agents.models, start, result["rewards"], deltas, strict=True):
                for p, s, r, d in zip(model.parameters(), st, reward, delta, strict=True):
                    p.copy_(s + r + d if keep_own_update else s + r)
            for p, a in zip(server.parameters(), result["aggregate"], strict=True):
                p.add_(a)
        reputation = result["reputation"]
        history.append(result)
    return agents, server, history


@pytest.mark.parametrize(("beta", "mode"), [(1.0, "layer"), (2.0, "global"), (float("inf"), "layer")])
def test_rounds_match_the_plain_algorithm(beta: float, mode: str) -> None:
    shards = make_shards()
    module, scorer, rewarder = fit(beta, mode, shards)
    agents, server, history = reference_run(beta, mode, shards)

    torch.testing.assert_close(scorer.reputation.double(), history[-1]["reputation"], atol=1e-5, rtol=0)
    torch.testing.assert_close(scorer.contributions.double(), history[-1]["psi"], atol=1e-5, rtol=0)
    torch.testing.assert_close(rewarder.fractions.double(), history[-1]["q"], atol=1e-5, rtol=0)
    for agent, model in enumerate(agents.models):
        for stacked, p in zip(module.pool.stacked_params(), model.parameters(), strict=True):
            torch.testing.assert_close(stacked[agent].detach(), p.detach(), atol=1e-5, rtol=0)
    for mine, theirs in zip(module.server.values(), server.parameters(), strict=True):
        torch.testing.assert_close(mine.detach(), theirs.detach(), atol=1e-5, rtol=0)
    # the rewards really differ between agents unless beta is infinite
    q = history[-1]["q"]
    assert (q.min() < 1) == math.isfinite(beta)


@pytest.mark.parametrize(
    "options", [{"keep_own_update": True}, {"lr_decay_every": "round"}], ids=["keep_own_update", "decay_per_round"]
)
def test_module_options_match_the_plain_algorithm(options: dict) -> None:
    shards = make_shards()
    module, scorer, _ = fit(1.0, "layer", shards, **options)
    agents, _, history = reference_run(
        1.0,
        "layer",
        shards,
        keep_own_update=options.get("keep_own_update", False),
        decay_every=options.get("lr_decay_every", "local_epoch"),
    )
    torch.testing.assert_close(scorer.reputation.double(), history[-1]["reputation"], atol=1e-5, rtol=0)
    for agent, model in enumerate(agents.models):
        for stacked, p in zip(module.pool.stacked_params(), model.parameters(), strict=True):
            torch.testing.assert_close(stacked[agent].detach(), p.detach(), atol=1e-5, rtol=0)


def test_a_random_free_rider_scores_near_zero_among_real_agents() -> None:
    """Five digits agents, one sending random noise: a random direction among thousands of weights is nearly
    orthogonal to an aggregate of agreeing real updates, so it scores near 0 and ends with the lowest reputation.

    (With very few agents whose own updates disagree, the noise's share of the aggregate can make it score high:
    the cosine includes the agent's own contribution to the aggregate.)"""
    L.seed_everything(0, verbose=False)
    data = CollaborativeDataModule("digits", num_agents=5, split="uniform", batch_size=32, sample_size_cap=500)
    module = CollaborativeModule(
        MLP(64, 32, 10), num_agents=5, local_epochs=2, lr=0.05, free_riders={4: "random"}, standalone_baseline=False
    )
    scorer, rewarder = CosineGradientShapley(alpha=0.8), FairGradientReward()
    trainer(3, [scorer, rewarder]).fit(module, data)
    assert abs(float(scorer.contributions[4])) < 0.3 < float(scorer.contributions[:4].min())
    assert scorer.reputation[4] == scorer.reputation.min()
    assert rewarder.fractions[4] == rewarder.fractions.min() < 0.5


def test_vectorized_round_end_matches_sequential() -> None:
    shards = make_shards()
    sequential, s_scorer, _ = fit(1.0, "layer", shards, execution="sequential")
    vectorized, v_scorer, _ = fit(1.0, "layer", shards, execution="vectorized")
    torch.testing.assert_close(s_scorer.reputation, v_scorer.reputation, atol=1e-5, rtol=0)
    for a, b in zip(sequential.pool.stacked_params(), vectorized.pool.stacked_params(), strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), atol=1e-5, rtol=0)


def test_non_finite_update_cannot_corrupt_others() -> None:
    """Agent 1 trains on a NaN input: its update is NaN. It must score 0, and everyone else must end exactly as in
    a run where agent 1 reported a zero update instead (a free rider), with agent 1 itself finite again."""
    with pytest.warns(UserWarning, match=r"the update of agent\(s\) \[1\] is not finite"):
        poisoned, p_scorer, _ = fit(1.0, "layer", make_shards(nan_agent=1))
    zero, z_scorer, _ = fit(1.0, "layer", make_shards(), free_riders={1: "zero"})
    assert p_scorer.contributions[1] == 0
    torch.testing.assert_close(p_scorer.reputation, z_scorer.reputation, atol=1e-6, rtol=0)
    for a, b in zip(poisoned.pool.stacked_params(), zero.pool.stacked_params(), strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a.detach()[[0, 2]], b.detach()[[0, 2]], atol=1e-6, rtol=0)
    for a in poisoned.server.values():
        assert torch.isfinite(a).all()


def test_free_rider_gets_the_floor_and_the_smallest_reward() -> None:
    module, scorer, rewarder = fit(1.0, "layer", make_shards(), free_riders={0: "zero"})
    assert scorer.contributions[0] == 0
    assert scorer.reputation[0] == scorer.reputation.min()
    assert rewarder.fractions[0] == rewarder.fractions.min() < 1


def test_a_free_rider_and_its_standalone_twin_train_nothing() -> None:
    """A free rider brings nothing of its own: it takes no optimizer step (Adam's step count stays 0), its twin keeps
    the initial weights, and each round its parameters move by exactly its reward."""
    initial = [p.detach().clone() for p in make_model().parameters()]
    module = CollaborativeModule(
        make_model(), num_agents=3, local_epochs=EPOCHS, optimizer="adam", lr=0.01, free_riders={1: "zero"}
    )
    seen = []  # per round: the rider's parameters after the reward, the aggregate, the rider's reward fraction

    class Record(L.Callback):  # listed after the reward callback, so it runs after it
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch.last:
                rider = [p.detach()[1].clone() for p in pl_module.pool.stacked_params()]
                seen.append((rider, pl_module.round.aggregate.clone(), float(pl_module.round.reward_fractions[1])))

    scorer, rewarder = CosineGradientShapley(alpha=ALPHA, gamma=GAMMA), FairGradientReward()
    trainer(ROUNDS, [scorer, rewarder, Record()]).fit(
        module, train_dataloaders=PlannedLoader(make_shards(), BATCH, EPOCHS, seed=2)
    )

    steps = module.trainer.optimizers[0].state[module.pool.stacked_params()[0]]["step"]
    assert steps[[1, 3 + 1]].tolist() == [0, 0]  # the rider and its twin
    assert steps[[0, 2, 3, 5]].tolist() == [ROUNDS * EPOCHS * n for n in (2, 5, 2, 5)]  # ceil(6 / 4), ceil(17 / 4)
    for stacked, start in zip(module.pool.stacked_params(), initial, strict=True):
        torch.testing.assert_close(stacked.detach()[3 + 1], start, atol=0, rtol=0)  # the rider's twin
        assert not torch.equal(stacked.detach()[3 + 0], start)  # the other twins trained

    # each round the rider moves by the aggregate with all but its ceil(q n) largest magnitudes per tensor zeroed
    before = initial
    for after, aggregate, fraction in seen:
        pieces = aggregate.split([p.numel() for p in initial])
        for old, new, piece in zip(before, after, pieces, strict=True):
            keep = math.ceil(fraction * piece.numel())
            order = sorted(range(piece.numel()), key=lambda j: -abs(float(piece[j])))
            expected = torch.zeros_like(piece)
            expected[order[:keep]] = piece[order[:keep]]
            torch.testing.assert_close(new - old, expected.reshape(old.shape), atol=1e-6, rtol=0)
        before = after
    assert scorer.contributions[1] == 0 and len(seen) == ROUNDS


@pytest.mark.parametrize(
    ("callbacks", "message"),
    [
        (lambda: [FairGradientReward(), CosineGradientShapley()], r"must act in the order"),
        (lambda: [FairGradientReward()], r"`FairGradientReward` needs a `CosineGradientShapley` callback before it"),
        (
            lambda: [CosineGradientShapley(alpha=0.9), CosineGradientShapley(alpha=0.5)],
            r"holds more than one `CosineGradientShapley`",
        ),
        (lambda: [FairnessMonitor(), CosineGradientShapley()], r"must act in the order"),
    ],
)
def test_callback_order_is_checked_before_training(callbacks, message: str) -> None:
    module = CollaborativeModule(make_model(), num_agents=3, standalone_baseline=False)
    loader = PlannedLoader(make_shards(), BATCH, EPOCHS, seed=2)
    with pytest.raises(MisconfigurationException, match=message):
        trainer(1, callbacks()).fit(module, train_dataloaders=loader)
    assert module.round_index == 0


def test_callbacks_need_a_collaborative_module() -> None:
    class Plain(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(2, 2)

        def training_step(self, batch, batch_idx):
            return self.layer(batch).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(
        MisconfigurationException, match="works with a `CollaborativeModule`, but the trainer runs `Plain`"
    ):
        trainer(1, [CosineGradientShapley()]).fit(Plain(), train_dataloaders=[torch.zeros(1, 2)])


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: CosineGradientShapley(alpha=1.0), r"Expected argument `alpha` to be in \[0, 1\), but got 1.0"),
        (lambda: CosineGradientShapley(alpha=-0.1), r"`alpha` to be in \[0, 1\), but got -0.1"),
        (lambda: CosineGradientShapley(gamma=0), r"`gamma` to be a finite number > 0, but got 0"),
        (lambda: CosineGradientShapley(gamma=float("inf")), r"`gamma` to be a finite number > 0, but got inf"),
        (lambda: CosineGradientShapley(reputation_floor=0), r"`reputation_floor` to be in \(0, 1\), but got 0"),
        (lambda: CosineGradientShapley(first_round_weights="size"), r"`first_round_weights` to be one of"),
        (lambda: FairGradientReward(beta=0), r"`beta` to be a number > 0 \(inf allowed\), but got 0"),
        (lambda: FairGradientReward(beta=-1.0), r"`beta` to be a number > 0 \(inf allowed\), but got -1.0"),
        (lambda: FairGradientReward(beta=float("nan")), r"`beta` to be a number > 0 \(inf allowed\), but got nan"),
        (lambda: FairGradientReward(mode="tensor"), r"`mode` to be one of \['global', 'layer'\], but got 'tensor'"),
        (lambda: FairnessMonitor(every_n_rounds=0), r"`every_n_rounds` to be an integer >= 1, but got 0"),
    ],
)
def test_callback_arguments_are_validated(factory, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()


def test_infinite_beta_is_allowed() -> None:
    assert FairGradientReward(beta=float("inf")).beta == float("inf")
