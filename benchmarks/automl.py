"""Issue 28, item 6: the product's default call against FLAML and AutoGluon at an equal wall budget.

    python -m benchmarks.automl                        # 3 tasks x 5 seeds x 4 systems at 60 s (~45 min on 2 cores)
    python -m benchmarks.automl --seeds 2 --tasks rookies --budget 20
    python -m benchmarks.run --only automl             # the same, sized by the run's configuration
    make bench-automl                                  # creates .venv-automl first, then the first line

Systems, one after another (never two at once: on 2 cores that would distort every time), each
single-threaded, each given the same wall budget (60 s):

* **default call**: ``tune_hyperparameters`` through the MCP tool (the SDK's in-memory ``Client`` on
  ``build_server``) with only data set, target, features/drop and split, so whatever the default is
  at run time (estimator, strategy, budget: ``default_time_budget_seconds``, set to the budget) is
  what is measured; then ``run_pipeline(from_search=<its parent run>)`` trains the winner on the
  training part, and the logged model predicts the holdout. Server settings: ``cores=1`` (one
  thread per fit, one trial at a time), a scratch store migrated beforehand, and one small warm-up
  call first (imports, worker start), as a running server would have had.
* **FLAML** ``AutoML(time_budget=budget, n_jobs=1, seed=seed)``, ROC AUC / RMSE as its metric, the
  group column as its group k-fold where the task splits by group.
* **AutoGluon** ``TabularPredictor(...).fit(time_limit=budget, presets="medium_quality",
  excluded_model_types=["NN_TORCH", "FASTAI"], num_cpus=1)``.
* **untuned HistGradientBoosting** (defaults, ``random_state=seed``), a reference.

FLAML and AutoGluon run in ``.venv-automl`` (AutoGluon pins pandas < 2.4; the project's venv has
pandas 3), one process per fit through ``benchmarks/automl_baselines.py``; without that venv their
rows say "not run" and the rest still runs.

Same rows, same holdout for every system: the product's own holdout,
``holdout_rows(X, y, SplitSpec(**split, seed=seed))`` on the rows the tool loads, checked against
the digest the tool reports. Every system's test predictions are scored here by the same code:
ROC AUC (classification) or RMSE and R² (regression). Seeds pair the systems: a seed is the
holdout's seed and every system's own seed (the default call draws its own search seed, as a
caller who names none gets).

Tasks: RAPTOR ``predator_total`` from the README's six box-score features, split by player
(``nba:raptor``, packaged); the rookies (``nba_logreg.csv``, target ``TARGET_5Yrs``, ``Name``
dropped, a stratified holdout); all_seasons ``pts`` split by player (``seasons_frame``: gp ≥ 10, no
ids or leaky columns), written to a scratch data folder the server reads. A task whose CSV is
absent is skipped.

Targets (judged at the full 60 s budget): the default call's median ≥ FLAML's on every task,
≥ AutoGluon's on at least two of three, and every default call within the budget + 10 %.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks._common import (
    PROJECT_ROOT,
    ROOKIES_CSV,
    SEASONS_CSV,
    BenchContext,
    Row,
    Section,
    load_average,
    median,
    seasons_frame,
)

NAME = "automl"
TITLE = "11. Equal budget against AutoML: the default call vs FLAML and AutoGluon"
SYSTEMS = ("default_call", "flaml", "autogluon", "hgb")
LABELS = {"default_call": "default call", "flaml": "FLAML", "autogluon": "AutoGluon medium_quality",
          "hgb": "untuned HGB"}
BASELINES = ("flaml", "autogluon")  # run in .venv-automl
FULL_BUDGET = 60.0  # targets are judged at this budget
WALL_SLACK = 1.10  # the default call ends within budget + 10 %
# The python of the venv holding FLAML and AutoGluon (make bench-automl); NBA_MCP_AUTOML_PYTHON names another.
AUTOML_PYTHON = Path(os.environ.get("NBA_MCP_AUTOML_PYTHON") or PROJECT_ROOT / ".venv-automl" / "bin" / "python")
RUNNER = Path(__file__).with_name("automl_baselines.py")
OPTIONS_KEY = (NAME, "options")
SEASONS_DATASET = "bench_all_seasons_pts"
MAX_WAIT = 40  # seconds per get_job call
METRIC_NAMES = {"roc_auc": "ROC AUC", "rmse": "RMSE", "r2": "R²"}


@dataclass(frozen=True)
class Task:
    key: str
    label: str
    dataset: str  # what the default call names
    target: str
    split: dict[str, Any]  # SplitSpec fields but the seed
    features: list[str] | None = None
    drop: list[str] | None = None
    needs: str | None = None  # the file in the data folder the task is built from (None: packaged)

    def request(self, seed: int) -> dict[str, Any]:
        """The default call: data set, target, features or drop, split. Nothing else."""
        columns = {"features": self.features} if self.features else {"drop": self.drop} if self.drop else {}
        return {"dataset": self.dataset, "target": self.target, **columns, "split": {**self.split, "seed": seed}}


def _tasks() -> dict[str, Task]:
    from tools.demo import RAPTOR_FEATURES  # the README's six features

    return {
        "raptor": Task("raptor", "RAPTOR predator_total, group by player", "nba:raptor", "predator_total",
                       {"kind": "group", "column": "player_id"}, features=list(RAPTOR_FEATURES)),
        "rookies": Task("rookies", "rookies 5-year career, stratified holdout", "nba_logreg", "TARGET_5Yrs", {},
                        drop=["Name"], needs=ROOKIES_CSV),
        "seasons": Task("seasons", "all_seasons pts, group by player", SEASONS_DATASET, "pts",
                        {"kind": "group", "column": "player_name"}, needs=SEASONS_CSV),
    }


TASK_KEYS = ("raptor", "rookies", "seasons")


@dataclass(frozen=True)
class Options:
    seeds: tuple[int, ...]
    budget: float
    tasks: tuple[str, ...]
    automl_python: Path = AUTOML_PYTHON

    @classmethod
    def for_config(cls, name: str) -> Options:
        if name == "tiny":  # the smoke test: every code path, one small task
            return cls(seeds=(0,), budget=5.0, tasks=("rookies",))
        if name == "quick":
            return cls(seeds=(0, 1), budget=20.0, tasks=TASK_KEYS)
        return cls(seeds=tuple(range(5)), budget=FULL_BUDGET, tasks=TASK_KEYS)

    @property
    def judged(self) -> bool:
        return self.budget >= FULL_BUDGET


def options(ctx: BenchContext) -> Options:
    return ctx.peek(OPTIONS_KEY) or Options.for_config(ctx.config.name)


@dataclass
class Holdout:
    spec: Any  # SplitSpec
    digest: str
    classification: bool
    features: list[str]
    X_train: Any
    y_train: Any
    X_test: Any
    y_test: Any


@dataclass
class Outcome:
    task: str
    seed: int
    system: str
    metrics: dict[str, float] = field(default_factory=dict)  # roc_auc, or rmse and r2
    wall: float = math.nan  # the budgeted part: the search call / the fit
    total: float = math.nan  # default call: search + pipeline; baselines: the whole process
    chosen: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def goodness(self, primary: str) -> float:
        """Higher is better; a failed run is the worst."""
        value = self.metrics.get(primary)
        if value is None or not math.isfinite(value):
            return -math.inf
        return -value if primary == "rmse" else value


# --- data ---------------------------------------------------------------------------------------


def prepare_data(folder: Path, data_dir: Path, tasks: list[Task]) -> None:
    """Write the task files the server reads from ``folder`` (the season frame)."""
    if any(t.dataset == SEASONS_DATASET for t in tasks):
        target = folder / f"{SEASONS_DATASET}.csv"
        if not target.exists():
            seasons_frame(data_dir).to_csv(target, index=False)


def holdout_for(app: Any, task: Task, seed: int) -> Holdout:
    """The rows the tool loads for ``task`` and the product's holdout of them for ``seed``."""
    from mcp_server.estimators import infer_task
    from mcp_server.evaluation import SplitSpec, holdout_rows

    spec = SplitSpec(**task.split, seed=seed)
    X, y = app.catalog.training_data(task.dataset, task.target, task.features, task.drop, keep=spec.column)
    classification = infer_task(y) == "classification"
    record = holdout_rows(X, y, spec, classification=classification)
    features = [c for c in X.columns if c != spec.column]
    return Holdout(spec=spec, digest=record.test_digest, classification=classification, features=features,
                   X_train=X.loc[record.train_rows], y_train=y.loc[record.train_rows],
                   X_test=X.loc[record.test_rows, features], y_test=y.loc[record.test_rows])


