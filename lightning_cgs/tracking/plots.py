"""The pictures of a run, drawn with matplotlib from a :class:`FairnessSeries` (the optional ``plot`` extra).

One implementation serves the live run (:class:`~lightning_cgs.FairnessMonitor` saves the PNGs at the end of training
and sends them to W&B) and ``lightning-cgs plot <run folder>``, which draws them again from a finished run's files.
The figures are built without ``pyplot``, so drawing them never changes the backend or the figures of the caller.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lightning_cgs.functional import pearson_correlation
from lightning_cgs.tracking.series import FairnessSeries

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PLOT_EXTRA = "pip install 'lightning-cgs[plot]'"
_MARKER_LIMIT = 15  # draw markers on a line when it has at most this many points
_LEGEND_LIMIT = 12  # agents named in a legend; more agents are told apart by colour alone


def matplotlib_available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        return False
    return True


def require_matplotlib(purpose: str = "Drawing the figures") -> None:
    """Raise a ``ModuleNotFoundError`` that names the extra to install when matplotlib is missing."""
    if not matplotlib_available():
        raise ModuleNotFoundError(f"{purpose} needs matplotlib, which is not installed: {PLOT_EXTRA}")


# ------------------------------------------------------------------------------------------------ drawing
def agent_colors(num_agents: int) -> list[tuple[float, float, float, float]]:
    """One colour per agent, the same in every figure (``tab10`` up to 10 agents, ``viridis`` beyond)."""
    from matplotlib import colormaps

    if num_agents <= 10:
        return [colormaps["tab10"](i) for i in range(num_agents)]
    return [colormaps["viridis"](i / (num_agents - 1)) for i in range(num_agents)]


def draw_agent_lines(
    ax: Axes,
    rounds: np.ndarray,
    values: np.ndarray,
    labels: Sequence[str],
    *,
    title: str,
    ylabel: str,
    reference: float | None = None,
    reference_label: str | None = None,
) -> None:
    """One line per agent: ``values[:, i]`` over ``rounds``; an optional dotted horizontal reference line."""
    colors = agent_colors(values.shape[1])
    marker = "o" if len(rounds) <= _MARKER_LIMIT else None
    for i, label in enumerate(labels):
        ax.plot(rounds, values[:, i], color=colors[i], marker=marker, markersize=4, linewidth=1.6, label=label)
    if reference is not None:
        ax.axhline(reference, color="0.5", linestyle=":", linewidth=1.2, label=reference_label)
    _finish_axes(ax, title=title, xlabel="round", ylabel=ylabel, legend=len(labels) <= _LEGEND_LIMIT)
    _integer_rounds(ax)


def draw_accuracy(
    ax: Axes,
    rounds: np.ndarray,
    accuracy: np.ndarray,
    standalone_accuracy: np.ndarray,
    server_accuracy: np.ndarray,
    labels: Sequence[str],
) -> None:
    """Every agent's test accuracy (solid), its standalone twin's (dashed, same colour) and the server model's."""
    colors = agent_colors(accuracy.shape[1])
    marker = "o" if len(rounds) <= _MARKER_LIMIT else None
    for i, label in enumerate(labels):
        ax.plot(rounds, accuracy[:, i], color=colors[i], marker=marker, markersize=4, linewidth=1.6, label=label)
        if not np.all(np.isnan(standalone_accuracy[:, i])):
            ax.plot(rounds, standalone_accuracy[:, i], color=colors[i], linestyle="--", linewidth=1.0, alpha=0.8)
    if not np.all(np.isnan(server_accuracy)):
        ax.plot(rounds, server_accuracy, color="black", marker=marker, markersize=4, linewidth=2.2, label="server")
    if not np.all(np.isnan(standalone_accuracy)):
        ax.plot([], [], color="0.4", linestyle="--", linewidth=1.0, label="standalone (dashed)")
    _finish_axes(ax, title="Test accuracy", xlabel="round", ylabel="accuracy", legend=len(labels) <= _LEGEND_LIMIT)
    _integer_rounds(ax)


def contribution_vs_reward_fit(
    standalone_accuracy: np.ndarray, final_accuracy: np.ndarray
) -> tuple[float | None, tuple[float, float] | None]:
    """The Pearson correlation (``rho_standalone``) and the least-squares line ``(slope, intercept)``.

    Either is ``None`` where it is undefined (fewer than two agents with both values, or a constant side).
    """
    keep = ~(np.isnan(standalone_accuracy) | np.isnan(final_accuracy))
    x, y = standalone_accuracy[keep], final_accuracy[keep]
    rho = pearson_correlation(torch.from_numpy(y), torch.from_numpy(x)) if x.size else None
    if x.size < 2 or np.ptp(x) == 0:
        return rho, None
    slope, intercept = np.polyfit(x, y, 1)
    return rho, (float(slope), float(intercept))


