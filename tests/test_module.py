"""CollaborativeModule: argument validation, models that cannot be stacked, and misuse caught before training."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import nn

from lightning_cgs import CollaborativeDataModule, CollaborativeModule
from lightning_cgs.models import MLP
from tests.helpers import quiet_trainer


def small() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_agents": 1}, r"Expected argument `num_agents` to be an integer >= 2, but got 1\."),
        ({"num_agents": 2.5}, r"`num_agents` to be an integer >= 2, but got 2\.5"),
        ({"num_agents": True}, r"`num_agents` to be an integer >= 2, but got True"),
        ({"local_epochs": 0}, r"`local_epochs` to be an integer >= 1, but got 0"),
        ({"lr": 0.0}, r"`lr` to be a finite number > 0, but got 0\.0"),
        ({"lr": float("nan")}, r"`lr` to be a finite number > 0, but got nan"),
        ({"lr_decay": 1.5}, r"`lr_decay` to be in \(0, 1\], but got 1\.5"),
        ({"lr_decay": 0}, r"`lr_decay` to be in \(0, 1\], but got 0"),
        ({"lr_decay_every": "step"}, r"`lr_decay_every` to be one of \['local_epoch', 'round'\], but got 'step'"),
        ({"optimizer": "rmsprop"}, r"`optimizer` to be one of \['adam', 'adamw', 'sgd'\], but got 'rmsprop'"),
        ({"optimizer_options": {"betas": (0.9, 0.99)}}, r"`optimizer_options` has \['betas'\] which optimizer 'sgd'"),
        ({"optimizer_options": {"momentum": -0.1}}, r"`momentum` to be a finite number >= 0, but got -0\.1"),
        ({"optimizer_options": {"nesterov": True}}, r"`nesterov=True` needs `momentum` > 0"),
        ({"optimizer": "adam", "optimizer_options": {"betas": (0.9, 1.0)}}, r"`betas` to be two numbers in \[0, 1\)"),
        ({"loss": "mse"}, r"`loss` to be one of \['cross_entropy', 'nll'\], but got 'mse'"),
        ({"execution": "parallel"}, r"`execution` to be one of \['auto', 'sequential', 'vectorized'\]"),
        ({"randomness": "shared"}, r"`randomness` to be one of \['different', 'error', 'same'\], but got 'shared'"),
        ({"free_riders": {7: "zero"}}, r"`free_riders` names agent 7, but agents are numbered 0 \.\. 4"),
        ({"free_riders": {1: "lazy"}}, r"`free_riders\[1\]` to be one of \['random', 'zero'\], but got 'lazy'"),
        ({"eval_chunk_size": 0}, r"`eval_chunk_size` to be an integer >= 1, but got 0"),
    ],
)
def test_arguments_are_validated_at_construction(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CollaborativeModule(small(), **{"num_agents": 5, **options})


class Frozen(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 4)
        self.embed.weight.requires_grad_(False)


@pytest.mark.parametrize(
    ("model", "error", "message"),
    [
        (lambda: "resnet", TypeError, r"Expected argument `model` to be a torch\.nn\.Module, but got str"),
        (lambda: nn.ReLU(), ValueError, r"`model` \(ReLU\) has no parameters"),
        (lambda: nn.LazyLinear(3), ValueError, r"uninitialised \(lazy\) parameter `weight`; run one forward pass"),
        (Frozen, ValueError, r"frozen parameter `embed\.weight` \(requires_grad=False\)"),
        (lambda: nn.Sequential(nn.Linear(2, 2), nn.SyncBatchNorm(2)), ValueError, r"contains `1` \(SyncBatchNorm\)"),
    ],
)
def test_models_that_cannot_be_stacked_are_refused(model, error, message: str) -> None:
    with pytest.raises(error, match=message):
        CollaborativeModule(model(), num_agents=3)


def test_agents_start_from_the_given_weights_and_the_model_is_not_modified() -> None:
    model = small()
    before = [p.detach().clone() for p in model.parameters()]
    module = CollaborativeModule(model, num_agents=4)
    for stacked, original in zip(module.pool.stacked_params(), before, strict=True):
        assert stacked.shape == (8, *original.shape)  # 4 agents and their 4 standalone twins
        assert torch.equal(stacked.detach(), original.expand_as(stacked))
    for server, original in zip(module.server_params(), before, strict=True):
        assert torch.equal(server, original)
    for after, original in zip(model.parameters(), before, strict=True):
        assert torch.equal(after, original)


def test_tied_weights_stay_tied_in_every_replica() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encode = nn.Linear(4, 4, bias=False)
            self.decode = nn.Linear(4, 4, bias=False)
            self.decode.weight = self.encode.weight

        def forward(self, x):
            return self.decode(self.encode(x))

    module = CollaborativeModule(Tied(), num_agents=2, standalone_baseline=False)
    assert module.pool.param_names == ["encode.weight"]
    replica = module.pool.replicas()[1]
    assert replica.encode.weight is replica.decode.weight
    assert replica.encode.weight.data_ptr() == module.pool.stacked_params()[0][1].data_ptr()


def test_mismatched_agent_counts_fail_before_training() -> None:
    data = CollaborativeDataModule("digits", num_agents=3, batch_size=64, local_epochs=1)
    module = CollaborativeModule(MLP(64, 8, 10), num_agents=4)
    with pytest.raises(
        MisconfigurationException,
        match=r"datamodule has `num_agents=3` but the module has "
        r"`num_agents=4`",
    ):
        quiet_trainer().fit(module, data)
    assert module.round_index == 0


def test_a_multi_process_trainer_is_refused_before_training() -> None:
    """Two CPU processes (gloo): DDP would average different agents' gradients, so setup refuses it on every rank."""
    data = CollaborativeDataModule("digits", num_agents=3, batch_size=64, local_epochs=1)
    module = CollaborativeModule(MLP(64, 8, 10), num_agents=3, standalone_baseline=False)
    trainer = quiet_trainer(devices=2, strategy="ddp_spawn")
    # the spawned ranks' error comes back wrapped by torch.multiprocessing, its message intact
    with pytest.raises(Exception, match=r"runs all agents in one process, but this trainer has `world_size=2`"):
        trainer.fit(module, data)
    assert module.round_index == 0


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            MLP(784, 8, 10),
            r"The model `MLP` does not fit the data \(inputs of shape \(1, 8, 8\) \(torch.float32\) and 10 "
            r"classes\): on two training examples, RuntimeError: mat1 and mat2 shapes cannot be multiplied",
        ),
        (MLP(64, 8, 5), r"ValueError: it gives 5 outputs per example for 10 classes"),
        (
            nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Flatten(0)),
            r"ValueError: expected outputs of shape \(2, 10\), got \(20,\)",
        ),
    ],
    ids=["wrong-input-size", "too-few-outputs", "flattened-outputs"],
)
def test_a_model_that_does_not_fit_the_data_fails_before_training(model: nn.Module, message: str) -> None:
    data = CollaborativeDataModule("digits", num_agents=3, batch_size=64, local_epochs=1)
    module = CollaborativeModule(model, num_agents=3, standalone_baseline=False)
    before = [p.detach().clone() for p in module.pool.stacked_params()]
    with pytest.raises(MisconfigurationException, match=message):
        quiet_trainer().fit(module, data)
    assert module.round_index == 0
    assert all(torch.equal(a, b) for a, b in zip(before, module.pool.stacked_params(), strict=True))


