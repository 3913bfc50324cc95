"""At an equal wall-clock budget per search, our searches (Bayesian with fold pruning, judged; successive
halving with bayesian or random candidates) against what users would pick instead: Optuna's TPE with
its Hyperband pruner, and scikit-learn's HalvingRandomSearchCV. Median best CV score over seeds, on
three tasks.

Tasks: the rookie classification (ROC AUC) and the season regression (R²) of ``search_quality``
(HistGradientBoosting, 50 iterations), plus a steeper landscape: HistGradientBoosting with 200
iterations and a learning rate from 0.001 to 1 (log) on the season data. Every searcher sees the
same estimator, space and 3 folds (``make_splitter(3, seed=seed)``) and runs single-threaded; two
searches run at a time in separate processes, the three searchers of a (task, seed) interleaved.

* Ours: ``tune(strategy="halving", timeout=budget, halving={"candidates": "bayesian"})``, a new
  bracket whenever one ends, later brackets half GP proposals (BOHB-style); the resource is
  boosting iterations. ``halving_random``: the same with random candidates only.
  ``bayesian_pruned``: ``tune(strategy="bayesian", pruning="noise_aware", timeout=budget)``, the GP
  searcher with fold pruning, the same kind of search as Optuna's below.
* Optuna: ``TPESampler(seed)`` + ``HyperbandPruner()``, the fold as the pruning step (the usual way
  to prune cross-validation), ``study.optimize(timeout=budget)``; best = ``study.best_value``.
* HalvingRandomSearchCV: defaults (rows as the resource, factor 3), one bracket after another with
  a new ``random_state`` while the budget lasts. A bracket's last rung may use fewer rows than the
  data, so each bracket's winner is cross-validated on the full folds afterwards (not timed) and
  the best of those is its score.

Every "best" is therefore a full 3-fold CV score on identical folds.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks._common import BenchContext, Row, Section, median
from benchmarks.search_quality import SPACE, _data, _scoring, optuna_params

NAME = "equal_budget"
TITLE = "10. Equal wall-clock budget: our searches vs Optuna TPE + Hyperband vs HalvingRandomSearchCV"
SEARCHERS = ("halving", "halving_random", "bayesian_pruned", "tpe_hyperband", "halving_random_search_cv")
# Our searchers: how each calls tune() (besides the shared estimator, space, folds, seed and timeout).
# The budget, not max_trials, ends every search: at 60 s the Bayesian search ran into 500 trials
# (settings.max_trials' default for the MCP tool, which a deployment can raise) on the rookies, so
# it gets 5,000 here, as a library caller or a raised setting would give it.
OURS: dict[str, dict[str, Any]] = {
    "halving": {"strategy": "halving", "halving": {"candidates": "bayesian"}},
    "halving_random": {"strategy": "halving", "halving": {"candidates": "random"}},
    "bayesian_pruned": {"strategy": "bayesian", "pruning": "noise_aware", "max_trials": 5_000},
}
OURS_LABEL = {
    "halving": "our halving (bayesian candidates)",
    "halving_random": "our halving with random candidates only",
    "bayesian_pruned": "our Bayesian + noise-aware fold pruning",
}
# Judged: the one of ours with the best median-of-seeds differences to both baselines on development
# seeds 5-9 (docs/tuning.md), chosen before this configuration's seeds 0-4 ran; the others are shown
# beside it. (Halving with bayesian candidates was judged before; it trailed on those seeds.)
JUDGED = "bayesian_pruned"
STEEP_SPACE: dict[str, dict[str, Any]] = {
    "learning_rate": {"type": "float", "low": 0.001, "high": 1.0, "log": True},
    "max_leaf_nodes": {"type": "int", "low": 4, "high": 128, "log": True},
    "min_samples_leaf": {"type": "int", "low": 2, "high": 200, "log": True},
    "l2_regularization": {"type": "float", "low": 1e-6, "high": 10.0, "log": True},
}
TASKS = {
    "rookies_5yr (classification, ROC AUC)": ("classification", "base"),
    "seasons_pts (regression, R²)": ("regression", "base"),
    "seasons_pts, steep (HGB 200 iterations, learning rate 0.001–1 log)": ("regression", "steep"),
}


def _setup(task: str, landscape: str, max_iter: int):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingClassifier if task == "classification" else HistGradientBoostingRegressor
    if landscape == "steep":
        return cls(max_iter=4 * max_iter, early_stopping=False, random_state=0), STEEP_SPACE
    return cls(max_iter=max_iter, early_stopping=False, random_state=0), SPACE


def budget_job(label: str, searcher: str, seed: int, budget: float, data_dir: str, rows: int, max_iter: int) -> dict:
    import benchmarks  # noqa: F401 - quiet MLflow env in worker processes
    from threadpoolctl import threadpool_limits

    from benchmarks._common import quiet_warnings

    quiet_warnings()
    task, landscape = TASKS[label]
    X, y = _data(task, data_dir, rows)
    estimator, space = _setup(task, landscape, max_iter)
    started = time.perf_counter()
    with threadpool_limits(1):
        if searcher in OURS:
            best, trials, detail = _ours(task, estimator, space, X, y, seed, budget, OURS[searcher])
        else:
            run = {"tpe_hyperband": _tpe_hyperband, "halving_random_search_cv": _halving_random_search_cv}[searcher]
            best, trials, detail = run(task, estimator, space, X, y, seed, budget)
    return {"label": label, "searcher": searcher, "seed": seed, "best": best, "trials": trials, "detail": detail,
            "seconds": time.perf_counter() - started}


def _ours(task, estimator, space, X, y, seed, budget, options):
    from mcp_server.hyperparameter_tuning import HyperparameterTuner, TrialState

    result = HyperparameterTuner(enable_mlflow=False).tune(
        estimator=estimator, X=X, y=y, space=space, scoring=_scoring(task), cv_folds=3, seed=seed, timeout=budget,
        **options,
    )
    if result.best_score is None:  # nothing finished in the budget (a tiny one on a loaded machine): no score
        return float("nan"), len(result.trials), "no trial finished within the budget"
    if options["strategy"] != "halving":
        complete = sum(t.state is TrialState.COMPLETE for t in result.trials)
        return result.best_score, len(result.trials), f"{complete} complete, {len(result.trials) - complete} pruned"
    full = [t for t in result.trials if t.resource == result.best_trial.resource]
    brackets = len({t.bracket for t in result.trials})
    return result.best_score, len(result.trials), f"{brackets} brackets, {len(full)} trials on the full resource"


def _tpe_hyperband(task, estimator, space, X, y, seed, budget):
    import numpy as np
    import optuna
    from sklearn.base import clone
    from sklearn.metrics import get_scorer

    from mcp_server.hyperparameter_tuning import make_splitter

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    splits = list(make_splitter(3, classification=task == "classification", seed=seed).split(X, y))
    scorer = get_scorer(_scoring(task))

    def objective(trial: optuna.Trial) -> float:
        params = optuna_params(trial, space)
        scores = []
        for step, (train, val) in enumerate(splits):
            model = clone(estimator).set_params(**params).fit(X[train], y[train])
            scores.append(scorer(model, X[val], y[val]))
            trial.report(float(np.mean(scores)), step)
            if step < len(splits) - 1 and trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(scores))

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=len(splits)))
    study.optimize(objective, timeout=budget)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return study.best_value, len(study.trials), f"{len(complete)} complete, {len(study.trials) - len(complete)} pruned"


def _halving_random_search_cv(task, estimator, space, X, y, seed, budget):
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import HalvingRandomSearchCV, cross_val_score

    from mcp_server.hyperparameter_tuning import SearchSpace, make_splitter

    splitter = make_splitter(3, classification=task == "classification", seed=seed)
    distributions = SearchSpace(space).to_sampler_distributions()
    started, winners, trials, bracket = time.perf_counter(), [], 0, 0
    while time.perf_counter() - started < budget:
        search = HalvingRandomSearchCV(estimator, distributions, scoring=_scoring(task), cv=splitter, refit=False,
                                       random_state=seed * 1000 + bracket, n_jobs=1)
        search.fit(X, y)
        winners.append(search.best_params_)
        trials += len(search.cv_results_["params"])
        bracket += 1
    from sklearn.base import clone

    scores = [float(cross_val_score(clone(estimator).set_params(**p), X, y, cv=splitter, scoring=_scoring(task)).mean())
              for p in winners]
    return max(scores), trials, f"{bracket} brackets"


def run(ctx: BenchContext) -> Section:
    from joblib import Parallel, delayed

    cfg = ctx.config
    section = Section(NAME, TITLE)
    budget, seeds = cfg.equal_budget_seconds, range(cfg.equal_budget_seeds)
    jobs = [(label, searcher, seed) for label in TASKS for seed in seeds for searcher in SEARCHERS]
    calls = [delayed(budget_job)(label, searcher, seed, budget, str(ctx.data_dir), cfg.quality_rows,
                                 cfg.quality_max_iter) for label, searcher, seed in jobs]
    if cfg.quality_workers > 1:
        results = Parallel(n_jobs=cfg.quality_workers, backend="loky")(calls)
    else:
        results = [fn(*args, **kwargs) for fn, args, kwargs in calls]
    by_key = {(r["label"], r["searcher"], r["seed"]): r for r in results}
    section.add(
        f"Budget: {budget:g} s of wall time per search, {len(seeds)} seeds, 3-fold CV, one thread per search, "
        f"two searches at a time. Regression data: all_seasons.csv rows with gp ≥ 10, {cfg.quality_rows} sampled "
        "(seed 0). Base tasks use `search_quality`'s space; the steep task: "
        + ", ".join(f"{k} {v['low']}–{v['high']}{' (log)' if v.get('log') else ''}" for k, v in STEEP_SPACE.items())
        + ".",
        "",
        "| task | searcher | median best | min – max best | median trials | median wall | per seed (best; detail) |",
        "|---|---|---|---|---|---|---|",
    )
    paired = []
    for label in TASKS:
        bests = {s: [by_key[(label, s, seed)]["best"] for seed in seeds] for s in SEARCHERS}
        for searcher in SEARCHERS:
            runs = [by_key[(label, searcher, seed)] for seed in seeds]
            section.add(
                f"| {label} | {searcher} | {median(bests[searcher]):.4f} | {min(bests[searcher]):.4f} – "
                f"{max(bests[searcher]):.4f} | {median([r['trials'] for r in runs]):g} | "
                f"{median([r['seconds'] for r in runs]):.1f} s | "
                + "; ".join(f"{r['best']:.4f} ({r['detail']})" for r in runs) + " |"
            )
        ours = median(bests[JUDGED])
        for searcher in OURS:
            if searcher == JUDGED:
                continue
            section.rows.append(Row(NAME, f"{label}: median best, {OURS_LABEL[searcher]} vs Optuna TPE + Hyperband "
                                    "(reference)", f"{median(bests[searcher]):.4f}",
                                    f"{median(bests['tpe_hyperband']):.4f}",
                                    f"{median(bests[searcher]) - median(bests['tpe_hyperband']):+.4f}", "", None))
        for other, name in (("tpe_hyperband", "Optuna TPE + Hyperband"), ("halving_random_search_cv",
                                                                            "HalvingRandomSearchCV")):
            theirs = median(bests[other])
            section.rows.append(Row(NAME, f"{label}: median best CV score at {budget:g} s, {OURS_LABEL[JUDGED]} "
                                    f"vs {name}",
                                    f"{ours:.4f}", f"{theirs:.4f}", f"{ours - theirs:+.4f}", f"≥ {name}",
                                    ours >= theirs))
            for searcher in OURS:
                diffs = [a - b for a, b in zip(bests[searcher], bests[other])]
                paired.append(f"- {label}, {OURS_LABEL[searcher]} − {name} per seed: "
                              + ", ".join(f"{d:+.4f}" for d in diffs)
                              + f" (ahead on {sum(d > 0 for d in diffs)}, behind on {sum(d < 0 for d in diffs)}).")
    section.add("", "Paired by seed (same folds, same objective):", "", *paired)
    return section
