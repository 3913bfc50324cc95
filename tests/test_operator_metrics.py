"""The operator's series on ``/metrics`` (``mcp_server.operator_metrics``), counted by real work.

A tuning job and a pipeline through the MCP tools (in-memory SDK client, real sqlite store), then
the demo's own session (``tools.demo.session``) against an in-process server: the exposition is
parsed with prometheus-client's parser and every count is checked against what the jobs answered
or what the MLflow store holds. Counters only grow and other tests share the process, so each
check reads the difference between a scrape before and a scrape after.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mcp import Client
from prometheus_client.parser import text_string_to_metric_families

from mcp_server import monitoring, operator_metrics
from mcp_server.error_handling import TrackingUnavailableError
from tests.support import isolated_settings, payload, shared_template, template_db, tool_server, tool_settings  # noqa: F401

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana-dashboard.json"
Labels = tuple[tuple[str, str], ...]


def scrape() -> dict[tuple[str, Labels], float]:
    """(sample name, sorted labels) -> value, from what ``/metrics`` serves."""
    text = monitoring.prometheus_text().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class Delta:
    def __init__(self, before: dict, after: dict) -> None:
        self.before, self.after = before, after

    def __call__(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        assert key in self.after, f"{key} is not exported; exported: {sorted(k for k in self.after if k[0] == name)}"
        return self.after[key] - self.before.get(key, 0.0)

    def total(self, name: str, **labels: str) -> float:
        """Summed over every other label."""
        def matching(samples):
            return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))
        return matching(self.after) - matching(self.before)


def promotion_outcome(decision: dict) -> str:
    if decision["promoted"]:
        if decision["previous_version"] == decision["version"]:
            return "already_champion"
        return "forced" if decision["forced"] else "promoted"
    return "refused_flagged" if decision["flags"] else "kept"


@pytest.mark.anyio
async def test_a_tuning_job_and_a_pipeline_are_counted(tool_server):
    before = scrape()
    async with Client(tool_server) as client:
        tuned = payload(await client.call_tool("tune_hyperparameters", {"request": {
            "dataset": "diabetes", "estimator": "ridge", "max_trials": 3, "cv_folds": 3, "seed": 5,
            "strategy": "random", "experiment_name": "operator-metrics"}}))
        trained = payload(await client.call_tool("run_pipeline", {"request": {
            "dataset": "diabetes", "estimator": "ridge", "model_name": "operator-metrics-ridge",
            "experiment_name": "operator-metrics", "cv_folds": 3, "seed": 5}}))
        from sklearn.datasets import load_diabetes

        rows = load_diabetes(as_frame=True).frame.drop(columns="target").head(2).to_dict(orient="records")
        before_predict = scrape()
        predicted = payload(await client.call_tool("predict", {"model_name": "operator-metrics-ridge", "rows": rows}))
    after = scrape()
    delta, predict_delta = Delta(before, after), Delta(before_predict, after)
    assert len(predicted["predictions"]) == 2, predicted
    assert tuned["state"] == trained["state"] == "SUCCEEDED", (tuned, trained)
    search, pipeline = tuned["result"], trained["result"]

    assert delta("nba_mcp_trials_total", outcome="complete") == search["n_complete"] == 3
    assert delta("nba_mcp_trials_total", outcome="pruned") == 0
    assert delta("nba_mcp_trials_total", outcome="failed") == 0
    # Three trials' folds and the pipeline's final fit, under the family's own name.
    assert delta("nba_mcp_fit_duration_seconds_count", family="ridge") == 4
    assert delta("nba_mcp_fit_duration_seconds_sum", family="ridge") > 0

    for kind in ("tune", "pipeline"):
        assert delta("nba_mcp_job_wait_seconds_count", kind=kind, outcome="completed") == 1
        assert delta("nba_mcp_job_run_duration_seconds_count", kind=kind, outcome="completed") == 1
        assert delta("nba_mcp_job_run_duration_seconds_sum", kind=kind, outcome="completed") > 0
        assert delta.after[("nba_mcp_jobs_running", (("kind", kind),))] == 0
        assert delta.after[("nba_mcp_jobs_queued", (("kind", kind),))] == 0

    # Every trial and the pipeline wrote through the store: batched writes, timed, none failed.
    assert delta("nba_mcp_tracking_call_duration_seconds_count", operation="log_batch") > 0
    assert delta("nba_mcp_tracking_call_duration_seconds_sum", operation="log_batch") > 0
    assert delta("nba_mcp_tracking_call_duration_seconds_count", operation="log_model") == 1
    # predict loads the champion: its registry lookup and its download are store calls too.
    assert predict_delta("nba_mcp_tracking_call_duration_seconds_count", operation="artifact") == 1
    assert predict_delta("nba_mcp_tracking_call_duration_seconds_count", operation="registry") >= 1
    assert delta.total("nba_mcp_tracking_call_failures_total") == 0

    assert delta.total("nba_mcp_promotions_total") == 1
    assert delta("nba_mcp_promotions_total", outcome=promotion_outcome(pipeline["promotion"])) == 1
    assert delta("nba_mcp_leak_screen_stops_total") == 0


class _BrokenStore(BaseHTTPRequestHandler):
    """A tracking server whose /health answers while every API call fails (its database is down)."""

    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        status = 200 if self.path == "/health" else 500
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"OK" if status == 200 else b"database is down")

    do_POST = do_GET

    def log_message(self, *_args) -> None:
        pass


def test_a_store_that_fails_its_calls_is_counted_as_failed(settings):
    from mcp_server.mlflow_integration import get_mlflow_tracker

    server = ThreadingHTTPServer(("127.0.0.1", 0), _BrokenStore)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        tracker = get_mlflow_tracker("broken-store", f"http://127.0.0.1:{server.server_port}",
                                     settings=settings.model_copy(update={"tracking_timeout_seconds": 2}))
        before = scrape()
        with pytest.raises(TrackingUnavailableError):
            tracker.get_run("0" * 32)
        delta = Delta(before, scrape())
    finally:
        server.shutdown()
    assert delta("nba_mcp_tracking_call_failures_total", operation="read") == 1
    assert delta("nba_mcp_tracking_call_duration_seconds_count", operation="read") == 1



def test_a_cancelled_and_a_timed_out_job_are_counted_under_their_outcomes():
    from mcp_server.jobs import JobManager, JobState

    def until_stopped(job):
        while not job.should_stop():
            threading.Event().wait(0.01)
        return "stopped"

    before = scrape()
    manager = JobManager(max_concurrent=2, job_timeout=30)
    try:
        cancelled = manager.submit("metrics-cancel", until_stopped)
        while manager.get(cancelled).state is not JobState.RUNNING:
            threading.Event().wait(0.01)
        manager.cancel(cancelled)
        assert manager.wait(cancelled, timeout=5).state is JobState.CANCELLED
    finally:
        manager.shutdown(timeout=5)
    manager = JobManager(max_concurrent=1, job_timeout=0.2)
    try:
        assert manager.wait(manager.submit("metrics-timeout", until_stopped), timeout=5).state is JobState.FAILED
    finally:
        manager.shutdown(timeout=5)
    delta = Delta(before, scrape())
    assert delta("nba_mcp_job_run_duration_seconds_count", kind="metrics-cancel", outcome="cancelled") == 1
    assert delta("nba_mcp_job_run_duration_seconds_count", kind="metrics-timeout", outcome="timeout") == 1
    assert delta("nba_mcp_job_wait_seconds_count", kind="metrics-timeout", outcome="timeout") == 1

def test_label_values_stay_bounded():
    label = operator_metrics.BoundedLabel(("a",), limit=3)
    assert [label(v) for v in ("a", "b", "c", "d", "b", None)] == ["a", "b", "c", "other", "b", "other"]
    closed = operator_metrics.BoundedLabel(("x", "y"), closed=True)
    assert [closed("x"), closed("run-0123abcd")] == ["x", "other"]


def test_the_dashboard_reads_only_series_the_server_exports():
    """Every ``nba_mcp_*`` name a panel queries is exported (histograms as ``_bucket``/``_sum``/``_count``)."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(exprs) >= 10
    queried = {name for expr in exprs for name in re.findall(r"\bnba_mcp_[a-z_]+", expr)}
    exported: set[str] = set()
    for family in text_string_to_metric_families(monitoring.prometheus_text().decode()):
        suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",)}.get(family.type, ("",))
        exported.update(family.name + suffix for suffix in suffixes)
    assert queried and queried <= exported, sorted(queried - exported)
    operator_series = {n for n in exported if n.startswith("nba_mcp_") and not n.endswith("_created")}
    missing = {n for n in operator_series if re.sub(r"_(bucket|sum|count)$", "", n) not in
               {re.sub(r"_(bucket|sum|count)$", "", q) for q in queried}}
    assert not missing, f"series no panel shows: {sorted(missing)}"


