"""``nba-mcp demo``: play an agent's session against a spawned server, as a real MCP client would.

The server runs as a subprocess over stdio on the embedded store (sqlite under data_home). The
session: list/describe/validate data → start an experiment → tune (progress shown) → train a
baseline and a tuned model → compare them → promote the winner → predict → how to open the UI.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

EXPERIMENT = "nba-mcp-demo"
DEMO_SPACE = {
    "n_estimators": {"type": "int", "low": 50, "high": 200, "log": True},
    "max_depth": {"type": "categorical", "choices": [None, 4, 8, 16]},
    "min_samples_leaf": {"type": "int", "low": 1, "high": 10},
    "max_features": {"type": "categorical", "choices": ["sqrt", "log2"]},
}


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
        raise DemoError(result.content[0].text)
    return result.structured_content or {}


def resolve_dataset(dataset: str) -> tuple[str, Path | None]:
    """A catalog name, plus the folder to serve when ``dataset`` is a path to a file."""
    path = Path(dataset).expanduser()
    if path.suffix.lower() in (".csv", ".parquet") and path.is_file():
        return path.stem, path.resolve().parent
    return dataset, None


def server_parameters(data_home: Path, extra_data_dir: Path | None) -> StdioServerParameters:
    from mcp_server.settings import Settings

    # The server's stderr is shown with ours: keep it to warnings so the session reads cleanly.
    env = {"NBA_MCP_DATA_HOME": str(data_home), "PYTHONUNBUFFERED": "1", "NBA_MCP_LOG_LEVEL": "WARNING"}
    if extra_data_dir is not None:
        dirs = [str(d) for d in Settings().data_dirs] + [str(extra_data_dir)]
        env["NBA_MCP_DATA_DIRS"] = json.dumps(dirs)
    return StdioServerParameters(command=sys.executable, args=["-m", "tools.cli", "serve"], env=env)


def identifier_columns(description: dict[str, Any], target: str | None) -> list[str]:
    """Text columns with a value per row or so (player names): labels, not features."""
    rows = description["n_rows"]
    return [
        c["name"] for c in description["columns"]
        if c["name"] != target and c["dtype"] in ("object", "str", "string") and c["n_unique"] > rows / 2
    ]


def sample_rows(dataset: str, data_dir: Path | None, target: str, drop: list[str], n: int = 3) -> list[dict]:
    """A few feature rows for predict, read on the client side as an agent's caller would."""
    import pandas as pd

    if data_dir is not None:
        frame = next(pd.read_csv(p) for p in data_dir.glob(f"{dataset}.csv"))
    elif dataset.removeprefix("sklearn:") in ("iris", "breast_cancer", "wine", "diabetes"):
        import sklearn.datasets

        loader = getattr(sklearn.datasets, f"load_{dataset.removeprefix('sklearn:')}")
        frame = loader(as_frame=True).frame
        frame = frame.rename(columns={frame.columns[-1]: "target"})
    else:
        from mcp_server.datasets import DatasetCatalog
        from mcp_server.settings import Settings

        frame = DatasetCatalog(Settings()).load(dataset)
    rows = frame.drop(columns=[target, *drop]).sample(n, random_state=0)
    return json.loads(rows.to_json(orient="records"))