def score(holdout: Holdout, predictions: Any) -> dict[str, float]:
    import numpy as np
    from sklearn.metrics import mean_squared_error, r2_score, roc_auc_score

    predictions = np.asarray(predictions, dtype=float)
    truth = holdout.y_test.to_numpy()
    if holdout.classification:
        return {"roc_auc": float(roc_auc_score(truth, predictions))}
    return {"rmse": float(math.sqrt(mean_squared_error(truth, predictions))), "r2": float(r2_score(truth, predictions))}


def positive_scores(model: Any, X: Any) -> Any:
    """Probability of the larger label (1 for 0/1 targets), as FLAML and AutoGluon give it."""
    classes = list(model.classes_)
    return model.predict_proba(X)[:, classes.index(max(classes))]


# --- the systems ----------------------------------------------------------------------------------


def _answer(result: Any) -> dict[str, Any]:
    text = result.content[0].text
    if result.is_error:
        raise RuntimeError(text)
    return json.loads(text)


async def _job_result(client: Any, tool: str, request: dict[str, Any]) -> dict[str, Any]:
    job = _answer(await client.call_tool(tool, {"request": request, "wait_seconds": MAX_WAIT}))
    while not job["done"]:
        job = _answer(await client.call_tool("get_job", {"job_id": job["job_id"], "wait_seconds": MAX_WAIT}))
    if job["state"] != "SUCCEEDED":
        raise RuntimeError(f"{tool} job {job['state']}: {job.get('error')}")
    return job["result"]


