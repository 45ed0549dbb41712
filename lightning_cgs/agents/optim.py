"""Optimizers over stacked agent parameters: every row of a stacked tensor is one agent, and rows never mix.

``torch.optim.SGD`` and ``torch.optim.Adam`` keep one step count and one learning rate per tensor. Agents with
different shard sizes take different numbers of steps per round, and each agent decays its own learning rate at
the end of its own local epochs, so neither can drive a stacked tensor directly. These optimizers reproduce the
update rules of their ``torch.optim`` namesakes row by row, with a step count per row, a learning-rate factor
per row and an optional set of rows to update (rows left out take no step: their parameters and their state do
not move, which matters for Adam, whose moments move even on a zero gradient).

They subclass :class:`torch.optim.Optimizer`, so Lightning checkpoints and restores their state like any other.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from torch import Tensor

OptimizerName = Literal["sgd", "adam", "adamw"]


def _broadcast_rows(values: Tensor, like: Tensor) -> Tensor:
    """Shape a ``(R,)`` vector so that it multiplies a ``(R, ...)`` tensor row by row."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def _check_non_negative(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"Expected argument `{name}` to be a finite number >= 0, but got {value!r}.")


class AgentOptimizer(torch.optim.Optimizer):
    """Base class: an element-wise optimizer whose parameters are ``(R, ...)`` stacks of ``R`` independent rows.

    Subclasses implement :meth:`_update`, a pure function of one row selection. :meth:`step` gathers the rows that
    train at this step, calls it, and writes the result back.
    """

    _state_names: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Tensor], defaults: dict[str, Any]) -> None:
        if not (isinstance(defaults["lr"], (int, float)) and math.isfinite(defaults["lr"]) and defaults["lr"] > 0):
            raise ValueError(f"Expected argument `lr` to be a finite number > 0, but got {defaults['lr']!r}.")
        super().__init__(params, defaults)
        rows = {p.shape[0] for group in self.param_groups for p in group["params"]}
        if len(rows) != 1:
            raise ValueError(f"Every stacked parameter must have the same number of rows, got {sorted(rows)}.")
        self.num_rows = rows.pop()

    def _init_state(self, param: Tensor) -> dict[str, Tensor]:
        state = {"step": torch.zeros(self.num_rows, dtype=torch.float32, device=param.device)}
        for name in self._state_names:
            state[name] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(  # type: ignore[override]
        self,
        closure: Callable[[], Any] | None = None,
        *,
        rows: Tensor | None = None,
        lr_scale: Tensor | None = None,
    ) -> Any:
        """Update the given rows from their gradients.

        Args:
            closure: re-evaluates the loss (Lightning passes one); called before the update when given.
            rows: ``(A,)`` long tensor of the rows to update, without repeats; ``None`` updates every row.
            lr_scale: ``(R,)`` factor per row on the group's learning rate (a per-agent schedule); ``None`` is 1.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state.update(self._init_state(param))
                self._step_param(param, state, group, rows, lr_scale)
        return loss

    def _step_param(
        self, param: Tensor, state: dict[str, Tensor], group: dict[str, Any], rows: Tensor | None, scale: Tensor | None
    ) -> None:
        step = state["step"].to(param.device)
        lr = torch.full((self.num_rows,), float(group["lr"]), dtype=torch.float64, device=param.device)
        if scale is not None:
            lr = lr * scale.to(device=param.device, dtype=torch.float64)
        buffers = {name: state[name] for name in self._state_names}

        if rows is None:
            new_param, new_buffers = self._update(param, param.grad, step, lr, buffers, group)
            param.copy_(new_param)
            for name, value in new_buffers.items():
                buffers[name].copy_(value)
            state["step"] = step + 1
            return

        rows = rows.to(param.device)
        picked = {name: value.index_select(0, rows) for name, value in buffers.items()}
        new_param, new_buffers = self._update(
            param.index_select(0, rows), param.grad.index_select(0, rows), step[rows], lr[rows], picked, group
        )
        param.index_copy_(0, rows, new_param)
        for name, value in new_buffers.items():
            buffers[name].index_copy_(0, rows, value)
        state["step"] = step.index_add(0, rows, torch.ones_like(rows, dtype=step.dtype))

    def reset_rows(self, rows: Tensor) -> None:
        """Forget the optimizer state of the given rows (a fresh start for an agent whose update was not finite)."""
        for group in self.param_groups:
            for param in group["params"]:
                state = self.state.get(param)
                if not state:
                    continue
                state["step"][rows.to(state["step"].device)] = 0
                for name in self._state_names:
                    state[name][rows.to(state[name].device)] = 0

    def _update(
        self,
        param: Tensor,
        grad: Tensor,
        step: Tensor,
        lr: Tensor,
        buffers: dict[str, Tensor],
        group: dict[str, Any],
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the new parameter rows and state rows. ``step`` counts the steps taken before this one."""
        raise NotImplementedError


