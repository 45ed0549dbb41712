"""The agent pool: R copies of one architecture held as stacked tensors, the single source of truth.

Every parameter and buffer of the user's model becomes one ``(R, ...)`` tensor registered on the pool, so the
pool's ``state_dict`` is the checkpoint of all agents, ``.to(device)`` moves all of them, and an optimizer over the
stacked tensors optimises all of them. Two ways of running the rows read and write the same tensors:

- vectorised: ``torch.vmap`` over ``torch.func.functional_call`` runs every row in one forward and one backward;
- sequential: one ordinary module per row (a *replica*) whose parameters and buffers are views into row ``r`` of
  the stacked tensors, run one after another. Its gradients land directly in the rows of the stacked gradients.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

Randomness = Literal["different", "same", "error"]

# Modules that hold state outside their registered parameters and buffers, or that need cross-sample
# statistics in a way that `torch.vmap` cannot split by agent.
_UNSUPPORTED_MODULES: dict[type[nn.Module], str] = {
    nn.SyncBatchNorm: "SyncBatchNorm synchronises statistics across processes, which would mix agents; use BatchNorm",
}


def _safe_key(name: str) -> str:
    return name.replace(".", "-")


def check_stackable(model: nn.Module) -> None:
    """Raise a ``ValueError`` that names the problem if ``model`` cannot be held as stacked agents."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"Expected argument `model` to be a torch.nn.Module, but got {type(model).__name__}.")
    params = list(model.named_parameters())
    if not params:
        raise ValueError(f"Argument `model` ({type(model).__name__}) has no parameters: there is nothing to train.")
    for name, param in params:
        if isinstance(param, nn.parameter.UninitializedParameter):
            raise ValueError(
                f"Argument `model` has an uninitialised (lazy) parameter `{name}`; run one forward pass on an "
                "example input before passing the model, so every parameter has its shape."
            )
        if not param.dtype.is_floating_point:
            raise ValueError(
                f"Argument `model` has parameter `{name}` of dtype {param.dtype}; only floating point "
                "parameters can be trained."
            )
        if not param.requires_grad:
            raise ValueError(
                f"Argument `model` has frozen parameter `{name}` (requires_grad=False); every agent trains every "
                "parameter. Register frozen weights as buffers instead."
            )
    for name, module in model.named_modules():
        for kind, reason in _UNSUPPORTED_MODULES.items():
            if isinstance(module, kind):
                raise ValueError(f"Argument `model` contains `{name}` ({kind.__name__}): {reason}.")
    devices = {t.device for t in model.parameters()} | {t.device for t in model.buffers()}
    if len(devices) > 1:
        raise ValueError(
            f"Argument `model` spreads over several devices {sorted(map(str, devices))}; put it on one device."
        )


