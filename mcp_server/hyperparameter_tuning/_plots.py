"""Optimization-history figure (matplotlib's object API with the Agg canvas: no pyplot global state,
safe off the main thread and without a display)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mcp_server.hyperparameter_tuning._types import Direction, TrialRecord, TrialState

_STYLE = {
    TrialState.COMPLETE: {"color": "tab:blue", "marker": "o", "label": "complete"},
    TrialState.PRUNED: {"color": "tab:gray", "marker": "x", "label": "pruned (partial mean)"},
}


def warm_up() -> None:
    """Import what the figure needs (~2 s the first time): a search calls it while its trials run."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    from matplotlib.figure import Figure  # noqa: F401


def optimization_history_figure(trials: Sequence[TrialRecord], *, direction: Direction, scoring: str) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 1, 1)
    for state, style in _STYLE.items():
        points = [(t.number, t.score) for t in trials if t.state is state and t.score is not None]
        if points:
            xs, ys = zip(*points)
            ax.scatter(xs, ys, s=18, alpha=0.8, **style)
    failed = [t.number for t in trials if t.state is TrialState.FAILED]
    if failed:
        ax.scatter(failed, [0] * len(failed), color="tab:red", marker="v", s=18, label="failed", transform=ax.get_xaxis_transform())
    best_xs, best_ys, best = [], [], None
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.state is TrialState.COMPLETE and trial.score is not None:
            if best is None or direction.sign * trial.score > direction.sign * best:
                best = trial.score
        if best is not None:
            best_xs.append(trial.number)
            best_ys.append(best)
    if best_xs:
        ax.step(best_xs, best_ys, where="post", color="tab:orange", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{scoring} (CV mean)")
    ax.set_title(f"Optimization history ({direction.value} {scoring})")
    if ax.has_data():
        ax.legend(loc="best", fontsize="small")
    figure.tight_layout()
    return figure
