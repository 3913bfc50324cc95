"""Target 2: reach GridSearchCV's best score (within 0.002 ROC AUC) in at most half its wall time.

Our configurations search the seed grid's own space on the same folds (seeded per run), with full
MLflow logging on the embedded sqlite store. A seed counts only if the search's *final* best is
within 0.002 of GridSearchCV's best for that seed's folds; its time is the whole ``tune()`` call
(parent run, children, summary and plot included), against the median GridSearchCV (n_jobs=1) wall
time measured in this run. The primary configuration was chosen before the measured seeds were
run (on a development seed, 42); the others are reported alongside.
"""

from __future__ import annotations

import importlib
import math
import time
from typing import Any

from benchmarks._common import BenchContext, Row, Section, fmt_ratio, fmt_seconds, median, timed
from benchmarks._runners import baseline_grid, baseline_times, run_tuner, sqlite_tracker

NAME = "beat_baseline"
TITLE = "2. Beat the baseline: reach GridSearchCV's best ROC AUC in ≤ 0.5× its time"
TOLERANCE = 0.002
TARGET_RATIO = 0.5
PRIMARY = "grid + median fold pruning"


def configurations(ctx: BenchContext) -> dict[str, dict[str, Any]]:
    return {
        PRIMARY: {"strategy": "grid", "pruning": "median"},
        f"bayesian ({ctx.config.fast_bayesian_trials} trials) + median fold pruning": {
            "strategy": "bayesian", "max_trials": ctx.config.fast_bayesian_trials, "pruning": "median",
        },
    }


def tuned(ctx: BenchContext, label: str, seed: int, target: float) -> dict[str, Any]:
    """One configuration on one seed (memoized: the pruning benchmark reads the primary's runs)."""

    def measure() -> dict[str, Any]:
        reached: dict[str, float] = {}
        start = time.perf_counter()

        def on_trial(_record, progress):
            if "at" not in reached and progress.best_score is not None and progress.best_score >= target:
                reached["at"] = time.perf_counter() - start
                reached["trials"] = progress.n_trials_done

        seconds, result = run_tuner(ctx, tracker=sqlite_tracker(ctx), seed=seed, on_trial=on_trial,
                                    **configurations(ctx)[label])
        return {"seconds": seconds, "result": result, "reached_at": reached.get("at"),
                "reached_trials": reached.get("trials")}

    return ctx.memo(("tuned", label, seed), measure)


def run(ctx: BenchContext) -> Section:
    cfg = ctx.config
    section = Section(NAME, TITLE)
    sqlite_tracker(ctx)
    # scikit-optimize costs ~2 s to import, once per process (a server pays it on its first
    # Bayesian search): paid here, reported, and kept out of the per-seed times.
    skopt_import, _ = timed(lambda: importlib.import_module("skopt"))
    baselines = {seed: baseline_grid(ctx, seed) for seed in cfg.seeds}
    per_config: dict[str, list[dict[str, Any]]] = {}
    for label in configurations(ctx):
        for seed in cfg.seeds:
            target = baselines[seed].best_score - TOLERANCE
            outcome = dict(tuned(ctx, label, seed, target))
            outcome["ok"] = outcome["result"].best_score is not None and outcome["result"].best_score >= target
            per_config.setdefault(label, []).append(outcome | {"seed": seed})
    base_seconds = median(baseline_times(ctx))
    section.add(
        f"Baseline: GridSearchCV (n_jobs=1, refit=False), median wall time over the "
        f"{len(baseline_times(ctx))} runs measured in this benchmark run = {fmt_seconds(base_seconds)}. "
        "Ours: `HyperparameterTuner.tune(..., n_jobs=1)` with full MLflow logging on sqlite, over the grid's own "
        f"space (Bayesian treats each list as a categorical). One-off `import skopt` before timing: {fmt_seconds(skopt_import)}.",
        "",
        "| configuration | seed | GridSearchCV best | our best | within 0.002 | trials run | fold fits | "
        "reached target after | tune() wall | not fitting | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    )
    for label, outcomes in per_config.items():
        ratios = []
        for o in outcomes:
            result = o["result"]
            ratio = o["seconds"] / base_seconds if o["ok"] else math.inf
            ratios.append(ratio)
            reached = (f"{fmt_seconds(o['reached_at'])} (trial {o['reached_trials']})"
                       if o["reached_at"] is not None else "never")
            section.add(
                f"| {label} | {o['seed']} | {baselines[o['seed']].best_score:.4f} | {result.best_score:.4f} | "
                f"{'yes' if o['ok'] else 'no'} | {result.summary.n_trials_run} | {result.summary.n_fold_fits} | "
                f"{reached} | {fmt_seconds(o['seconds'])} | "
                f"{fmt_seconds(o['seconds'] - sum(t.duration_seconds for t in result.trials))} | {fmt_ratio(ratio)} |"
            )
        ratio = median(ratios)
        section.rows.append(Row(
            NAME, f"{label}{' (primary)' if label == PRIMARY else ''}: median over {len(outcomes)} seeds of "
            "tune() time to a final best within 0.002 (∞ if missed)",
            fmt_seconds(median([o["seconds"] for o in outcomes])), fmt_seconds(base_seconds), fmt_ratio(ratio),
            f"≤ {TARGET_RATIO}×", ratio <= TARGET_RATIO if label == PRIMARY else None,
        ))
    section.add("", "*Not fitting* = tune() wall time minus the trials' own durations (strategy, loop, MLflow "
                "logging). *Reached target after* = when the best-so-far first came within 0.002 (informational: "
                "a user cannot know when to stop, so the judged time is the whole call). A ratio of ∞ marks a "
                "seed whose final best missed GridSearchCV's best by more than 0.002.")
    return section