class AgentSGD(AgentOptimizer):
    r"""Stochastic gradient descent per row, with the update rule of :class:`torch.optim.SGD`.

    .. math::
        g_t = \nabla_t + \lambda \theta_{t-1}, \quad
        b_t = \mu b_{t-1} + (1 - \tau) g_t \; (b_1 = g_1), \quad
        \theta_t = \theta_{t-1} - \eta \, (g_t + \mu b_t \text{ if Nesterov else } b_t)

    Args:
        params: stacked parameters, each ``(R, ...)``.
        lr: learning rate, scaled per row by ``lr_scale`` in :meth:`step`.
        momentum: momentum factor ``mu`` (0 disables the buffer).
        dampening: dampening ``tau`` for the momentum.
        weight_decay: L2 penalty ``lambda``.
        nesterov: Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-2,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        for name, value in (("momentum", momentum), ("dampening", dampening), ("weight_decay", weight_decay)):
            _check_non_negative(name, value)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                f"Argument `nesterov=True` needs `momentum` > 0 and `dampening` == 0, "
                f"but got momentum={momentum}, dampening={dampening}."
            )
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
        }
        self._state_names = ("momentum_buffer",) if momentum > 0 else ()
        super().__init__(params, defaults)

    def _update(self, param, grad, step, lr, buffers, group):  # type: ignore[no-untyped-def]
        direction = grad if group["weight_decay"] == 0 else grad + group["weight_decay"] * param
        new_buffers = {}
        momentum = group["momentum"]
        if momentum > 0:
            first = _broadcast_rows(step == 0, param)
            buffer = torch.where(
                first, direction, momentum * buffers["momentum_buffer"] + (1 - group["dampening"]) * direction
            )
            new_buffers["momentum_buffer"] = buffer
            direction = direction + momentum * buffer if group["nesterov"] else buffer
        rate = _broadcast_rows(lr, param).to(param.dtype)
        return param - rate * direction, new_buffers


class AgentAdam(AgentOptimizer):
    r"""Adam (or AdamW) per row, with the update rule of :class:`torch.optim.Adam` / :class:`torch.optim.AdamW`.

    Each row keeps its own step count, so its bias corrections follow its own number of steps.

    .. math::
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \quad
        \theta_t = \theta_{t-1} - \frac{\eta}{1 - \beta_1^t} \frac{m_t}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon}

    Args:
        params: stacked parameters, each ``(R, ...)``.
        lr: learning rate, scaled per row by ``lr_scale`` in :meth:`step`.
        betas: coefficients ``(beta1, beta2)``, each in [0, 1).
        eps: term added to the denominator.
        weight_decay: L2 penalty added to the gradient (Adam) or decoupled decay (AdamW).
        amsgrad: use the maximum of past second moments.
        decoupled_weight_decay: AdamW's decoupled weight decay.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        betas = tuple(betas)  # type: ignore[assignment]
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
            raise ValueError(f"Expected argument `betas` to be two numbers in [0, 1), but got {betas!r}.")
        _check_non_negative("eps", eps)
        _check_non_negative("weight_decay", weight_decay)
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        self._state_names = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if amsgrad else ())
        super().__init__(params, defaults)

    def _update(self, param, grad, step, lr, buffers, group):  # type: ignore[no-untyped-def]
        beta1, beta2 = group["betas"]
        decay = group["weight_decay"]
        rate = _broadcast_rows(lr, param)
        if decay != 0 and group["decoupled_weight_decay"]:
            param = param * (1 - rate * decay).to(param.dtype)
        elif decay != 0:
            grad = grad + decay * param

        exp_avg = torch.lerp(buffers["exp_avg"], grad, 1 - beta1)
        exp_avg_sq = torch.addcmul(buffers["exp_avg_sq"] * beta2, grad, grad, value=1 - beta2)
        new_buffers = {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
        second = exp_avg_sq
        if group["amsgrad"]:
            second = torch.maximum(buffers["max_exp_avg_sq"], exp_avg_sq)
            new_buffers["max_exp_avg_sq"] = second

        # bias corrections in float64 from each row's own step count, as torch does with Python floats
        count = step.to(torch.float64) + 1
        correction1 = 1 - beta1**count
        correction2_sqrt = (1 - beta2**count).sqrt()
        step_size = _broadcast_rows(lr / correction1, param).to(param.dtype)
        denom = second.sqrt() / _broadcast_rows(correction2_sqrt, param).to(param.dtype) + group["eps"]
        return param + (-step_size) * (exp_avg / denom), new_buffers


def build_agent_optimizer(
    name: OptimizerName, params: Iterable[Tensor], lr: float, options: dict[str, Any] | None = None
) -> AgentOptimizer:
    """Create the stacked optimizer called ``name`` (``"sgd"``, ``"adam"`` or ``"adamw"``) with extra ``options``.

    Raises:
        ValueError: for an unknown name or an option the optimizer does not take.
    """
    options = dict(options or {})
    allowed: dict[str, tuple[type[AgentOptimizer], set[str]]] = {
        "sgd": (AgentSGD, {"momentum", "dampening", "weight_decay", "nesterov"}),
        "adam": (AgentAdam, {"betas", "eps", "weight_decay", "amsgrad"}),
        "adamw": (AgentAdam, {"betas", "eps", "weight_decay", "amsgrad"}),
    }
    if name not in allowed:
        raise ValueError(f"Expected argument `optimizer` to be one of {sorted(allowed)}, but got {name!r}.")
    cls, keys = allowed[name]
    unknown = sorted(set(options) - keys)
    if unknown:
        raise ValueError(
            f"Argument `optimizer_options` has {unknown} which optimizer {name!r} does not take; "
            f"allowed: {sorted(keys)}."
        )
    if name == "adamw":
        options.setdefault("weight_decay", 1e-2)
        options["decoupled_weight_decay"] = True
    return cls(params, lr=lr, **options)
