"""Screenshots of the MLflow UI after ``nba-mcp demo``, for docs/mlflow-ui.md (not part of CI).

    pip install playwright            # the Python package only; no browser download is needed
    apt-get install chromium          # or any Chromium / Chrome: --chromium PATH
    python scripts/mlflow_ui_screenshots.py --data-home /tmp/demo-home --out docs/images/mlflow-ui

If ``--data-home`` holds no store yet, the demo is run there first (``nba-mcp demo --data-home``).
The script serves that store with ``mlflow server`` on a free loopback port, finds the runs and the
registered model through ``MlflowClient``, and drives headless Chromium through Playwright.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "nba-mcp-demo"
MODEL_NAME = "nba-raptor-predator_total"
VIEWPORT = {"width": 1800, "height": 1100}
# The UI's own first-visit state: no assistant panel, no pop-ups (keys as MLflow 3.17 stores them).
QUIET_UI = """
localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');
localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_demo(home: Path, budget: float | None) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    budget_args = [] if budget is None else ["--budget", f"{budget:g}"]
    subprocess.run([sys.executable, "-m", "tools.cli", "demo", "--data-home", str(home), *budget_args],
                   cwd=ROOT, env=env, check=True)


def start_server(store: str, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store,
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as answer:
                if answer.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"mlflow server did not start; see {log}")


def find_runs(store: str) -> dict[str, str]:
    from mlflow import MlflowClient

    client = MlflowClient(store, registry_uri=store)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    # Pipeline runs are named "<role> <estimator> <data set> <target>": found by their role.
    by_role = {r.info.run_name.split()[0]: r for r in runs if r.data.tags.get("nba_mcp.kind") == "pipeline"}
    parent = next(r for r in runs if r.data.tags.get("nba_mcp.kind") == "tuning_search")
    trial = next(r for r in runs if r.data.tags.get("nba_mcp.kind") == "tuning_trial")
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    return {
        "experiment": experiment.experiment_id, "parent": parent.info.run_id, "trial": trial.info.run_id,
        "tuned": by_role["tuned"].info.run_id, "baseline": by_role["baseline"].info.run_id,
        # A database registry keeps the logged model only in the version's source (models:/m-…).
        "champion_version": champion.version,
        "champion_model": champion.model_id or champion.source.removeprefix("models:/"),
    }


def pages(ids: dict[str, str]) -> list[tuple[str, str, str | None]]:
    """(file name, UI route, text to wait for) of each screenshot."""
    e = ids["experiment"]
    compare = quote(json.dumps([ids["tuned"], ids["baseline"]]))
    return [
        ("01-training-runs.png", f"/#/experiments/{e}/runs", "Run Name"),
        ("02-pipeline-run.png", f"/#/experiments/{e}/runs/{ids['tuned']}", "Parameters"),
        ("03-tuning-parent.png", f"/#/experiments/{e}/runs/{ids['parent']}", "Parameters"),
        ("04-trial-run.png", f"/#/experiments/{e}/runs/{ids['trial']}", "Parameters"),
        ("05-compare-tuned-baseline.png", f"/#/compare-runs?runs={compare}&experiments={quote(json.dumps([e]))}",
         "Parameters"),
        ("06-logged-models.png", f"/#/experiments/{e}/models", None),
        ("07-logged-model.png", f"/#/experiments/{e}/models/{ids['champion_model']}", None),
        ("08-registered-model.png", f"/#/models/{MODEL_NAME}", "champion"),
        ("09-model-version.png", f"/#/models/{MODEL_NAME}/versions/{ids['champion_version']}", "Source Run"),
        ("10-optimization-history.png",
         f"/#/experiments/{e}/runs/{ids['parent']}/artifacts/optimization_history.png", None),
    ]


def shoot(url: str, ids: dict[str, str], out: Path, chromium: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        context = browser.new_context(viewport=VIEWPORT)
        context.add_init_script(QUIET_UI)
        page = context.new_page()
        page.goto(url + "/")
        page.wait_for_timeout(2000)
        model_training = page.get_by_text("Model training", exact=True)
        if model_training.count():  # the classic-ML view of the sidebar, not the GenAI one
            model_training.first.click()
            page.wait_for_timeout(500)
        for name, route, wait_for in pages(ids):
            page.goto(url + route)
            if wait_for:
                try:
                    page.get_by_text(wait_for).first.wait_for(timeout=20000)
                except Exception:  # noqa: BLE001 - a missing label must not lose the other screenshots
                    print(f"  {name}: {wait_for!r} not seen; screenshot taken anyway")
            page.wait_for_timeout(2500)  # charts and tables finish loading
            shots = [(name, None)]
            if name == "01-training-runs.png":  # the top-level runs as a first visit shows them, then the trials
                shots.append(("01b-search-trials.png", _expand_search))
            for shot, before in shots:
                if before is not None:
                    before(page)
                target = out / shot
                page.screenshot(path=str(target), full_page=True)
                written.append(target)
                print(f"  {target}")
        browser.close()
    return written


def _expand_search(page) -> None:
    """Open the tuning parent's row so its trials show under it."""
    toggle = page.locator("button[data-component-id*='runnamecellrenderer']")  # the parent row's +
    if toggle.count():
        toggle.first.click()
        page.wait_for_timeout(1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", type=Path, required=True, help="the demo's data home (run there if empty)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "mlflow-ui")
    parser.add_argument("--budget", type=float, default=None,
                        help="the demo's tuning budget in seconds when it is run here (default: the server's)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser")
                        or shutil.which("google-chrome"), help="the browser executable")
    args = parser.parse_args(argv)
    if not args.chromium:
        raise SystemExit("no Chromium found: install one (apt-get install chromium) or pass --chromium PATH")
    home = args.data_home.expanduser().resolve()
    if not (home / "mlflow.db").exists():
        run_demo(home, args.budget)
    store = f"sqlite:///{home / 'mlflow.db'}"
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    ids = find_runs(store)
    args.out.mkdir(parents=True, exist_ok=True)
    proc, url = start_server(store, home / "mlflow-ui-server.log")
    try:
        shoot(url, ids, args.out, args.chromium)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
