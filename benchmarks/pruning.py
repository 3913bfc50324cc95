"""Target 4: fold-level pruning on the seed grid skips ≥ 30% of fold fits and still finds the same
best params as GridSearchCV (which fits every fold of every candidate).

The pruned runs are the beat-the-baseline benchmark's primary configuration (grid + the default
median pruner), shared when both run; GridSearchCV on the same folds is the reference.
"""

from __future__ import annotations

from benchmarks._common import BenchContext, Row, Section, fmt_seconds
from benchmarks.beat_baseline import PRIMARY, TOLERANCE, tuned
from benchmarks._runners import baseline_grid

NAME = "pruning"
TITLE = "4. Fold-level pruning on the seed grid"
TARGET_SAVED = 0.30


def run(ctx: BenchContext) -> Section:
    cfg = ctx.config
    section = Section(NAME, TITLE)
    n_candidates = 1
    for values in cfg.grid.values():
        n_candidates *= len(values)
    full_fits = n_candidates * cfg.cv_folds
    section.add(
        f"Pruner: `MedianPruner()` (the default for `pruning=\"median\"`: prune after a fold when the running "
        "mean is below the median of completed trials' running means at the same fold, once 5 trials completed). "
        f"Without pruning the grid costs {n_candidates} × {cfg.cv_folds} = {full_fits} fold fits.",
        "",
        "| seed | fold fits run | saved | trials pruned | best params (pruned) | GridSearchCV best params | same | tune() wall |",
        "|---|---|---|---|---|---|---|---|",
    )
    saved_fractions, same_all = [], True
    for seed in cfg.seeds[: cfg.pruning_seeds]:
        baseline = baseline_grid(ctx, seed)
        outcome = tuned(ctx, PRIMARY, seed, baseline.best_score - TOLERANCE)
        summary = outcome["result"].summary
        saved = 1 - summary.n_fold_fits / full_fits
        same = outcome["result"].best_params == baseline.best_params
        saved_fractions.append(saved)
        same_all &= same
        section.add(
            f"| {seed} | {summary.n_fold_fits} | {saved:.0%} | {summary.n_pruned} | {outcome['result'].best_params} | "
            f"{baseline.best_params} | {'yes' if same else 'no'} | {fmt_seconds(outcome['seconds'])} |"
        )
    worst = min(saved_fractions)
    section.rows.append(Row(NAME, f"fold fits saved by median pruning (worst of {len(saved_fractions)} seeds)",
                            f"{worst:.0%} saved", f"{full_fits} fits", "", f"≥ {TARGET_SAVED:.0%}",
                            worst >= TARGET_SAVED))
    section.rows.append(Row(NAME, "pruned grid finds GridSearchCV's best params (every seed)",
                            "yes" if same_all else "no", "", "", "same params", same_all))
    return section