def test_the_fit_check_changes_no_state() -> None:
    """The forward on two examples runs in eval mode: BatchNorm statistics and parameters stay as they were."""
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.Dropout(0.5), nn.ReLU(), nn.Linear(16, 10)
    )
    module = CollaborativeModule(model, num_agents=3)
    data = CollaborativeDataModule("digits", num_agents=3, batch_size=64, local_epochs=1)
    data.setup("fit")
    with torch.no_grad():  # move the running statistics off their defaults, so a reset would show too
        for buffer in module.pool.stacked_buffers():
            buffer.add_(torch.rand_like(buffer.float()).to(buffer.dtype))
    state = [t.clone() for t in [*module.pool.stacked_params(), *module.pool.stacked_buffers()]]
    module._check_model_takes_data(data, Precision())
    after = [*module.pool.stacked_params(), *module.pool.stacked_buffers()]
    assert all(torch.equal(a, b) for a, b in zip(state, after, strict=True))


@pytest.mark.parametrize("limit", [0.5, 1, 3])
def test_limiting_train_batches_is_refused(limit) -> None:
    data = CollaborativeDataModule("digits", num_agents=3, batch_size=64)
    module = CollaborativeModule(MLP(64, 8, 10), num_agents=3)
    with pytest.raises(MisconfigurationException, match=rf"`Trainer\(limit_train_batches={limit}\)` cuts rounds short"):
        quiet_trainer(limit_train_batches=limit).fit(module, data)


