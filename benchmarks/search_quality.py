"""Target 3: at an equal budget our Bayesian search (scikit-optimize GP) finds scores at least as
good as Optuna's TPE, in median over seeds; random search is shown too.

Two tasks on real data: the rookie classification (ROC AUC) and a regression of a season's points
per game from all_seasons.csv (R²; see ``load_seasons`` for the columns dropped against leakage).
Estimator: HistGradientBoosting with a fixed number of boosting iterations, 3-fold CV, one thread
per fit (OpenMP threads oversubscribe a shared 2-core box and make fits 10-80× slower at random).
For a given seed all three searchers see exactly the same objective: the same estimator, the same
folds (``make_splitter(3, seed=seed)``), the same space. Searches run two at a time in separate
processes: this benchmark measures quality, not speed.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from pathlib import Path
from typing import Any

from benchmarks._common import (
    BenchContext,
    Row,
    Section,
    fmt_ratio,
    fmt_seconds,
    load_rookies,
    load_seasons,
    median,
)

NAME = "search_quality"
TITLE = "3. Search quality at equal budget: Bayesian (GP) vs random vs Optuna TPE"
STRATEGIES = ("bayesian", "random", "tpe")
TASKS = {"rookies_5yr (classification, ROC AUC)": "classification", "seasons_pts (regression, R²)": "regression"}
WITHIN = 0.01  # "within 1% of the best known score"
PROPOSAL_TARGET = 0.050  # seconds of ask + tell per trial at 30 trials

SPACE: dict[str, dict[str, Any]] = {
    "learning_rate": {"type": "float", "low": 0.01, "high": 0.5, "log": True},
    "max_leaf_nodes": {"type": "int", "low": 4, "high": 64, "log": True},
    "min_samples_leaf": {"type": "int", "low": 2, "high": 100, "log": True},
    "l2_regularization": {"type": "float", "low": 1e-6, "high": 10.0, "log": True},
    "max_features": {"type": "float", "low": 0.3, "high": 1.0},
}


@functools.lru_cache(maxsize=4)
def _data(task: str, data_dir: str, rows: int):
    if task == "classification":
        return load_rookies(Path(data_dir))
    return load_seasons(Path(data_dir), n_rows=rows, seed=0)


def _estimator(task: str, max_iter: int):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingClassifier if task == "classification" else HistGradientBoostingRegressor
    return cls(max_iter=max_iter, early_stopping=False, random_state=0)


def _scoring(task: str) -> str:
    return "roc_auc" if task == "classification" else "r2"


def search_job(task: str, strategy: str, seed: int, trials: int, data_dir: str, rows: int, max_iter: int) -> dict:
    """One search; returns the CV score of every trial in order (None = failed) and its wall time."""
    import benchmarks  # noqa: F401 - quiet MLflow env in worker processes
    from threadpoolctl import threadpool_limits

    from benchmarks._common import quiet_warnings

    quiet_warnings()
    X, y = _data(task, data_dir, rows)
    started = time.perf_counter()
    clock = ProposalClock()
    with threadpool_limits(1):
        if strategy == "tpe":
            scores, fit_seconds = _optuna_tpe(task, seed, trials, X, y, max_iter, clock)
        else:
            from mcp_server.hyperparameter_tuning import HyperparameterTuner, _strategies

            cls = _strategies.BayesianStrategy if strategy == "bayesian" else _strategies.RandomStrategy
            with clock.timing(cls, ("ask", "tell")):
                result = HyperparameterTuner(enable_mlflow=False).tune(
                    estimator=_estimator(task, max_iter), X=X, y=y, space=SPACE, strategy=strategy,
                    scoring=_scoring(task), cv_folds=3, max_trials=trials, seed=seed,
                )
            scores = [t.score for t in sorted(result.trials, key=lambda t: t.number)]
            fit_seconds = sum(t.duration_seconds for t in result.trials)
    return {"task": task, "strategy": strategy, "seed": seed, "scores": scores,
            "seconds": time.perf_counter() - started, "fit_seconds": fit_seconds,
            "proposal_seconds": clock.wall, "proposal_cpu_seconds": clock.cpu}


class ProposalClock:
    """Wall and thread-CPU time spent inside a searcher's proposal methods (ours: ask + tell; Optuna:
    the sampler's methods), measured by wrapping them for the duration of one search."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self._depth = 0  # a wrapped method calling another is counted once

    def wrap(self, method):
        @functools.wraps(method)
        def timed(*args, **kwargs):
            if self._depth:
                return method(*args, **kwargs)
            self._depth += 1
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                self.wall += time.perf_counter() - wall
                self.cpu += time.thread_time() - cpu
                self._depth -= 1
        return timed

    @contextlib.contextmanager
    def timing(self, owner: Any, names: tuple[str, ...]):
        """Wrap ``owner``'s methods (a class, or one object) while the block runs."""
        saved = {name: owner.__dict__.get(name) for name in names}
        for name in names:
            setattr(owner, name, self.wrap(getattr(owner, name)))
        try:
            yield self
        finally:
            for name, method in saved.items():
                if method is None:
                    delattr(owner, name)
                else:
                    setattr(owner, name, method)