def describe_rho(rho: float | None, standalone_accuracy: np.ndarray, final_accuracy: np.ndarray) -> str:
    """``"0.934"``, or why rho_standalone is undefined.

    Example:
        >>> import numpy as np
        >>> describe_rho(None, np.array([0.5, 0.9]), np.array([0.8, 0.8]))
        'undefined (all final accuracies are equal)'
    """
    if rho is not None:
        return f"{rho:.3f}"
    keep = ~(np.isnan(standalone_accuracy) | np.isnan(final_accuracy))
    if keep.sum() < 2:
        return "undefined (fewer than two agents)"
    if np.ptp(final_accuracy[keep]) == 0:
        return "undefined (all final accuracies are equal)"
    return "undefined (all standalone accuracies are equal)"


def describe_fit(slope: float, intercept: float) -> str:
    """The fitted line as text, without a negative zero.

    Example:
        >>> describe_fit(-0.0001, 0.95), describe_fit(0.5, -0.1)
        ('final = 0.00 x standalone + 0.95', 'final = 0.50 x standalone - 0.10')
    """
    slope, intercept = round(slope, 2) + 0.0, round(intercept, 2) + 0.0
    sign = "-" if intercept < 0 else "+"
    return f"final = {slope:.2f} x standalone {sign} {abs(intercept):.2f}"


def draw_contribution_vs_reward(
    ax: Axes, standalone_accuracy: np.ndarray, final_accuracy: np.ndarray, labels: Sequence[str]
) -> float | None:
    """Each agent's contribution (standalone accuracy) against its reward (final accuracy), with the fitted line.

    The title gives rho_standalone. Returns it (``None`` where it is undefined).
    """
    colors = agent_colors(len(labels))
    rho, line = contribution_vs_reward_fit(standalone_accuracy, final_accuracy)
    for i, label in enumerate(labels):
        if math.isnan(standalone_accuracy[i]) or math.isnan(final_accuracy[i]):
            continue
        ax.scatter(standalone_accuracy[i], final_accuracy[i], color=colors[i], s=48, zorder=3, label=label)
        ax.annotate(str(i), (standalone_accuracy[i], final_accuracy[i]), textcoords="offset points", xytext=(5, 4))
    if line is not None:
        slope, intercept = line
        keep = ~np.isnan(standalone_accuracy)
        xs = np.linspace(np.nanmin(standalone_accuracy[keep]), np.nanmax(standalone_accuracy[keep]), 50)
        ax.plot(xs, slope * xs + intercept, color="0.3", linewidth=1.2, label=f"fit: {describe_fit(slope, intercept)}")
    shown = describe_rho(rho, standalone_accuracy, final_accuracy)
    _finish_axes(
        ax,
        title=f"Standalone vs final accuracy: rho_standalone = {shown}",
        xlabel="standalone accuracy (contribution)",
        ylabel="final accuracy (reward)",
        legend=len(labels) <= _LEGEND_LIMIT,
    )
    return rho


# ----------------------------------------------------------------------------------------------- figures
def reputation_figure(series: FairnessSeries) -> Figure:
    """Reputation of every agent after every round; the dotted line is the equal share 1/N."""
    figure, ax = _figure()
    draw_agent_lines(
        ax,
        series.rounds,
        series.reputation,
        series.agent_labels(),
        title="Reputation per agent",
        ylabel="reputation r",
        reference=1.0 / series.num_agents,
        reference_label="equal share 1/N",
    )
    return figure


def reward_fraction_figure(series: FairnessSeries) -> Figure:
    """Reward fraction q of every agent in every round (1 = the whole aggregated update)."""
    figure, ax = _figure()
    draw_agent_lines(
        ax,
        series.rounds,
        series.reward_fraction,
        series.agent_labels(),
        title="Reward fraction per agent",
        ylabel="reward fraction q",
    )
    ax.set_ylim(0, 1.05)
    return figure


def contribution_figure(series: FairnessSeries) -> Figure:
    """Contribution psi (cosine gradient Shapley value) of every agent in every round."""
    figure, ax = _figure()
    draw_agent_lines(
        ax,
        series.rounds,
        series.contributions,
        series.agent_labels(),
        title="Contribution psi per agent",
        ylabel="contribution psi",
    )
    return figure


