"""``nba-mcp demo``: play an agent's session against a spawned server, as a real MCP client would.

The server runs as a subprocess over stdio on the embedded store (sqlite under data_home). By
default the session works on the built-in NBA data set ``nba:raptor`` (FiveThirtyEight RAPTOR,
CC BY 4.0) and predicts a player-season's PREDATOR rating (FiveThirtyEight's forward-looking
impact rating) from his box-score impact, minutes, possessions and pace:

list → describe → validate (the server names the player columns and the additive leaks) → a naive
call, stopped by the data checks → the same call forced to train anyway, flagged and not promoted →
a baseline forest with a group-by-player split, champion → the default tuning call (the server picks
the model within its budget) → ``run_pipeline(from_search=…)`` trains the winner on the holdout the
search never saw, champion only if better beyond that holdout's noise → predict for real
player-seasons → open the MLflow UI.

Any other data set (``--dataset``: a catalog name, ``sklearn:iris``, or a CSV path) follows the same
script, driven by what the server reports: it drops ``suggested_drop`` and splits by the first
entity column it names.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

from mcp_server.logged_values import logged_score

EXPERIMENT = "nba-mcp-demo"
DEFAULT_DATASET = "nba:raptor"
DEFAULT_TARGET = "predator_total"
# For nba:raptor: box-score impact, playing time and pace. Not the on/off, RAPTOR, WAR or PREDATOR
# columns: they share the target's inputs (PREDATOR blends box-score and on/off information).
RAPTOR_FEATURES = ["season", "poss", "mp", "raptor_box_offense", "raptor_box_defense", "pace_impact"]
RAPTOR_EXAMPLES = [("Nikola Jokic", 2022), ("Stephen Curry", 2016), ("Rudy Gobert", 2019)]


class DemoError(RuntimeError):
    pass


def say(text: str = "") -> None:
    print(text, flush=True)


def show_call(tool: str, args: dict[str, Any]) -> None:
    shown = json.dumps(args, default=str)
    say(f"\n→ {tool}({shown if len(shown) < 300 else shown[:297] + '...'})")


async def call(client: Client, tool: str, args: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    show_call(tool, args)
    result = await client.call_tool(tool, args, **kwargs)
    if result.is_error:
        raise DemoError(error_message(result))
    return json.loads(result.content[0].text)  # every tool answers one JSON text


def error_message(result: Any) -> str:
    """The message of an error result (one JSON text: {"error": {"code", "message", ...}})."""
    return json.loads(result.content[0].text)["error"]["message"]


async def job_result(client: Client, job: dict[str, Any], on_progress: Any = None) -> dict[str, Any]:
    while not job["done"]:
        say(f"  job {job['job_id']} still {job['state']}; polling get_job")
        job = await call(client, "get_job", {"job_id": job["job_id"], "wait_seconds": 40}, progress_callback=on_progress)
    return job["result"]


def resolve_dataset(dataset: str) -> tuple[str, Path | None]:
    """A catalog name, plus the folder to serve when ``dataset`` is a path to a file."""
    path = Path(dataset).expanduser()
    if path.suffix.lower() in (".csv", ".parquet") and path.is_file():
        return path.stem, path.resolve().parent
    return dataset, None


def server_parameters(data_home: Path, extra_data_dir: Path | None, budget: float | None = None) -> StdioServerParameters:
    from mcp_server.settings import Settings

    # The server's stderr is shown with ours: keep it to warnings so the session reads cleanly.
    env = {"NBA_MCP_DATA_HOME": str(data_home), "PYTHONUNBUFFERED": "1", "NBA_MCP_LOG_LEVEL": "WARNING"}
    if budget is not None:  # the server's default budget: the demo's call stays the default call
        env["NBA_MCP_DEFAULT_TIME_BUDGET_SECONDS"] = str(budget)
    if extra_data_dir is not None:
        dirs = [str(d) for d in Settings().data_dirs] + [str(extra_data_dir)]
        env["NBA_MCP_DATA_DIRS"] = json.dumps(dirs)
    return StdioServerParameters(command=sys.executable, args=["-m", "tools.cli", "serve"], env=env)


def load_frame(dataset: str, data_dir: Path | None):
    """The data set as the caller holds it (to pick rows to predict), read on the client side."""
    import pandas as pd

    from mcp_server.datasets import DatasetCatalog
    from mcp_server.settings import Settings

    if data_dir is not None:
        return next(pd.read_csv(p) for p in data_dir.glob(f"{dataset}.csv"))
    return DatasetCatalog(Settings()).load(dataset)


def example_rows(dataset: str, frame, n: int = 3):
    """Real rows to predict: well-known player-seasons for nba:raptor, else a seeded sample."""
    if dataset == DEFAULT_DATASET:
        picked = [frame[(frame.player_name == name) & (frame.season == season)] for name, season in RAPTOR_EXAMPLES]
        import pandas as pd

        rows = pd.concat(picked)
        if len(rows) == len(RAPTOR_EXAMPLES):
            return rows
    return frame.sample(n, random_state=0)


def describe_run(label: str, result: dict[str, Any]) -> None:
    baseline = result.get("baseline") or {}
    say(f"  {label}: run {result['run_id']}, v{result['model_version']}: {short(result['metrics'])}; trivial model "
        f"{baseline.get('score', float('nan')):.4f}; warnings: {[w['code'] for w in result['warnings']] or 'none'}; "
        f"test rows {result['split']['n_test']} (digest {result['split']['test_digest']})")


def short(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))


async def session(params: StdioServerParameters, dataset: str, data_dir: Path | None, target: str | None) -> None:
    async with Client(params) as client:
        tools = await client.list_tools()
        say(f"Connected over stdio: {len(tools.tools)} tools ({', '.join(t.name for t in tools.tools)})")

        async def on_progress(current: float, total: float | None, message: str | None) -> None:
            say(f"    … {message}")

        # 1. What data is there, what is it, what is wrong with it.
        listed = await call(client, "list_datasets", {})
        say("  data sets: " + ", ".join(d["name"] for d in listed["datasets"]))
        described = await call(client, "describe_dataset", {"dataset": dataset, **({"target": target} if target else {})})
        target_info = described.get("target") or {}
        target = target or target_info.get("column")
        if not target:
            raise DemoError(f"name the target column of {dataset!r} with --target")
        say(f"  {described['n_rows']} rows × {described['n_columns']} columns; target {target!r}: {target_info.get('task')}")
        if described.get("attribution"):
            say(f"  {described['attribution']}")

        report = await call(client, "validate_data", {"request": {"dataset": dataset, "target": target}})
        say(f"  passed={report['passed']} issues={report['summary']}")
        for issue in report["issues"]:
            if issue["rule"] in ("identifier_column", "entity_column", "datetime_column", "derived_column",
                                 "target_copy", "target_leak", "pair_leak", "linear_leak"):
                say(f"   - [{issue['severity']}] {issue['message']}")
        entities = [i["column"] for i in report["issues"] if i["rule"] == "entity_column"]
        groups = [c for c in entities if c.endswith("_id")] or entities
        split = {"kind": "group", "column": groups[0]} if groups else {"kind": "kfold"}
        features = RAPTOR_FEATURES if dataset == DEFAULT_DATASET and target == DEFAULT_TARGET else None
        drop = [c for c in report["suggested_drop"] if c != split.get("column") and (features is None or c in features)]
        model_name = f"{dataset.replace(':', '-').replace('/', '_')}-{target}"[:100]
        pipeline = {"dataset": dataset, "target": target, "estimator": "random_forest", "model_name": model_name,
                    "experiment_name": EXPERIMENT, "cv_folds": 3, "seed": 42}

        # 2. The call an agent that knows nothing would make: every column, a random split.
        say("\nA naive call: every other column as a feature, a random split.")
        naive = await client.call_tool("run_pipeline", {"request": pipeline})
        if naive.is_error:  # stopped by the leak screen: its job FAILED, with the fix
            say(f"  stopped: {error_message(naive)}")
            forced = await job_result(client, await call(client, "run_pipeline", {"request": {
                **pipeline, "leak_check": "warn"}}))
            say(f"  trained anyway: {short({k: v for k, v in forced['metrics'].items() if not k.startswith('cv_')})}")
            say(f"  flagged: {', '.join(dict.fromkeys(w['code'] for w in forced['warnings']))}; "
                f"v{forced['model_version']} registered, champion: {forced['promotion']['promoted']} "
                f"({forced['promotion']['reason'][:120]}…)")
        else:
            naive = await job_result(client, json.loads(naive.content[0].text))
            say(f"  status {naive['status']}, warnings: {[w['code'] for w in naive['warnings']]}")

        # 3. The honest call: the columns the server named left out, a split by entity, and nothing
        # else: the server picks the estimator and its hyperparameters within its default budget.
        chosen = {"features": features} if features else {"drop": drop or None}
        chosen = {k: v for k, v in chosen.items() if v}
        say(f"\nThe corrected setup: {json.dumps(chosen)}; split {json.dumps(split)}")
        experiment = await call(client, "start_experiment", {"request": {"name": EXPERIMENT}})
        say(f"  experiment {experiment['name']!r} (id {experiment['experiment_id']}, "
            f"{'created' if experiment['created'] else 'reused'})")
        baseline = await job_result(client, await call(client, "run_pipeline", {"request": {
            **pipeline, **chosen, "split": split}}, progress_callback=on_progress))
        if baseline["status"] != "COMPLETED":
            raise DemoError(f"pipeline baseline {baseline['status']}: {baseline['error']}")
        describe_run("baseline (a random forest with its defaults)", baseline)

        say("\nThe default call: data set, target, columns and split; the server picks the model.")
        tune_request = {"dataset": dataset, "target": target, **chosen, "split": split, "experiment_name": EXPERIMENT}
        tuned = await job_result(client, await call(client, "tune_hyperparameters", {"request": tune_request},
                                                    progress_callback=on_progress), on_progress)
        score_name, sign = logged_score(tuned["scoring"])  # "rmse 1.73", as MLflow shows it, not "neg_… -1.73"
        families = ", ".join(f"{f['name']} {sign * f['best_score']:.4f} ({f['n_trials']} trials)"
                             for f in tuned.get("families", []) if f.get("best_score") is not None)
        say(f"  winner {tuned['estimator']}: best {score_name} {sign * tuned['best_score']:.4f} ({tuned['cv']}) after "
            f"{tuned['n_trials']} trials in {tuned['elapsed_seconds']:.0f} s; families: {families or 'one'}; holdout of "
            f"{tuned['split']['n_test']} rows kept out (digest {tuned['split']['test_digest']})")

        found = await job_result(client, await call(client, "run_pipeline", {"request": {
            "from_search": tuned["parent_run_id"], "model_name": model_name, "experiment_name": EXPERIMENT}}, progress_callback=on_progress))
        if found["status"] != "COMPLETED":
            raise DemoError(f"pipeline of the search's winner {found['status']}: {found['error']}")
        describe_run(f"the search's winner ({tuned['estimator']}, from_search)", found)
        comparison = await call(client, "compare_runs", {"run_ids": [baseline["run_id"], found["run_id"]]})
        metric = f"test_{found['primary_metric']}"
        say(f"  {metric}: winner − baseline = {comparison['metrics'][metric]['diff'][found['run_id']]:+.4f} on the "
            f"same {found['split']['n_test']} rows; champion: v{found['promotion']['version']} "
            f"{'promoted' if found['promotion']['promoted'] else 'not promoted'} ({found['promotion']['reason']})")

        # 4. Use it.
        frame = load_frame(dataset, data_dir)
        rows = example_rows(dataset, frame)
        inputs = rows[features] if features else rows.drop(columns=[target, *drop, split.get("column")] if split.get("column") else [target, *drop])
        predicted = await call(client, "predict", {"model_name": model_name, "rows": json.loads(inputs.to_json(orient="records")),
                                                   "probabilities": target_info.get("task") == "classification"})
        for (_, row), value in zip(rows.iterrows(), predicted["predictions"], strict=True):
            who = f"{row['player_name']} {row['season']}" if "player_name" in row else f"row {row.name}"
            say(f"  {who}: predicted {target} {value if isinstance(value, str) else round(value, 3)}, actual {row[target]}")
        for warning in predicted.get("row_warnings", []):
            say(f"   - row {warning['row']}: {warning['message']}")

        health = await call(client, "server_health", {})
        say(f"  server {health['version']} status={health['status']} tools called={sum(t['calls'] for t in health['tools'].values())}")


def run_demo(*, dataset: str, target: str | None, budget: float | None, data_home: str | None) -> int:
    from mcp_server.settings import Settings

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    home = Path(data_home).expanduser().resolve() if data_home else Settings().data_home
    name, data_dir = resolve_dataset(dataset)
    if name == DEFAULT_DATASET and target is None:
        target = DEFAULT_TARGET
    say(f"nba-mcp demo on {name!r}; MLflow store: sqlite:///{home / 'mlflow.db'}")
    try:
        anyio.run(session, server_parameters(home, data_dir, budget), name, data_dir, target)
    except DemoError as exc:
        say(f"\nDemo stopped: {exc}")
        return 1
    mlflow = Path(sys.executable).with_name("mlflow")
    say("\nOpen the MLflow UI on the same store:")
    say(f"  {mlflow if mlflow.exists() else 'mlflow'} ui --backend-store-uri sqlite:///{home / 'mlflow.db'} --port 5000")
    return 0