# Every method through which Optuna's study asks its sampler for a trial's parameters or tells it a result.
SAMPLER_METHODS = ("infer_relative_search_space", "sample_relative", "sample_independent", "before_trial",
                   "after_trial")


def _optuna_tpe(task: str, seed: int, trials: int, X, y, max_iter: int,
                clock: ProposalClock | None = None) -> tuple[list[float | None], float]:
    import optuna
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    from mcp_server.hyperparameter_tuning import make_splitter

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    splitter = make_splitter(3, classification=task == "classification", seed=seed)
    base = _estimator(task, max_iter)
    fitting = [0.0]

    def objective(trial: optuna.Trial) -> float:
        model = clone(base).set_params(**optuna_params(trial, SPACE))
        started = time.perf_counter()
        score = float(cross_val_score(model, X, y, cv=splitter, scoring=_scoring(task)).mean())
        fitting[0] += time.perf_counter() - started
        return score

    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    with (clock or ProposalClock()).timing(sampler, SAMPLER_METHODS):
        study.optimize(objective, n_trials=trials)
    return [t.value for t in study.trials], fitting[0]


def optuna_params(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A candidate from Optuna's sampler over one of our typed spaces (float / int, optional log)."""
    params = {}
    for name, spec in space.items():
        suggest = trial.suggest_float if spec["type"] == "float" else trial.suggest_int
        params[name] = suggest(name, spec["low"], spec["high"], log=spec.get("log", False))
    return params


def trials_to_reach(scores: list[float | None], goal: float) -> int | None:
    best = -math.inf
    for number, score in enumerate(scores, start=1):
        if score is not None:
            best = max(best, score)
        if best >= goal:
            return number
    return None


def run(ctx: BenchContext) -> Section:
    from joblib import Parallel, delayed

    cfg = ctx.config
    section = Section(NAME, TITLE)
    jobs = [
        (task, strategy, seed)
        for task in TASKS.values() for seed in range(cfg.quality_seeds) for strategy in STRATEGIES
    ]
    runner = Parallel(n_jobs=cfg.quality_workers, backend="loky") if cfg.quality_workers > 1 else None
    calls = [delayed(search_job)(task, strategy, seed, cfg.quality_trials, str(ctx.data_dir), cfg.quality_rows,
                                 cfg.quality_max_iter) for task, strategy, seed in jobs]
    results = runner(calls) if runner else [fn(*args, **kwargs) for fn, args, kwargs in calls]
    by_key = {(r["task"], r["strategy"], r["seed"]): r for r in results}
    section.add(
        f"Budget: {cfg.quality_trials} trials per search, {cfg.quality_seeds} seeds, 3-fold CV. Estimator: "
        f"HistGradientBoosting(max_iter={cfg.quality_max_iter}, early_stopping=False, random_state=0). Space: "
        + ", ".join(f"{k} {v['low']}–{v['high']}{' (log)' if v.get('log') else ''} ({v['type']})" for k, v in SPACE.items())
        + f". Regression data: all_seasons.csv rows with gp ≥ 10, {cfg.quality_rows} sampled (seed 0). "
        "Best known score for a (task, seed) = the best trial of all three searchers on those folds; "
        f"*trials to 1%* = first trial whose best-so-far is within {WITHIN:.0%} of it (\"> budget\" if never).",
        "",
        "| task | searcher | median best | min – max best | median trials to 1% | reached 1% | median search time "
        "| searcher's own time per trial | proposal time per trial (wall / CPU) |",
        "|---|---|---|---|---|---|---|---|---|",
    )
    paired = []
    for label, task in TASKS.items():
        medians, per_seed = {}, {}
        for strategy in STRATEGIES:
            bests, reach = [], []
            for seed in range(cfg.quality_seeds):
                known = max(s for st in STRATEGIES for s in by_key[(task, st, seed)]["scores"] if s is not None)
                scores = by_key[(task, strategy, seed)]["scores"]
                bests.append(max(s for s in scores if s is not None))
                reach.append(trials_to_reach(scores, known - WITHIN * abs(known)))
            medians[strategy] = median(bests)
            reached = [r for r in reach if r is not None]
            # A search that never got within 1% counts as budget + 1 in the median.
            med_reach = median([r if r is not None else cfg.quality_trials + 1 for r in reach])
            shown = f"{med_reach:g}" if med_reach <= cfg.quality_trials else f"> {cfg.quality_trials}"
            runs = [by_key[(task, strategy, s)] for s in range(cfg.quality_seeds)]
            seconds = median([r["seconds"] for r in runs])
            own = median([(r["seconds"] - r["fit_seconds"]) / len(r["scores"]) for r in runs])
            proposal = median([r["proposal_seconds"] / len(r["scores"]) for r in runs])
            proposal_cpu = median([r["proposal_cpu_seconds"] / len(r["scores"]) for r in runs])
            section.add(f"| {label} | {strategy} | {medians[strategy]:.4f} | {min(bests):.4f} – {max(bests):.4f} | "
                        f"{shown} | {len(reached)}/{len(reach)} | {seconds:.1f} s | {fmt_seconds(own)} | "
                        f"{fmt_seconds(proposal)} / {fmt_seconds(proposal_cpu)} |")
            per_seed[strategy] = bests
        diffs = [b - t for b, t in zip(per_seed["bayesian"], per_seed["tpe"])]
        paired.append(f"- {label}: Bayesian − TPE per seed: " + ", ".join(f"{d:+.4f}" for d in diffs)
                      + f" (Bayesian ahead on {sum(d > 0 for d in diffs)}, tied on {sum(d == 0 for d in diffs)}, "
                      f"behind on {sum(d < 0 for d in diffs)} of {len(diffs)} seeds).")
        section.rows.append(Row(
            NAME, f"{label}: median best CV score, our Bayesian vs Optuna TPE ({cfg.quality_trials} trials)",
            f"{medians['bayesian']:.4f}", f"{medians['tpe']:.4f}", f"{medians['bayesian'] - medians['tpe']:+.4f}",
            "≥ TPE", medians["bayesian"] >= medians["tpe"],
        ))
        section.rows.append(Row(NAME, f"{label}: median best CV score, random search (reference)",
                                f"{medians['random']:.4f}", f"{medians['tpe']:.4f}",
                                f"{medians['random'] - medians['tpe']:+.4f}", "", None))
    def per_trial(task: str, strategy: str, seed: int) -> float:
        run = by_key[(task, strategy, seed)]
        return run["proposal_seconds"] / len(run["scores"])

    seeds = range(cfg.quality_seeds)
    ours = median([per_trial(task, "bayesian", seed) for task in TASKS.values() for seed in seeds])
    theirs = median([per_trial(task, "tpe", seed) for task in TASKS.values() for seed in seeds])
    section.rows.append(Row(
        NAME, f"proposal cost per trial at {cfg.quality_trials} trials: our Bayesian's ask + tell vs Optuna TPE's "
        "sampler calls (wall, median over both tasks × seeds)",
        fmt_seconds(ours), fmt_seconds(theirs), fmt_ratio(ours / theirs) if theirs > 0 else "",
        f"≤ {fmt_seconds(PROPOSAL_TARGET)}", ours <= PROPOSAL_TARGET,
    ))
    pairs = "; ".join(
        f"{label.split(' ')[0]}: " + ", ".join(
            f"{1000 * per_trial(task, 'bayesian', seed):.0f} / {1000 * per_trial(task, 'tpe', seed):.0f}"
            for seed in seeds)
        for label, task in TASKS.items())
    section.add("", "Paired by seed (same folds, same objective):", "", *paired, "",
                "*Searcher's own time per trial* = (search wall time − time inside CV fits) / trials: everything but "
                "fitting, loop bookkeeping included. *Proposal time per trial* = time inside the searcher's proposal "
                "calls only, wall and the calling thread's CPU (less sensitive to other tenants): ours = "
                "`strategy.ask` + `strategy.tell` (for Bayesian: fitting scikit-optimize's GP and optimizing its "
                "acquisition), Optuna = the sampler's " + ", ".join(f"`{m}`" for m in SAMPLER_METHODS) + ". "
                f"Per seed, Bayesian / TPE proposal wall time per trial in ms: {pairs}.")
    return section