async def default_call(client: Any, app: Any, task: Task, seed: int, holdout: Holdout) -> Outcome:
    import anyio

    out = Outcome(task.key, seed, "default_call")
    started = time.perf_counter()
    try:
        found = await _job_result(client, "tune_hyperparameters", task.request(seed))
        out.wall = time.perf_counter() - started
        out.chosen = str(found.get("estimator") or "")
        out.detail = {
            "cv_score": found.get("best_score"), "scoring": found.get("scoring"), "search_seed": found.get("seed"),
            "n_trials": found.get("n_trials"), "stopped": found.get("stopped_reason"),
            "search_seconds": found.get("elapsed_seconds"), "best_params": found.get("best_params"),
            "families": [(f["name"], f["n_trials"], f.get("best_score")) for f in found.get("families") or []],
            "ensemble": found.get("ensemble") or found.get("ensemble_weights"),
            "warnings": [w["code"] for w in found.get("warnings") or []],
        }
        digest = (found.get("split") or {}).get("test_digest")
        if digest != holdout.digest:
            raise RuntimeError(f"the search's holdout {digest} is not the benchmark's {holdout.digest}")
        if found.get("best_params") is None:
            raise RuntimeError(f"the search found no winner ({found.get('n_trials')} trials, "
                               f"stopped: {found.get('stopped_reason')})")
        trained = await _job_result(client, "run_pipeline", {"from_search": found["parent_run_id"]})
        out.total = time.perf_counter() - started
        if trained.get("status") != "COMPLETED":
            raise RuntimeError(f"run_pipeline {trained.get('status')}: {trained.get('error')}")
        out.detail["pipeline_test"] = {k: v for k, v in trained.get("metrics", {}).items()
                                       if k in ("test_roc_auc", "test_rmse", "test_r2")}
        out.detail["pipeline_rows"] = (trained.get("n_train"), trained.get("n_test"))

        def predict():
            model = app.tracker(found.get("experiment_name")).load_model(trained["model_uri"])
            X = holdout.X_test
            return positive_scores(model, X) if holdout.classification else model.predict(X)

        out.metrics = score(holdout, await anyio.to_thread.run_sync(predict))
    except Exception as exc:  # noqa: BLE001 - a failed call is a result: it scores worst and is shown
        out.error = f"{type(exc).__name__}: {exc}"[:500]
        if math.isnan(out.wall):
            out.wall = time.perf_counter() - started
    return out


def untuned_hgb(task: Task, seed: int, holdout: Holdout) -> Outcome:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    cls = HistGradientBoostingClassifier if holdout.classification else HistGradientBoostingRegressor
    started = time.perf_counter()
    with threadpool_limits(1):
        model = cls(random_state=seed).fit(holdout.X_train[holdout.features], holdout.y_train)
        X = holdout.X_test
        predictions = positive_scores(model, X) if holdout.classification else model.predict(X)
    wall = time.perf_counter() - started
    return Outcome(task.key, seed, "hgb", metrics=score(holdout, predictions), wall=wall, total=wall,
                   chosen="HistGradientBoosting (defaults)")