async def session(params: StdioServerParameters, dataset: str, data_dir: Path | None, target: str | None, trials: int) -> None:
    async with Client(params) as client:
        tools = await client.list_tools()
        say(f"Connected over stdio: {len(tools.tools)} tools ({', '.join(t.name for t in tools.tools)})")

        listed = await call(client, "list_datasets", {})
        say("  data sets: " + ", ".join(d["name"] for d in listed["datasets"]))

        described = await call(client, "describe_dataset", {"name": dataset, **({"target": target} if target else {})})
        target_info = described.get("target") or {}
        target = target or target_info.get("column")
        if not target:
            raise DemoError(f"name the target column of {dataset!r} with --target")
        say(f"  {described['n_rows']} rows × {described['n_columns']} columns; target {target!r}: "
            f"{target_info.get('task')} {target_info.get('class_counts') or ''}")
        drop = identifier_columns(described, target)
        if drop:
            say(f"  leaving out identifier-like columns: {', '.join(drop)}")

        report = await call(client, "validate_data", {"request": {"dataset": dataset, "target": target}})
        say(f"  passed={report['passed']} issues={report['summary']}")
        for issue in report["issues"][:3]:
            say(f"   - [{issue['severity']}] {issue['message']}")
        if not report["passed"]:
            raise DemoError("validation failed; fix the data before training")

        experiment = await call(client, "start_experiment", {"request": {"name": EXPERIMENT}})
        say(f"  experiment {experiment['name']!r} (id {experiment['experiment_id']}, "
            f"{'created' if experiment['created'] else 'reused'})")

        async def on_progress(current: float, total: float | None, message: str | None) -> None:
            say(f"    … {message}")

        tune_request = {"dataset": dataset, "target": target, "drop": drop or None, "estimator": "random_forest",
                        "strategy": "random", "space": DEMO_SPACE, "cv_folds": 3, "max_trials": trials,
                        "seed": 42, "experiment_name": EXPERIMENT}
        job = await call(client, "tune_hyperparameters", {"request": {k: v for k, v in tune_request.items() if v is not None}},
                         progress_callback=on_progress)
        while not job["done"]:
            say(f"  job {job['job_id']} still {job['state']}; polling get_job")
            job = await call(client, "get_job", {"job_id": job["job_id"], "wait_seconds": 30}, progress_callback=on_progress)
        tuned = job["result"]
        say(f"  best {tuned['scoring']} {tuned['best_score']:.4f} after {tuned['n_trials']} trials "
            f"with {tuned['best_params']} (parent run {tuned['parent_run_id']})")

        model_name = f"{dataset.removeprefix('sklearn:').replace('/', '_')}-demo"
        base = {"dataset": dataset, "target": target, "drop": drop, "estimator": "random_forest",
                "model_name": model_name, "promote": False, "experiment_name": EXPERIMENT, "seed": 42}
        runs = {}
        for label, params in (("baseline", {}), ("tuned", tuned["best_params"])):
            job = await call(client, "run_pipeline", {"request": {**base, "params": params, "run_name": f"{model_name}-{label}"}},
                             progress_callback=on_progress)
            while not job["done"]:
                job = await call(client, "get_job", {"job_id": job["job_id"], "wait_seconds": 30})
            result = job["result"]
            if result["status"] != "COMPLETED":
                raise DemoError(f"pipeline {label} {result['status']}: {result['error']}")
            runs[label] = result
            shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(result["metrics"].items()))
            say(f"  {label}: run {result['run_id']}, {model_name} v{result['model_version']}: {shown}")

        comparison = await call(client, "compare_runs", {"run_ids": [runs["baseline"]["run_id"], runs["tuned"]["run_id"]]})
        metric = runs["tuned"]["primary_metric"]
        line = comparison["metrics"][metric]
        say(f"  {metric}: tuned − baseline = {line['diff'][runs['tuned']['run_id']]:+.4f}; "
            f"differing params: {', '.join(comparison['params_differ']) or 'none'}")
        winner = "tuned" if line["best_run"] == runs["tuned"]["run_id"] else "baseline"

        decision = await call(client, "promote_model", {"request": {"model_name": model_name, "version": runs[winner]["model_version"]}})
        say(f"  {winner} v{decision['version']} → champion: {decision['promoted']} ({decision['reason']})")

        rows = sample_rows(dataset, data_dir, target, drop)
        predicted = await call(client, "predict", {"model_name": model_name, "rows": rows, "probabilities": target_info.get("task") == "classification"})
        say(f"  predictions for {len(rows)} rows: {predicted['predictions']}")

        health = await call(client, "server_health", {})
        say(f"  server {health['version']} status={health['status']} tools called={sum(t['calls'] for t in health['tools'].values())}")


def run_demo(*, dataset: str, target: str | None, trials: int, data_home: str | None) -> int:
    from mcp_server.settings import Settings

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    home = Path(data_home).expanduser().resolve() if data_home else Settings().data_home
    name, data_dir = resolve_dataset(dataset)
    say(f"nba-mcp demo on {name!r}; MLflow store: sqlite:///{home / 'mlflow.db'}")
    try:
        anyio.run(session, server_parameters(home, data_dir), name, data_dir, target, trials)
    except DemoError as exc:
        say(f"\nDemo stopped: {exc}")
        return 1
    mlflow = Path(sys.executable).with_name("mlflow")
    say("\nOpen the MLflow UI on the same store:")
    say(f"  {mlflow if mlflow.exists() else 'mlflow'} ui --backend-store-uri sqlite:///{home / 'mlflow.db'} --port 5000")
    return 0
