"""``CollaborativeModule``: N agents of one architecture trained as parallel submodels, one round per epoch."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn

from lightning_cgs.agents.optim import AgentOptimizer, OptimizerName, build_agent_optimizer
from lightning_cgs.agents.pool import AgentPool, Randomness
from lightning_cgs.data.batch import RoundStep
from lightning_cgs.evaluation import Evaluation, all_model_outputs, evaluation_metrics
from lightning_cgs.metrics import ModelwiseClassification

Execution = Literal["auto", "vectorized", "sequential"]
LossName = Literal["cross_entropy", "nll"]
FreeRide = Literal["zero", "random"]

_LOSSES = {"cross_entropy": F.cross_entropy, "nll": F.nll_loss}


@dataclass
class RoundRecord:
    """What the round-end callbacks computed for the current round (kept until the next round starts)."""

    round_index: int
    normalized_updates: Tensor | None = None
    aggregate: Tensor | None = None
    contributions: Tensor | None = None
    reputation: Tensor | None = None
    weights: Tensor | None = None
    reward_fractions: Tensor | None = None
    rewarded: bool = False
    finite: Tensor | None = None
    seconds: dict[str, float] = field(default_factory=dict)


class CollaborativeModule(L.LightningModule):
    """Several agents train one architecture together; one Lightning training epoch is one round.

    Every agent starts from the weights of ``model``. In each round, every agent makes ``local_epochs`` full passes
    over its own shard with its own optimizer state and its own learning-rate schedule; then the round-end callbacks
    (:class:`~lightning_cgs.CosineGradientShapley`, :class:`~lightning_cgs.FairGradientReward`,
    :class:`~lightning_cgs.FairnessMonitor`) measure the updates and reward the agents. Without a reward callback,
    each agent keeps its own update (standalone training).

    All agents live in one stacked store (:class:`~lightning_cgs.agents.AgentPool`): the vectorised path trains them
    with one ``torch.vmap`` forward and backward, the sequential path one after another over views of the same store.
    Both give the same result as N separate models trained with ``torch.optim`` one after another.

    With ``standalone_baseline=True`` the store also holds a standalone twin of every agent, trained on the same
    batches but never rewarded: its accuracy is the agent's contribution in the fairness measure ``rho_standalone``,
    measured in the same run.

    Args:
        model: the architecture and initial weights (copied; not modified).
        num_agents: N >= 2.
        local_epochs: E >= 1 full passes over each shard per round.
        optimizer: ``"sgd"``, ``"adam"`` or ``"adamw"``, one independent state per agent.
        lr: initial learning rate.
        lr_decay: factor in (0, 1] applied once per local epoch (or per round, see ``lr_decay_every``).
        lr_decay_every: ``"local_epoch"`` or ``"round"`` (as the official code of the paper does).
        optimizer_options: extra options of the optimizer (SGD: momentum, dampening, weight_decay, nesterov;
            Adam/AdamW: betas, eps, weight_decay, amsgrad).
        loss: ``"cross_entropy"`` for models that return logits, ``"nll"`` for log-probabilities.
        execution: ``"vectorized"``, ``"sequential"`` or ``"auto"`` (vectorised on CUDA, sequential on the CPU,
            where a loop was measured faster; see the README's benchmark).
        randomness: how dropout differs between agents in the vectorised path (``"different"``, ``"same"``,
            ``"error"``).
        standalone_baseline: also train a standalone twin of every agent (doubles the training cost).
        keep_own_update: add each agent's own update to its reward (the paper's agents do not keep it).
        free_riders: ``{agent: "zero" | "random"}``: agents that train nothing and report a zero update or noise.
            Their standalone twins do not train either (a free rider brings nothing of its own), so their
            standalone accuracy, the contribution in ``rho_standalone``, is that of the initial weights.
        eval_chunk_size: models per vectorised evaluation pass (``None``: all at once).
        free_rider_seed: seed for the noise of ``"random"`` free riders.

    Example:
        >>> module = CollaborativeModule(nn.Linear(4, 3), num_agents=3, local_epochs=2, standalone_baseline=False)
        >>> module.pool.num_rows, module.pool.num_weights
        (3, 15)
    """

    def __init__(
        self,
        model: nn.Module,
        num_agents: int = 5,
        local_epochs: int = 1,
        optimizer: OptimizerName = "sgd",
        lr: float = 0.01,
        lr_decay: float = 1.0,
        lr_decay_every: Literal["local_epoch", "round"] = "local_epoch",
        optimizer_options: dict[str, Any] | None = None,
        loss: LossName = "cross_entropy",
        execution: Execution = "auto",
        randomness: Randomness = "different",
        standalone_baseline: bool = True,
        keep_own_update: bool = False,
        free_riders: dict[int, FreeRide] | None = None,
        eval_chunk_size: int | None = None,
        free_rider_seed: int = 0,
    ) -> None:
        super().__init__()
        _validate_int("num_agents", num_agents, minimum=2)
        _validate_int("local_epochs", local_epochs, minimum=1)
        if not (isinstance(lr_decay, (int, float)) and 0 < lr_decay <= 1):
            raise ValueError(f"Expected argument `lr_decay` to be in (0, 1], but got {lr_decay!r}.")
        _validate_choice("lr_decay_every", lr_decay_every, ("local_epoch", "round"))
        _validate_choice("loss", loss, tuple(_LOSSES))
        _validate_choice("execution", execution, ("auto", "vectorized", "sequential"))
        free_riders = {int(k): v for k, v in (free_riders or {}).items()}
        for agent, kind in free_riders.items():
            if not 0 <= agent < num_agents:
                raise ValueError(
                    f"Argument `free_riders` names agent {agent}, but agents are numbered 0 .. {num_agents - 1}."
                )
            _validate_choice(f"free_riders[{agent}]", kind, ("zero", "random"))
        if eval_chunk_size is not None:
            _validate_int("eval_chunk_size", eval_chunk_size, minimum=1)
        self.save_hyperparameters(ignore=["model"])

        self.num_agents = num_agents
        self.local_epochs = local_epochs
        self.lr_decay = float(lr_decay)
        self.lr_decay_every = lr_decay_every
        self.loss_name = loss
        self.loss_fn = _LOSSES[loss]
        self.execution = execution
        self.standalone_baseline = standalone_baseline
        self.keep_own_update = keep_own_update
        self.free_riders = free_riders
        self.eval_chunk_size = eval_chunk_size
        self.free_rider_seed = free_rider_seed
        self.automatic_optimization = False

        num_rows = num_agents * (2 if standalone_baseline else 1)
        self.pool = AgentPool(model, num_rows, randomness=randomness)
        # a throw-away optimizer validates the options now, before any training
        self._optimizer_spec = (optimizer, float(lr), dict(optimizer_options or {}))
        build_agent_optimizer(optimizer, [torch.zeros(1, 1, requires_grad=True)], lr, optimizer_options)

        # the server model: parameters and buffers in the pool's order, moved by the aggregate each round
        self.server = nn.ParameterDict()
        for key, stacked in zip(self.pool.param_keys, self.pool.stacked_params(), strict=True):
            self.server[key] = nn.Parameter(stacked.detach()[0].clone(), requires_grad=False)
        self.server_buffers = nn.Module()
        for key, stacked in zip(self.pool.buffer_keys, self.pool.stacked_buffers(), strict=True):
            self.server_buffers.register_buffer(key, stacked[0].clone())
        self.register_buffer("rounds_completed", torch.zeros((), dtype=torch.long))
        self.register_buffer("shard_sizes", torch.zeros(num_agents, dtype=torch.long))

        self._round_start: list[Tensor] | None = None
        self._current_round: int | None = None
        # per-round counters, on the module's device (no host synchronisation inside a step)
        self.register_buffer("_round_samples", torch.zeros(num_agents, dtype=torch.long), persistent=False)
        self.register_buffer("_round_steps", torch.zeros(num_rows, dtype=torch.long), persistent=False)
        self.register_buffer("_round_loss", torch.zeros(num_rows, dtype=torch.float64), persistent=False)
        trains = torch.ones(num_agents, dtype=torch.bool)
        trains[list(free_riders)] = False
        self.register_buffer("_trains", trains, persistent=False)
        self._round_clock = 0.0
        self._updates: Tensor | None = None
        self.round: RoundRecord | None = None
        self.round_history: list[dict[str, float]] = []
        self._warned_no_reward = False

    # ---------------------------------------------------------------------------------------------- properties
    @property
    def round_index(self) -> int:
        """0-based index of the current round (the number of rounds completed before it)."""
        if self._current_round is not None:  # read once per round: no device synchronisation inside a step
            return self._current_round
        return int(self.rounds_completed.item())

    @property
    def agent_rows(self) -> slice:
        return slice(0, self.num_agents)

    def server_params(self) -> list[Tensor]:
        """The server model's parameters, in the order of ``model.named_parameters()``."""
        return [self.server[key] for key in self.pool.param_keys]

    def server_buffer_list(self) -> list[Tensor]:
        return [getattr(self.server_buffers, key) for key in self.pool.buffer_keys]

    def resolved_execution(self) -> Literal["vectorized", "sequential"]:
        if self.execution != "auto":
            return self.execution  # type: ignore[return-value]
        return "vectorized" if self.device.type == "cuda" else "sequential"

    # ------------------------------------------------------------------------------------------------ Lightning
    def configure_optimizers(self) -> AgentOptimizer:
        name, lr, options = self._optimizer_spec
        return build_agent_optimizer(name, self.pool.stacked_params(), lr, options)

    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        trainer = self.trainer
        if trainer.world_size > 1:
            raise MisconfigurationException(
                f"lightning_cgs runs all agents in one process, but this trainer has `world_size={trainer.world_size}` "
                f"(`num_nodes={trainer.num_nodes}`, {trainer.num_devices} device(s) per node, strategy "
                f"{type(trainer.strategy).__name__}). A data-parallel strategy such as DDP would average the gradients "
                "of different agents across ranks; partitioning agents across processes is not supported yet. Use "
                "`Trainer(devices=1)`."
            )
        limit = trainer.limit_train_batches
        if limit is not None and not (isinstance(limit, float) and limit == 1.0):
            raise MisconfigurationException(
                f"`Trainer(limit_train_batches={trainer.limit_train_batches})` cuts rounds short; lightning_cgs "
                "needs every agent's full local epochs in each round (one Lightning epoch is one round): leave it "
                "at 1.0."
            )
        datamodule = getattr(trainer, "datamodule", None)
        data_agents = getattr(datamodule, "num_agents", None)
        if data_agents is not None and data_agents != self.num_agents:
            raise MisconfigurationException(
                f"The datamodule has `num_agents={data_agents}` but the module has `num_agents={self.num_agents}`;"
                " they must agree."
            )

    def on_fit_start(self) -> None:
        self._check_model_takes_data(getattr(self.trainer, "datamodule", None), self.trainer.precision_plugin)
        name, lr, _ = self._optimizer_spec
        rank_zero_info(
            f"lightning_cgs: {self.num_agents} agents x {self.pool.num_weights:,} weights, "
            f"{self.local_epochs} local epoch(s) per round, optimizer {name} (lr {lr:g}, decay {self.lr_decay:g} per "
            f"{self.lr_decay_every.replace('_', ' ')}), execution {self.resolved_execution()}, "
            f"standalone twins {'on' if self.standalone_baseline else 'off'}."
        )

    def on_train_epoch_start(self) -> None:
        self._open_round()

    def _check_model_takes_data(self, datamodule: Any, precision: Precision) -> None:
        """One forward and loss on two training examples, so a model that does not fit the data fails before round 0.

        Runs when the datamodule exposes ``train_inputs``, ``train_targets`` and ``num_classes`` (as
        ``CollaborativeDataModule`` does), on agent 0 in eval mode without gradients: no state changes.
        """
        try:
            inputs, targets = datamodule.train_inputs[:2], datamodule.train_targets[:2]
            num_classes = int(datamodule.num_classes)
        except Exception:  # not our datamodule, or one without these tensors: nothing to check against
            return
        seen = f"inputs of shape {tuple(inputs.shape[1:])} ({inputs.dtype}) and {num_classes} classes"
        try:
            with precision.forward_context():  # the dtype and autocast that the training steps will see
                outputs = self.pool.row_outputs(0, precision.convert_input(inputs.to(self.device)))
            if not isinstance(outputs, Tensor) or outputs.ndim != 2 or outputs.shape[0] != len(inputs):
                shape = tuple(outputs.shape) if isinstance(outputs, Tensor) else type(outputs).__name__
                raise ValueError(f"expected outputs of shape ({len(inputs)}, {num_classes}), got {shape}")
            if outputs.shape[1] < num_classes:
                raise ValueError(f"it gives {outputs.shape[1]} outputs per example for {num_classes} classes")
            with torch.no_grad():
                self.loss_fn(outputs, targets.to(self.device))
        except Exception as error:
            raise MisconfigurationException(
                f"The model `{self.pool.model_name}` does not fit the data ({seen}): on two training examples, "
                f"{type(error).__name__}: {error}. Check its input size and its number of outputs against the "
                "datamodule's `input_shape` and `num_classes`."
            ) from error

    def training_step(self, batch: RoundStep, batch_idx: int) -> None:
        if not isinstance(batch, RoundStep):
            raise TypeError(
                f"CollaborativeModule expects `RoundStep` batches (from CollaborativeDataModule), but got "
                f"{type(batch).__name__}."
            )
        if batch.round_index != self.round_index:
            raise RuntimeError(
                f"Received a step of round {batch.round_index} while the module is in round {self.round_index}: the "
                "train loader must produce the round that Lightning's epoch counter names (CollaborativeDataModule "
                "does; a custom loader must set `RoundStep.round_index` accordingly)."
            )
        if self._round_start is None:  # a step outside on_train_epoch_start (e.g. a resumed mid-round fetch)
            self._open_round()
        optimizer = self.optimizers()
        self.pool.zero_grad_rows()
        lr_scale = torch.ones(self.pool.num_rows, dtype=torch.float64, device=self.device)
        completed = self.round_index * (self.local_epochs if self.lr_decay_every == "local_epoch" else 1)
        active = []
        for group in batch.groups:
            rows, inputs, targets = group.agents, group.inputs, group.targets
            self._round_samples.index_add_(0, group.agents, torch.full_like(group.agents, group.batch_size))
            epochs = group.local_epochs.to(torch.float64)
            if self.lr_decay_every == "round":
                epochs = torch.zeros_like(epochs)
            if self.free_riders:  # a free rider trains nothing, and neither does its twin
                keep = self._trains[rows]
                rows, inputs, targets, epochs = rows[keep], inputs[keep], targets[keep], epochs[keep]
                if rows.numel() == 0:
                    continue
            if self.standalone_baseline:  # each twin trains on its agent's batch
                rows = torch.cat([rows, rows + self.num_agents])
                inputs, targets = torch.cat([inputs, inputs]), torch.cat([targets, targets])
                epochs = torch.cat([epochs, epochs])
            lr_scale[rows] = self.lr_decay ** (epochs + completed)
            losses = self._forward_backward(rows, inputs, targets)
            self._round_loss.index_add_(0, rows, losses.to(self._round_loss.dtype))
            self._round_steps.index_add_(0, rows, torch.ones_like(rows))
            active.append(rows)

        if active:
            rows = torch.cat(active)
            # agents that finished their local epochs are in no group: they take no step (Adam's moments stay put)
            optimizer.step(rows=None if rows.numel() == self.pool.num_rows else rows, lr_scale=lr_scale)
        if batch.last:
            self._round_clock = time.perf_counter() - self._round_clock
            self.round = RoundRecord(round_index=self.round_index, seconds={"train": self._round_clock})
            self._log_train_loss()

    def _log_train_loss(self) -> None:
        agents = self.agent_rows
        losses = (self._round_loss[agents] / self._round_steps[agents].clamp(min=1)).tolist()
        per_agent = {i: value for i, value in enumerate(losses) if i not in self.free_riders}  # riders train not
        if not per_agent:
            return
        mean = sum(per_agent.values()) / len(per_agent)
        self.log("train/loss", mean, on_step=False, on_epoch=True, prog_bar=True, batch_size=1)
        self.log_round_metrics({f"train/loss/agent_{i}": value for i, value in per_agent.items()})

    def log_round_metrics(self, metrics: Mapping[str, float]) -> None:
        """Send per-agent scalars straight to the trainer's loggers, on global rank zero, at this round's step.

        ``self.log`` reduces and synchronises every key on every call, which costs per key and per call; these
        values are already final, and there can be hundreds of them per round. The step is the one Lightning gives
        the metrics logged in this round's last batch, so both land at the same point of the x-axis.
        """
        trainer = self.trainer
        if not trainer.is_global_zero or not trainer.loggers or not metrics:
            return
        step = max(trainer.global_step - 1, 0)
        values = {**metrics, "epoch": self.current_epoch}
        for logger in trainer.loggers:
            logger.log_metrics(values, step=step)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if isinstance(batch, RoundStep) and batch.last:
            self._close_round()

    def on_train_end(self) -> None:
        if self._round_start is not None:
            rank_zero_warn(
                f"Training stopped in the middle of round {self.round_index} (for instance by `max_steps`): the agents "
                "hold part of a local update and no reward for it. Stop at the end of a round with `max_epochs`."
            )

    def on_train_epoch_end(self) -> None:
        stopped_by_steps = self.trainer.max_steps != -1 and self.trainer.global_step >= self.trainer.max_steps
        if self._round_start is not None and not stopped_by_steps:
            raise RuntimeError(
                f"Round {self.round_index} ended without its last step; every round must run all its steps "
                "(do not limit the number of training batches)."
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # RNG states, so that a resumed run draws the same dropout masks as an uninterrupted one
        checkpoint["lightning_cgs"] = {
            "torch_rng_state": torch.get_rng_state(),
            "cuda_rng_states": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "round_history": list(self.round_history),
            "round_open": self._round_start is not None,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        extra = checkpoint.get("lightning_cgs")
        if not extra:
            return
        if extra.get("round_open"):
            progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress", {})
            steps = progress.get("current", {}).get("processed", "some")
            raise MisconfigurationException(
                f"This checkpoint was saved in the middle of round {int(self.rounds_completed)} (after {steps} of "
                "its steps); lightning_cgs resumes from the end of a round. Resume from a checkpoint saved at a "
                "round's end (ModelCheckpoint's default, or `every_n_epochs`), not `every_n_train_steps` or "
                "`train_time_interval`."
            )
        torch.set_rng_state(extra["torch_rng_state"])
        if extra["cuda_rng_states"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(extra["cuda_rng_states"])
        self.round_history = list(extra["round_history"])

    def test_step(self, batch: Any, batch_idx: int) -> None:
        if not hasattr(self, "_test_metric"):
            self._test_metric = self._new_metric()
        self._update_metric(self._test_metric, batch)

    def on_test_epoch_end(self) -> None:
        evaluation = self._evaluation_from(self._test_metric.compute())
        del self._test_metric
        self.log_dict(evaluation_metrics(evaluation, prefix="test"), batch_size=1)

    # ---------------------------------------------------------------------------------------------- training
    def _forward_backward(self, rows: Tensor, inputs: Tensor, targets: Tensor) -> Tensor:
        """Forward and backward of every row on its own batch; gradients land in the stacked store.

        ``rows`` lists distinct rows; when it lists all of them, they are in order (agents in a group are
        increasing and twins follow their agents), so the stacked tensors serve as they are, without a gather.
        """
        if self.resolved_execution() == "vectorized":
            full = rows.numel() == self.pool.num_rows
            losses = self.pool.vectorized_losses(None if full else rows, inputs, targets, self.loss_fn)
        else:
            # one backward per row right after its forward: the activations of only one row are alive at a time
            losses = []
            for k, (_, replica) in enumerate(self.pool.iter_replicas(rows)):
                loss = self.loss_fn(replica.train()(inputs[k]), targets[k])
                self.manual_backward(loss)
                losses.append(loss.detach())
            return torch.stack(losses)
        self.manual_backward(losses.sum())
        return losses.detach()

    # ----------------------------------------------------------------------------------------------- rounds
    def _open_round(self) -> None:
        self._current_round = int(self.rounds_completed.item())
        self._round_start = [p.detach()[self.agent_rows].clone() for p in self.pool.stacked_params()]
        self._round_samples.zero_()
        self._round_steps.zero_()
        self._round_loss.zero_()
        self._updates = None
        self.round = None
        self._round_clock = time.perf_counter()

    def round_updates(self) -> Tensor:
        """The agents' updates of this round, ``(N, d)``: parameters now minus at the round start.

        Free riders, which do not train, report zero or random noise. Computed once per round.
        """
        if self._round_start is None:
            raise RuntimeError("round_updates() is only available between the start and the end of a round.")
        if self._updates is None:
            current = [p.detach()[self.agent_rows] for p in self.pool.stacked_params()]
            updates = torch.cat(
                [
                    (now - start).reshape(self.num_agents, -1)
                    for now, start in zip(current, self._round_start, strict=True)
                ],
                1,
            )
            for agent, kind in self.free_riders.items():
                if kind == "zero":
                    updates[agent] = 0
                else:
                    generator = torch.Generator().manual_seed(
                        _derive_seed(self.free_rider_seed, self.round_index, agent)
                    )
                    noise = torch.randn(updates.shape[1], generator=generator)
                    updates[agent] = noise.to(updates.device, updates.dtype)
            self._updates = updates
        return self._updates

    def round_samples(self) -> Tensor:
        """Examples each agent trained on in this round so far, ``(N,)`` (E times its shard size at round end)."""
        return self._round_samples.cpu()

    def apply_server_update(self, aggregate: Tensor) -> None:
        """Move the server model by the flat aggregate ``(d,)``; its buffers become the agents' weighted mean."""
        with torch.no_grad():
            for param, piece in zip(self.server_params(), self.pool.split_flat(aggregate), strict=True):
                param.add_(piece.to(param.dtype))
            weights = self.round.weights if self.round is not None and self.round.weights is not None else None
            for server_buffer, stacked in zip(self.server_buffer_list(), self.pool.stacked_buffers(), strict=True):
                rows = stacked[self.agent_rows]
                if not server_buffer.dtype.is_floating_point:
                    server_buffer.copy_(rows.max(0).values)
                elif weights is None:
                    server_buffer.copy_(rows.mean(0))
                else:
                    w = weights.to(rows.device, rows.dtype).reshape(-1, *([1] * (rows.dim() - 1)))
                    server_buffer.copy_((w * rows).sum(0) / w.sum())

    def apply_rewards(self, rewards: list[Tensor]) -> None:
        """Set agent i's parameters to its round-start parameters plus its reward.

        Args:
            rewards: per parameter tensor, ``(N, *shape)``: row i is agent i's reward (a sparsified aggregate).
        """
        finite = self.round.finite if self.round is not None and self.round.finite is not None else None
        with torch.no_grad():
            for param, start, reward in zip(self.pool.stacked_params(), self._round_start, rewards, strict=True):
                new = start + reward.to(start.dtype)
                if self.keep_own_update:
                    own = param.detach()[self.agent_rows] - start
                    if finite is not None:
                        own[~finite.to(own.device)] = 0
                    new = new + own
                param.detach()[self.agent_rows] = new
        if finite is not None and not bool(finite.all()):
            bad = (~finite).nonzero().flatten()
            self.optimizers().optimizer.reset_rows(bad.to(self.device))
        if self.round is not None:
            self.round.rewarded = True

    def _close_round(self) -> None:
        if self.round is None or not self.round.rewarded:
            if not self._warned_no_reward:
                rank_zero_warn(
                    "No reward was applied this round: every agent keeps its own update (standalone "
                    "training). Add `FairGradientReward` to the callbacks for the CGSV rewards."
                )
                self._warned_no_reward = True
        if self.round_index == 0:
            self.shard_sizes.copy_(self._round_samples.cpu() // self.local_epochs)
        seconds = dict(self.round.seconds) if self.round is not None else {}
        self.round_history.append({"round": self.round_index, **seconds})
        self.rounds_completed += 1
        self._current_round = None
        self._round_start = None
        self._updates = None

    # --------------------------------------------------------------------------------------------- evaluation
    def _new_metric(self) -> ModelwiseClassification:
        return ModelwiseClassification(self.pool.num_rows + 1, loss=self.loss_name).to(self.device)

    @torch.no_grad()
    def _update_metric(self, metric: ModelwiseClassification, batch: Any) -> None:
        inputs, targets = batch[0].to(self.device), batch[1].to(self.device)
        outputs = all_model_outputs(
            self.pool,
            self.server_params(),
            self.server_buffer_list(),
            inputs,
            vectorized=self.resolved_execution() == "vectorized",
            chunk_size=self.eval_chunk_size,
        )
        metric.update(outputs, targets)

    @torch.no_grad()
    def evaluate(self, dataloader: Any) -> Evaluation:
        """Accuracy and loss of every agent, standalone twin and the server model on ``dataloader``.

        One pass over the data serves all models (vectorised or sequential, as in training).
        """
        metric = self._new_metric()
        for batch in dataloader:
            self._update_metric(metric, batch)
        return self._evaluation_from(metric.compute())

    def _evaluation_from(self, computed: Mapping[str, Tensor]) -> Evaluation:
        accuracy, loss = computed["accuracy"].cpu(), computed["loss"].cpu()
        n = self.num_agents
        twins = slice(n, 2 * n)
        return Evaluation(
            accuracy=accuracy[:n],
            loss=loss[:n],
            standalone_accuracy=accuracy[twins] if self.standalone_baseline else None,
            standalone_loss=loss[twins] if self.standalone_baseline else None,
            server_accuracy=float(accuracy[-1]),
            server_loss=float(loss[-1]),
        )


def _validate_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"Expected argument `{name}` to be an integer >= {minimum}, but got {value!r}.")


def _validate_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"Expected argument `{name}` to be one of {sorted(allowed)}, but got {value!r}.")


def _derive_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


__all__ = ["CollaborativeModule", "RoundRecord"]