def accuracy_figure(series: FairnessSeries) -> Figure:
    """Test accuracy of every agent, its standalone twin and the server model at every evaluation."""
    figure, ax = _figure()
    draw_accuracy(
        ax,
        series.evaluated_rounds,
        series.accuracy,
        series.standalone_accuracy,
        series.server_accuracy,
        series.agent_labels(),
    )
    return figure


def contribution_vs_reward_figure(series: FairnessSeries) -> Figure:
    """Final accuracy against standalone accuracy per agent, the fitted line, and rho_standalone in the title."""
    figure, ax = _figure()
    draw_contribution_vs_reward(ax, series.final_standalone_accuracy, series.final_accuracy, series.agent_labels())
    return figure


def overview_figure(series: FairnessSeries) -> Figure:
    """Reputation, reward fraction, accuracy and contribution vs reward in one 2 x 2 figure."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(15, 9.5), layout="constrained")
    (rep, frac), (acc, scatter) = figure.subplots(2, 2)
    labels = series.agent_labels()
    draw_agent_lines(
        rep,
        series.rounds,
        series.reputation,
        labels,
        title="Reputation per agent",
        ylabel="reputation r",
        reference=1.0 / series.num_agents,
        reference_label="equal share 1/N",
    )
    draw_agent_lines(
        frac,
        series.rounds,
        series.reward_fraction,
        labels,
        title="Reward fraction per agent",
        ylabel="reward fraction q",
    )
    frac.set_ylim(0, 1.05)
    draw_accuracy(
        acc, series.evaluated_rounds, series.accuracy, series.standalone_accuracy, series.server_accuracy, labels
    )
    draw_contribution_vs_reward(scatter, series.final_standalone_accuracy, series.final_accuracy, labels)

    # one legend for the four panels: an agent has the same colour in each
    entries: dict[str, Any] = {}
    for ax in figure.axes:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries and len(labels) <= _LEGEND_LIMIT:
        figure.legend(list(entries.values()), list(entries), loc="outside right upper", fontsize="small", frameon=False)
    rounds = int(series.rounds[-1]) if series.rounds.size else 0
    figure.suptitle(f"lightning_cgs: {series.num_agents} agents, {rounds} rounds", fontsize=14)
    return figure


# The figures saved for every run, by file stem; each is drawn only when its data exist.
FIGURES: dict[str, tuple[Callable[[FairnessSeries], Figure], Callable[[FairnessSeries], bool]]] = {
    "overview": (overview_figure, lambda s: s.rounds.size > 0 or s.evaluated_rounds.size > 0),
    "reputation": (reputation_figure, lambda s: _has(s.reputation)),
    "reward_fraction": (reward_fraction_figure, lambda s: _has(s.reward_fraction)),
    "contribution": (contribution_figure, lambda s: _has(s.contributions)),
    "accuracy": (accuracy_figure, lambda s: _has(s.accuracy)),
    "contribution_vs_reward": (
        contribution_vs_reward_figure,
        lambda s: _has(s.final_accuracy) and _has(s.final_standalone_accuracy),
    ),
}


def save_figures(series: FairnessSeries, folder: str | Path, dpi: int = 120, fmt: str = "png") -> dict[str, Path]:
    """Draw every figure that has data and save it as ``<folder>/<name>.<fmt>``.

    Args:
        series: the run's numbers.
        folder: where to write (created if needed).
        dpi: resolution of raster formats.
        fmt: a format matplotlib writes (``"png"``, ``"pdf"``, ``"svg"``).

    Returns:
        the written files by figure name.

    Raises:
        ModuleNotFoundError: If matplotlib is not installed.
    """
    require_matplotlib()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, (draw, has_data) in FIGURES.items():
        if not has_data(series):
            continue
        path = folder / f"{name}.{fmt}"
        draw(series).savefig(path, dpi=dpi, format=fmt)
        written[name] = path
    return written


# ------------------------------------------------------------------------------------------------ helpers
def _figure() -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9.0, 4.8), layout="constrained")
    return figure, figure.subplots()


def _finish_axes(ax: Axes, *, title: str, xlabel: str, ylabel: str, legend: bool) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:  # beside the axes, where it hides no data
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)


def _integer_rounds(ax: Axes) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _has(values: np.ndarray) -> bool:
    return values.size > 0 and not bool(np.all(np.isnan(values)))