def test_plain_batches_get_a_clear_error() -> None:
    module = CollaborativeModule(MLP(64, 8, 10), num_agents=3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(4, 64), torch.zeros(4).long()))
    with pytest.raises(TypeError, match=r"expects `RoundStep` batches \(from CollaborativeDataModule\), but got list"):
        quiet_trainer().fit(module, train_dataloaders=loader)


def test_one_epoch_is_one_round_and_test_reports_every_model() -> None:
    data = CollaborativeDataModule("digits", num_agents=3, split="uniform", batch_size=32, sample_size_cap=300)
    module = CollaborativeModule(MLP(64, 16, 10), num_agents=3, lr=0.05)
    trainer = quiet_trainer(max_epochs=2)
    with pytest.warns(UserWarning, match="No reward was applied"):
        trainer.fit(module, data)
    assert module.round_index == 2
    assert module.shard_sizes.tolist() == [100, 100, 100]
    results = trainer.test(module, data, verbose=False)[0]
    assert {f"test/accuracy/agent_{i}" for i in range(3)} <= set(results)
    assert {f"test/standalone_accuracy/agent_{i}" for i in range(3)} <= set(results)
    # without rewards every agent keeps its own update, exactly like its standalone twin
    for stacked in module.pool.stacked_params():
        torch.testing.assert_close(stacked[:3], stacked[3:], atol=0, rtol=0)


@pytest.mark.parametrize("execution", ["vectorized", "sequential"])
def test_tied_weights_train_and_evaluate_on_both_paths(execution: str) -> None:
    class TiedClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encode = nn.Linear(64, 64, bias=False)
            self.decode = nn.Linear(64, 64, bias=False)
            self.decode.weight = self.encode.weight
            self.head = nn.Linear(64, 10)

        def forward(self, x):
            return self.head(self.decode(self.encode(x.flatten(1)).tanh()))

    data = CollaborativeDataModule("digits", num_agents=2, batch_size=64, sample_size_cap=200)
    module = CollaborativeModule(TiedClassifier(), num_agents=2, execution=execution)
    with pytest.warns(UserWarning, match="No reward was applied"):
        quiet_trainer(max_epochs=1).fit(module, data)
    evaluation = module.evaluate(data.test_dataloader())
    assert evaluation.accuracy.shape == (2,)
    assert module.pool.stacked_params()[0].shape == (4, 64, 64)


def test_a_model_that_vmap_cannot_run_gets_a_clear_error() -> None:
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(64, 10)

        def forward(self, x):
            out = self.layer(x.flatten(1))
            return out if out.sum().item() > 0 else -out  # Python control flow on a value: not vectorisable

    data = CollaborativeDataModule("digits", num_agents=2, batch_size=64, sample_size_cap=200)
    module = CollaborativeModule(DataDependent(), num_agents=2, execution="vectorized")
    message = r"(?s)`DataDependent` cannot run its agents vectorised under torch\.vmap.*execution='sequential'"
    with pytest.raises(RuntimeError, match=message):
        quiet_trainer().fit(module, data)
    # the same model trains on the sequential path
    with pytest.warns(UserWarning, match="No reward was applied"):
        quiet_trainer().fit(CollaborativeModule(DataDependent(), num_agents=2, execution="sequential"), data)


def test_stopping_inside_a_round_is_reported() -> None:
    data = CollaborativeDataModule("digits", num_agents=2, batch_size=32, sample_size_cap=200)
    module = CollaborativeModule(MLP(64, 8, 10), num_agents=2, standalone_baseline=False)
    with pytest.warns(UserWarning, match=r"Training stopped in the middle of round 0"):
        quiet_trainer(max_epochs=3, max_steps=2).fit(module, data)
    assert module.round_index == 0