@pytest.mark.slow
@pytest.mark.anyio
async def test_the_demo_session_leaves_job_trial_and_store_series_with_correct_counts(tmp_path_factory):
    """The acceptance check: the demo's own session (``tools.demo.session``: a naive pipeline stopped
    by the leak screen, the same one forced, a baseline, the default tuning call, the winner's
    pipeline, predictions), played against an in-process server instead of a spawned stdio one
    (whose /metrics nobody could read); the trial count is checked against the store's trial runs."""
    from mlflow import MlflowClient

    from tools.demo import DEFAULT_DATASET, DEFAULT_TARGET, EXPERIMENT, session
    from tools.server import build_server

    settings = isolated_settings(tmp_path_factory.mktemp("demo-metrics"), shared_template(tmp_path_factory),
                                 default_time_budget_seconds=8)
    server = build_server(settings)
    before = scrape()
    try:
        await session(server, DEFAULT_DATASET, None, DEFAULT_TARGET)
    finally:
        server.state.close()
    delta = Delta(before, scrape())

    store = MlflowClient(str(settings.tracking_uri))
    experiment = store.get_experiment_by_name(EXPERIMENT)
    trials = [r for r in store.search_runs([experiment.experiment_id], max_results=1000)
              if r.data.tags.get("nba_mcp.kind") == "tuning_trial"]
    states = [r.data.tags.get("nba_mcp.trial_state", "").lower() for r in trials]
    assert trials
    for outcome in operator_metrics.TRIAL_OUTCOMES:
        assert delta("nba_mcp_trials_total", outcome=outcome) == states.count(outcome), outcome
    assert delta.total("nba_mcp_fit_duration_seconds_count") >= len(trials) + 3  # + forced, baseline, winner
    families = [r.data.params["estimator"] for r in trials]  # the default call searches the portfolio
    for family in set(families):
        assert delta("nba_mcp_fit_duration_seconds_count", family=family) >= families.count(family), family
    other = ("nba_mcp_fit_duration_seconds_count", (("family", "other"),))
    assert delta.after.get(other, 0) == delta.before.get(other, 0)  # every fit named its family

    assert delta("nba_mcp_job_run_duration_seconds_count", kind="tune", outcome="completed") == 1
    assert delta("nba_mcp_job_run_duration_seconds_count", kind="pipeline", outcome="completed") == 3
    assert delta("nba_mcp_job_run_duration_seconds_count", kind="pipeline", outcome="failed") == 1  # the naive one
    assert delta("nba_mcp_leak_screen_stops_total") == 1
    assert delta.total("nba_mcp_promotions_total") == 3
    assert delta("nba_mcp_promotions_total", outcome="refused_flagged") == 1  # the forced naive model
    assert delta("nba_mcp_tracking_call_duration_seconds_count", operation="log_batch") >= len(trials)
    assert delta("nba_mcp_tracking_call_duration_seconds_sum", operation="log_batch") > 0
    assert delta.total("nba_mcp_tracking_call_failures_total") == 0