def write_baseline_data(folder: Path, task: Task, holdout: Holdout) -> tuple[Path, Path]:
    """The training rows (features, the group column if any, the target) and the test features."""
    train_path, test_path = folder / "train.parquet", folder / "test.parquet"
    if not train_path.exists():
        columns = holdout.features + ([holdout.spec.column] if holdout.spec.column else [])
        holdout.X_train[columns].assign(**{task.target: holdout.y_train}).to_parquet(train_path)
        holdout.X_test.to_parquet(test_path)
    return train_path, test_path


def automl_baseline(system: str, task: Task, seed: int, holdout: Holdout, folder: Path, opts: Options) -> Outcome:
    from mcp_server.threads import thread_env

    out = Outcome(task.key, seed, system)
    train, test = write_baseline_data(folder, task, holdout)
    workdir = folder / system
    workdir.mkdir(exist_ok=True)
    job = {"system": system, "train": str(train), "test": str(test), "target": task.target,
           "task": "classification" if holdout.classification else "regression", "budget": opts.budget,
           "seed": seed, "group_column": holdout.spec.column,
           "use_groups": system == "flaml" and holdout.spec.kind == "group", "workdir": str(workdir)}
    job_path = workdir / "job.json"
    job_path.write_text(json.dumps(job))
    env = {**os.environ, **thread_env(1)}
    started = time.perf_counter()
    try:
        with open(workdir / "log.txt", "wb") as log:
            subprocess.run([str(opts.automl_python), str(RUNNER), str(job_path)], env=env, cwd=workdir, stdout=log,
                           stderr=subprocess.STDOUT, timeout=4 * opts.budget + 300, check=True)
        answer = json.loads(job_path.with_suffix(".out.json").read_text())
    except (subprocess.SubprocessError, OSError, ValueError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"[:500]
        out.total = out.wall = time.perf_counter() - started
        return out
    out.total = time.perf_counter() - started
    if answer.get("error"):
        out.error, out.wall = answer["error"][:500], answer.get("process_seconds", out.total)
        return out
    out.wall, out.chosen, out.detail = answer["fit_seconds"], answer["chosen"], answer["detail"]
    out.detail["versions"] = answer.get("versions", {})
    out.metrics = score(holdout, answer["predictions"])
    return out


# --- the run ------------------------------------------------------------------------------------


def _settings(ctx: BenchContext, opts: Options, data: Path) -> Any:
    from mcp_server.settings import Settings

    return Settings(data_home=ctx.scratch("automl-home"), data_dirs=[data, Path(ctx.data_dir)], cores=1,
                    default_time_budget_seconds=opts.budget)


async def _measure(ctx: BenchContext, opts: Options, tasks: list[Task], have_baselines: bool,
                   echo: Callable[[str], None]) -> list[Outcome]:
    import anyio
    from mcp import Client

    from mcp_server.mlflow_integration import ensure_sqlite_migrated
    from tools.server import build_server

    data = ctx.scratch("automl-data")
    prepare_data(data, Path(ctx.data_dir), tasks)
    settings = _settings(ctx, opts, data)
    ensure_sqlite_migrated(str(settings.tracking_uri))
    server = build_server(settings)
    outcomes: list[Outcome] = []
    try:
        async with Client(server) as client:
            # Warm-up: the imports and worker start a running server has behind it.
            await _job_result(client, "tune_hyperparameters", {"dataset": "iris", "max_trials": 2, "cv_folds": 2})
            for task in tasks:
                for seed in opts.seeds:
                    holdout = await anyio.to_thread.run_sync(lambda: holdout_for(server.state, task, seed))
                    folder = ctx.scratch(f"automl-{task.key}-{seed}")
                    turn = seed % len(SYSTEMS)  # rotate the order: drift in the load hits every system
                    for system in SYSTEMS[turn:] + SYSTEMS[:turn]:
                        if system == "default_call":
                            outcome = await default_call(client, server.state, task, seed, holdout)
                        elif system == "hgb":
                            outcome = await anyio.to_thread.run_sync(lambda: untuned_hgb(task, seed, holdout))
                        elif have_baselines:
                            outcome = await anyio.to_thread.run_sync(
                                lambda: automl_baseline(system, task, seed, holdout, folder, opts))
                        else:
                            continue
                        echo(f"   {task.key} seed {seed} {system}: {_metric_text(outcome)} in {outcome.wall:.1f} s "
                             f"({outcome.chosen or outcome.error}; load {load_average()})")
                        outcomes.append(outcome)
    finally:
        server.state.close()
    return outcomes


def _metric_text(outcome: Outcome) -> str:
    if outcome.error:
        return "failed"
    return ", ".join(f"{k} {v:.4f}" for k, v in outcome.metrics.items())


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(ctx: BenchContext, *, echo: Callable[[str], None] = _progress) -> Section:
    import anyio

    opts = options(ctx)
    section = Section(NAME, TITLE)
    catalog = _tasks()
    tasks, absent = [], []
    for key in opts.tasks:
        task = catalog[key]
        (tasks if task.needs is None or (Path(ctx.data_dir) / task.needs).is_file() else absent).append(task)
    have_baselines = opts.automl_python.is_file()
    load_start = load_average()
    outcomes = anyio.run(_measure, ctx, opts, tasks, have_baselines, echo) if tasks else []
    ctx.remember((NAME, "outcomes"), outcomes)
    _report(section, opts, tasks, absent, outcomes, have_baselines, (load_start, load_average()))
    return section


# --- the report ---------------------------------------------------------------------------------


def _primary(task: Task, outcomes: list[Outcome]) -> str:
    for o in outcomes:
        if o.task == task.key and o.metrics:
            return "roc_auc" if "roc_auc" in o.metrics else "rmse"
    return "rmse" if task.target in ("pts", "predator_total") else "roc_auc"


def _fmt(value: float, primary: str) -> str:
    if not math.isfinite(value):
        return "failed"
    return f"{-value if primary == 'rmse' else value:.4f}"


def _report(section: Section, opts: Options, tasks: list[Task], absent: list[Task], outcomes: list[Outcome],
            have_baselines: bool, loads: tuple[str, str]) -> None:
    versions = next((o.detail.get("versions") for o in outcomes if o.detail.get("versions")), {})
    section.add(
        f"Budget {opts.budget:g} s of wall time per system and call, seeds {', '.join(map(str, opts.seeds))} "
        "(a seed is the holdout's seed and each system's own; the default call draws its search seed), every "
        "system single-threaded and run alone, in turn. Same rows and the product's own holdout for every "
        "system, scored by the same code. Load average (1/5/15 min) at start "
        f"{loads[0]}, at end {loads[1]}.",
        "",
        "- Default call: `tune_hyperparameters` through the MCP tool with data set, target, features/drop and "
        "split only (server: `cores=1`, `default_time_budget_seconds` = the budget), then "
        "`run_pipeline(from_search=…)`; its wall time is the search call's, call to result.",
        "- FLAML: `AutoML(time_budget, metric, n_jobs=1, seed)`, the group column as its group k-fold on group "
        "tasks. AutoGluon: `fit(time_limit, presets='medium_quality', excluded_model_types=['NN_TORCH', "
        "'FASTAI'], num_cpus=1)`. Their wall time is the fit's; total adds the process start.",
        "- Baselines: " + (", ".join(f"{k} {v}" for k, v in versions.items()) if versions else
                           "**not run**: no `.venv-automl` (create it with `make bench-automl`)."),
        "- Run alone: `make bench-automl` (`ARGS=\"--seeds 2 --tasks rookies --budget 20\"` for a short run).",
    )
    for task in absent:
        section.add(f"- Skipped {task.label}: `{task.needs}` not found in the data folder.")
    by = {(o.task, o.seed, o.system): o for o in outcomes}
    judged = opts.judged and have_baselines
    beats_autogluon: list[bool] = []
    walls: list[float] = []
    for task in tasks:
        runs = {s: [by[(task.key, seed, s)] for seed in opts.seeds if (task.key, seed, s) in by] for s in SYSTEMS}
        if not runs["default_call"]:
            continue
        primary = _primary(task, outcomes)
        medians = {s: median([o.goodness(primary) for o in runs[s]]) for s in SYSTEMS if runs[s]}
        _task_tables(section, task, primary, runs, medians, opts, by)
        walls += [o.wall for o in runs["default_call"]]
        ours, metric = medians["default_call"], METRIC_NAMES[primary]
        for other in ("flaml", "autogluon", "hgb"):
            measure = f"{task.label}: median holdout {metric}, default call vs {LABELS[other]}"
            if other not in medians:
                if other in BASELINES:
                    section.rows.append(Row(NAME, measure, _fmt(ours, primary), "not run", "", "", None))
                continue
            theirs = medians[other]
            if other == "autogluon":
                beats_autogluon.append(ours >= theirs)
            target = "≥ FLAML's median" if other == "flaml" else ""
            section.rows.append(Row(NAME, f"{measure} ({len(runs['default_call'])} seeds)", _fmt(ours, primary),
                                    _fmt(theirs, primary), _diff(ours, theirs, primary), target,
                                    (ours >= theirs) if target and judged else None))
    if beats_autogluon:
        complete = len(beats_autogluon) == len(TASK_KEYS)
        section.rows.append(Row(
            NAME, "default call ≥ AutoGluon medium_quality's median, tasks", f"{sum(beats_autogluon)} of "
            f"{len(beats_autogluon)}", "", "", "≥ 2 of 3",
            (sum(beats_autogluon) >= 2) if complete and judged else None))
    if walls:
        slowest, limit = max(walls), opts.budget * WALL_SLACK
        section.rows.append(Row(
            NAME, f"default call wall time (tune_hyperparameters, call to result), slowest of {len(walls)}",
            f"{slowest:.1f} s", f"budget {opts.budget:g} s", f"{slowest / opts.budget:.3f}×", f"≤ {limit:g} s",
            (slowest <= limit) if opts.judged else None))


def _task_tables(section: Section, task: Task, primary: str, runs: dict[str, list[Outcome]],
                 medians: dict[str, float], opts: Options, by: dict[tuple, Outcome]) -> None:
    """The task's table of systems, then its per-seed pairs with the default call's families."""
    metric, regression = METRIC_NAMES[primary], primary == "rmse"
    section.add("", f"**{task.label}** (`{task.dataset}`, target `{task.target}`; {metric}, "
                f"{'lower' if regression else 'higher'} is better)", "",
                f"| system | median {metric} |" + (" median R² |" if regression else "")
                + " min – max | median wall (budgeted part) | median total | what it chose, per seed |",
                "|---|---|" + ("---|" if regression else "") + "---|---|---|---|")
    for system, outcomes in runs.items():
        if not outcomes:
            continue
        values = sorted(o.metrics[primary] for o in outcomes if not o.error)
        failed = sum(bool(o.error) for o in outcomes)
        spread = f"{values[0]:.4f} – {values[-1]:.4f}" if values else "—"
        spread += f" ({failed} failed)" if failed else ""
        r2 = f" {_fmt(median([o.metrics.get('r2', -math.inf) for o in outcomes]), 'r2')} |" if regression else ""
        section.add(f"| {LABELS[system]} | {_fmt(medians[system], primary)} |{r2} {spread} | "
                    f"{median([o.wall for o in outcomes]):.1f} s | {median([o.total for o in outcomes]):.1f} s | "
                    + "; ".join(_chosen(o) for o in outcomes) + " |")
    section.add("", "| seed | default call | − FLAML | − AutoGluon | − untuned HGB | run_pipeline's own test "
                    "score | default call wall: search / search + pipeline | families tried (trials, best CV "
                    "score) | ensemble weights |",
                "|---|---|---|---|---|---|---|---|---|")
    for seed in opts.seeds:
        mine = by.get((task.key, seed, "default_call"))
        if mine is None:
            continue
        diffs = [_diff(mine.goodness(primary), by[(task.key, seed, other)].goodness(primary), primary)
                 if (task.key, seed, other) in by else "—" for other in ("flaml", "autogluon", "hgb")]
        families = ", ".join(f"{n} ({t}, {b:.4f})" if b is not None else f"{n} ({t})"
                             for n, t, b in mine.detail.get("families", []))
        own = (mine.detail.get("pipeline_test") or {}).get(f"test_{primary}")
        section.add(f"| {seed} | {_fmt(mine.goodness(primary), primary)} | " + " | ".join(diffs)
                    + f" | {'—' if own is None else f'{own:.4f}'} | {mine.wall:.1f} s / {mine.total:.1f} s | "
                    f"{families or '—'} | "
                    f"{_weights(mine.detail.get('ensemble')) or '—'} |")
    section.add("", f"Differences: ours − theirs in {metric} ({'negative' if regression else 'positive'}: the "
                "default call is better). run_pipeline's own score is on its holdout less the rows that repeat a "
                "training row (`drop_duplicates`); the judged score is on the full holdout every system shares.")
    for outcomes in runs.values():
        for o in outcomes:
            if o.error:
                section.add(f"- {LABELS[o.system]}, seed {o.seed}: **failed**: {o.error}")


def _diff(ours: float, theirs: float, primary: str) -> str:
    if not (math.isfinite(ours) and math.isfinite(theirs)):
        return "n/a"
    # In the task's own units: ours − theirs (AUC: positive is better; RMSE: negative is better).
    return f"{(ours - theirs) if primary == 'roc_auc' else (theirs - ours):+.4f}"


def _chosen(outcome: Outcome) -> str:
    if outcome.error:
        return f"failed ({outcome.error[:80]})"
    if outcome.system == "autogluon":
        weights = _weights(outcome.detail.get("ensemble_weights"))
        return f"{outcome.chosen}" + (f" [{weights}]" if weights else "")
    return outcome.chosen


def _weights(weights: Any) -> str:
    if isinstance(weights, dict) and "members" in weights:  # the tuning result's ensemble
        weights = {f"{m['estimator']}#{m.get('trial')}": m["weight"] for m in weights["members"]}
    if isinstance(weights, dict):
        return ", ".join(f"{k} {float(v):.2f}" for k, v in sorted(weights.items(), key=lambda kv: -float(kv[1])))
    if isinstance(weights, list):
        return ", ".join(map(str, weights))
    return "" if weights is None else str(weights)


# --- command line -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.automl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    full = Options.for_config("full")
    parser.add_argument("--seeds", type=int, default=len(full.seeds), help="paired seeds 0..N-1 (default 5)")
    parser.add_argument("--budget", type=float, default=full.budget, help="wall seconds per system (default 60)")
    parser.add_argument("--tasks", default=",".join(TASK_KEYS), help=f"comma-separated, of {', '.join(TASK_KEYS)}")
    parser.add_argument("--automl-python", type=Path, default=AUTOML_PYTHON,
                        help="the python of the venv holding FLAML and AutoGluon (make bench-automl)")
    parser.add_argument("--data-dir", type=Path, default=None, help="folder holding the NBA CSVs")
    parser.add_argument("--output", type=Path, default=None, help="also write the markdown report here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import datetime as dt
    import logging

    from benchmarks._common import NBA_DATA, BenchConfig, quiet_warnings
    from benchmarks.report import render
    from benchmarks.run import run_benchmarks

    args = parse_args(argv)
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    unknown = sorted(set(tasks) - set(TASK_KEYS))
    if unknown or not tasks or args.seeds < 1 or args.budget <= 0:
        print(f"--tasks takes {', '.join(TASK_KEYS)}; --seeds ≥ 1; --budget > 0 (got {args})", file=sys.stderr)
        return 2
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_warnings()
    config = BenchConfig.full()
    ctx = BenchContext(config, data_dir=args.data_dir or NBA_DATA)
    ctx.remember(OPTIONS_KEY, Options(seeds=tuple(range(args.seeds)), budget=args.budget, tasks=tasks,
                                      automl_python=args.automl_python))
    if not args.automl_python.is_file():
        print(f"{args.automl_python} not found: FLAML and AutoGluon will not run (make bench-automl creates it)")
    started, clock, load_start = dt.datetime.now(dt.timezone.utc), time.perf_counter(), load_average()
    try:
        sections = run_benchmarks(ctx, [NAME])
    finally:
        ctx.close()
    elapsed = time.perf_counter() - clock
    if args.output is not None:
        command = "python -m benchmarks.automl " + " ".join(argv if argv is not None else sys.argv[1:])
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(render(sections, config=replace(config, name=f"automl: {args.seeds} seeds, "
                                                                f"{args.budget:g} s"),
                                      started=started, elapsed=elapsed, loads=(load_start, load_average()),
                                      command=command.strip()))
        raw = args.output.with_suffix(".json")
        raw.write_text(json.dumps([asdict(o) for o in ctx.peek((NAME, "outcomes"), [])], indent=1, default=str))
        print(f"report written to {args.output}, every outcome to {raw}")
    missed = sum(row.passed is False for s in sections for row in s.rows)
    print(f"done in {elapsed / 60:.1f} min: {missed} target(s) missed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
