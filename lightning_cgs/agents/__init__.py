"""The agent pool: stacked parameters of N agents, their vectorised and sequential execution, their optimizers."""

from lightning_cgs.agents.optim import AgentAdam, AgentOptimizer, AgentSGD, build_agent_optimizer
from lightning_cgs.agents.pool import AgentPool, check_stackable

__all__ = ["AgentAdam", "AgentOptimizer", "AgentPool", "AgentSGD", "build_agent_optimizer", "check_stackable"]
