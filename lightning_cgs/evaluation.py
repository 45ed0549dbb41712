"""Evaluating every agent, every standalone twin and the server model together, in one pass over the data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lightning_cgs.agents.pool import AgentPool


@dataclass
class Evaluation:
    """Test accuracy and loss of the collaborative agents, their standalone twins and the server model."""

    accuracy: Tensor
    loss: Tensor
    standalone_accuracy: Tensor | None
    standalone_loss: Tensor | None
    server_accuracy: float
    server_loss: float


def all_model_outputs(
    pool: AgentPool,
    server_params: Sequence[Tensor],
    server_buffers: Sequence[Tensor],
    inputs: Tensor,
    vectorized: bool,
    chunk_size: int | None = None,
) -> Tensor:
    """Outputs ``(R + 1, n, ...)`` of every row of ``pool`` and then the server model on the shared batch ``inputs``.

    Vectorised: one ``torch.vmap`` over the rows and the server stacked together (``chunk_size`` rows at a time if
    given). Sequential: each row's replica, then the server, one after another.
    """
    if vectorized:
        params = pool.with_aliases(
            {
                name: torch.cat([stacked.detach(), server.detach().unsqueeze(0)])
                for name, stacked, server in zip(pool.param_names, pool.stacked_params(), server_params, strict=True)
            }
        )
        buffers = {
            name: torch.cat([stacked, server.unsqueeze(0)])
            for name, stacked, server in zip(pool.buffer_names, pool.stacked_buffers(), server_buffers, strict=True)
        }
        return pool.vectorized_outputs(params, buffers, inputs, chunk_size=chunk_size)
    outputs = []
    for _, replica in pool.iter_replicas(torch.arange(pool.num_rows)):
        outputs.append(replica.eval()(inputs))
    params = pool.with_aliases(dict(zip(pool.param_names, server_params, strict=True)))
    buffers = dict(zip(pool.buffer_names, server_buffers, strict=True))
    template = pool._template.eval()
    outputs.append(torch.func.functional_call(template, (params, buffers), (inputs,)))
    return torch.stack(outputs)


def evaluation_metrics(evaluation: Evaluation, prefix: str) -> dict[str, float]:
    """Flat, namespaced scalars of an :class:`Evaluation` (``<prefix>/accuracy/agent_0``, ...)."""
    metrics: dict[str, float] = {}
    for i, (acc, loss) in enumerate(zip(evaluation.accuracy.tolist(), evaluation.loss.tolist(), strict=True)):
        metrics[f"{prefix}/accuracy/agent_{i}"] = acc
        metrics[f"{prefix}/loss/agent_{i}"] = loss
    if evaluation.standalone_accuracy is not None:
        for i, acc in enumerate(evaluation.standalone_accuracy.tolist()):
            metrics[f"{prefix}/standalone_accuracy/agent_{i}"] = acc
    metrics[f"{prefix}/accuracy/server"] = evaluation.server_accuracy
    metrics[f"{prefix}/accuracy/best"] = float(evaluation.accuracy.max())
    metrics[f"{prefix}/accuracy/mean"] = float(evaluation.accuracy.mean())
    return metrics


__all__ = ["Evaluation", "all_model_outputs", "evaluation_metrics"]