class AgentPool(nn.Module):
    """``num_rows`` copies of ``model``, all starting from ``model``'s current weights.

    Args:
        model: the architecture (and the initial weights) of every row. It is copied, not kept.
        num_rows: how many copies.
        randomness: how random operations (dropout) differ between rows under ``torch.vmap``: ``"different"``
            (each row draws its own), ``"same"`` (rows share draws) or ``"error"``.
    """

    def __init__(self, model: nn.Module, num_rows: int, randomness: Randomness = "different") -> None:
        super().__init__()
        check_stackable(model)
        if randomness not in ("different", "same", "error"):
            raise ValueError(
                f"Expected argument `randomness` to be one of ['different', 'error', 'same'], but got {randomness!r}."
            )
        self.num_rows = num_rows
        self.randomness = randomness

        self.param_names = [name for name, _ in model.named_parameters()]
        # tied weights (one Parameter under several names): every alias reads its canonical name's rows
        canonical = {id(p): name for name, p in model.named_parameters()}
        self.param_aliases = {
            name: canonical[id(p)]
            for name, p in model.named_parameters(remove_duplicate=False)
            if canonical[id(p)] != name
        }
        self.buffer_names = [name for name, _ in model.named_buffers()]
        self.params = nn.ParameterDict(
            {
                _safe_key(name): nn.Parameter(p.detach().unsqueeze(0).repeat(num_rows, *([1] * p.dim())).clone())
                for name, p in model.named_parameters()
            }
        )
        self.buffers_ = nn.Module()
        for name, buffer in model.named_buffers():
            stacked = buffer.detach().unsqueeze(0).repeat(num_rows, *([1] * buffer.dim())).clone()
            self.buffers_.register_buffer(_safe_key(name), stacked)

        # The architecture without weights: functional_call supplies every parameter and buffer.
        template = copy.deepcopy(model).to("meta")
        object.__setattr__(self, "_template", template)
        object.__setattr__(self, "_replicas", [])
        object.__setattr__(self, "_replica_key", None)

    # ---------------------------------------------------------------------------------------------------- access
    @property
    def param_keys(self) -> list[str]:
        """Registered names of the stacked parameters (dots replaced), in ``model.named_parameters()`` order."""
        return [_safe_key(name) for name in self.param_names]

    @property
    def buffer_keys(self) -> list[str]:
        return [_safe_key(name) for name in self.buffer_names]

    def stacked_params(self) -> list[Tensor]:
        """The stacked parameters, in the order of ``model.named_parameters()``."""
        return [self.params[key] for key in self.param_keys]

    def stacked_buffers(self) -> list[Tensor]:
        return [getattr(self.buffers_, key) for key in self.buffer_keys]

    def param_dict(self, rows: Tensor | None = None) -> dict[str, Tensor]:
        """Stacked parameters by name (tied aliases included), optionally only the given rows."""
        params = self.stacked_params()
        if rows is None:
            selected = dict(zip(self.param_names, params, strict=True))
        else:
            selected = {name: p.index_select(0, rows) for name, p in zip(self.param_names, params, strict=True)}
        return self.with_aliases(selected)

    def with_aliases(self, params: dict[str, Tensor]) -> dict[str, Tensor]:
        """Add the tied aliases to a name -> tensor mapping (the template on the meta device is untied)."""
        return params | {alias: params[name] for alias, name in self.param_aliases.items()}

    def buffer_dict(self, rows: Tensor | None = None) -> dict[str, Tensor]:
        buffers = self.stacked_buffers()
        if rows is None:
            return dict(zip(self.buffer_names, buffers, strict=True))
        return {name: b.index_select(0, rows) for name, b in zip(self.buffer_names, buffers, strict=True)}

    @property
    def param_shapes(self) -> list[torch.Size]:
        return [p.shape[1:] for p in self.stacked_params()]

    @property
    def num_weights(self) -> int:
        """Number of trainable weights of one row (``d``)."""
        return sum(shape.numel() for shape in self.param_shapes)

    def split_flat(self, flat: Tensor) -> list[Tensor]:
        """Split ``(..., d)`` into per-parameter tensors of shape ``(..., *param_shape)``."""
        sizes = [shape.numel() for shape in self.param_shapes]
        pieces = flat.split(sizes, dim=-1)
        lead = flat.shape[:-1]
        return [piece.reshape(*lead, *shape) for piece, shape in zip(pieces, self.param_shapes, strict=True)]

    # ------------------------------------------------------------------------------------------------- gradients
    def zero_grad_rows(self) -> None:
        """Zero the stacked gradients in place, allocating them on first use (their storage never changes)."""
        for p in self.stacked_params():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            else:
                p.grad.zero_()

    # ---------------------------------------------------------------------------------------------- vectorised
    def vectorized_losses(
        self, rows: Tensor | None, inputs: Tensor, targets: Tensor, loss_fn, train: bool = True
    ) -> Tensor:
        """Per-row losses ``(A,)`` of rows ``rows`` (``None``: all rows in order) on their own batches.

        The autograd graph reaches the stacked parameters, so ``losses.sum().backward()`` fills the rows of the
        stacked gradients. In training mode, updated buffers (BatchNorm statistics) are written back.
        """
        template = self._template
        template.train(train)
        params = self.param_dict(rows)
        buffers = self.buffer_dict(rows)

        def row_loss(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
            return loss_fn(functional_call(template, (p, b), (x,)), y)

        with self._explain_vmap_errors():
            losses = vmap(row_loss, randomness=self.randomness)(params, buffers, inputs, targets)
        if rows is not None and train:
            with torch.no_grad():
                for stacked, name in zip(self.stacked_buffers(), self.buffer_names, strict=True):
                    stacked.index_copy_(0, rows, buffers[name])
        return losses

    def vectorized_outputs(
        self, params: dict[str, Tensor], buffers: dict[str, Tensor], inputs: Tensor, chunk_size: int | None = None
    ) -> Tensor:
        """Evaluation outputs ``(M, n, ...)`` of ``M`` stacked models on one shared batch ``inputs``."""
        template = self._template
        template.eval()

        def forward(p: dict[str, Tensor], b: dict[str, Tensor]) -> Tensor:
            return functional_call(template, (p, b), (inputs,))

        with self._explain_vmap_errors():
            return vmap(forward, chunk_size=chunk_size)(params, buffers)

    @property
    def model_name(self) -> str:
        """Class name of the agents' architecture, for messages."""
        return type(self._template).__name__

    def row_outputs(self, row: int, inputs: Tensor) -> Tensor:
        """Eval-mode outputs of row ``row`` on ``inputs``, without vmap, gradients or any change of state."""
        names = zip(self.param_names, self.stacked_params(), strict=True)
        params = self.with_aliases({name: stacked.detach()[row] for name, stacked in names})
        buffers = {name: b[row].clone() for name, b in zip(self.buffer_names, self.stacked_buffers(), strict=True)}
        with torch.no_grad():
            return functional_call(self._template.eval(), (params, buffers), (inputs,))

    @contextlib.contextmanager
    def _explain_vmap_errors(self) -> Iterator[None]:
        """Re-raise a failure inside ``torch.vmap`` with the model's name and what to do instead."""
        try:
            yield
        except (RuntimeError, ValueError, NotImplementedError) as error:
            raise RuntimeError(
                f"The model `{self.model_name}` cannot run its agents vectorised under torch.vmap: "
                f"{error}\nUse `CollaborativeModule(execution='sequential')`, which runs the same agents one after "
                "another (typical causes: `.item()` or data-dependent Python control flow in `forward`, in-place "
                "changes of captured tensors, or dropout with `randomness='error'`)."
            ) from error

    # ---------------------------------------------------------------------------------------------- sequential
    def replicas(self) -> list[nn.Module]:
        """One module per row, whose parameters, buffers and gradients are views into the stacked tensors.

        Rebuilt whenever the stacked tensors moved (another device, a loaded checkpoint that replaced them).
        """
        params = self.stacked_params()
        if params[0].grad is None:
            self.zero_grad_rows()
        key = tuple((p.data_ptr(), p.grad.data_ptr()) for p in params) + tuple(
            b.data_ptr() for b in self.stacked_buffers()
        )
        if key != self._replica_key:
            object.__setattr__(self, "_replicas", [self._make_replica(row) for row in range(self.num_rows)])
            object.__setattr__(self, "_replica_key", key)
        return self._replicas

    def _make_replica(self, row: int) -> nn.Module:
        replica = copy.deepcopy(self._template)
        device_params = dict(zip(self.param_names, self.stacked_params(), strict=True))
        views: dict[str, nn.Parameter] = {}
        for name, stacked in device_params.items():
            view = nn.Parameter(stacked.detach()[row])
            view.grad = stacked.grad[row]
            views[name] = view
        # tied names must share one view
        for name, view in self.with_aliases(views).items():
            owner, leaf = _split_name(replica, name)
            owner._parameters[leaf] = view
        for name, stacked in zip(self.buffer_names, self.stacked_buffers(), strict=True):
            owner, leaf = _split_name(replica, name)
            owner._buffers[leaf] = stacked[row]
        return replica

    def iter_replicas(self, rows: Tensor) -> Iterator[tuple[int, nn.Module]]:
        replicas = self.replicas()
        for row in rows.tolist():
            yield row, replicas[row]


def _split_name(root: nn.Module, name: str) -> tuple[nn.Module, str]:
    *path, leaf = name.split(".")
    owner = root
    for part in path:
        owner = getattr(owner, part)
    return owner, leaf
