"""``http_stateless``: streamable HTTP where every request stands alone (no initialize, no session id),
so replicas behind a load balancer need no session affinity; jobs, runs and models travel as ids.

Spoken raw, as ``tests/test_protocol_versions.py`` does, in a handshake-era version (2025-06-18),
the one the setting changes (2026-07-28 clients are served without sessions either way): the same
sessionless request is refused by a default server and answered by a stateless one. A job started
by one request is read by id from other, unrelated requests and clients, and ``/metrics`` on that
server counts its trials.
"""

from __future__ import annotations

import time

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from mcp_server.settings import Settings
from tests.support import isolated_settings, payload, server_env, shared_template
from tests.support.raw_http import HttpServedProcess, RawHttpSession, _messages

TOKEN = "stateless-http-token-0123456789"
HANDSHAKE_VERSION = "2025-06-18"
TUNE = {"dataset": "iris", "estimator": "decision_tree", "max_trials": 3, "cv_folds": 3, "seed": 3,
        "strategy": "random", "experiment_name": "stateless-http"}


def _serve(tmp_path_factory, name: str, **variables: str) -> HttpServedProcess:
    home = tmp_path_factory.mktemp(f"{name}-home")
    isolated_settings(home, shared_template(tmp_path_factory))
    env = server_env(home, NBA_MCP_HTTP_TOKEN=TOKEN, NBA_MCP_HTTP_TOKEN_ROLE="developer", **variables)
    return HttpServedProcess(env, tmp_path_factory.mktemp("logs") / f"{name}.log")


@pytest.fixture(scope="module")
def stateless_server(tmp_path_factory):
    served = _serve(tmp_path_factory, "stateless", NBA_MCP_HTTP_STATELESS="true")
    yield served
    served.stop()


@pytest.fixture(scope="module")
def stateful_server(tmp_path_factory):
    served = _serve(tmp_path_factory, "stateful")
    yield served
    served.stop()


def lone_request(url: str, method: str, params: dict) -> httpx2.Response:
    """One JSON-RPC request on a fresh connection, with no initialize before it and no session id."""
    with httpx2.Client(timeout=60, headers={"Authorization": f"Bearer {TOKEN}",
                                            "Accept": "application/json, text/event-stream",
                                            "MCP-Protocol-Version": HANDSHAKE_VERSION}) as http:
        return http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params})


def lone_call(url: str, tool: str, arguments: dict) -> dict:
    response = lone_request(url, "tools/call", {"name": tool, "arguments": arguments})
    assert response.status_code == 200, response.text[:500]
    assert "mcp-session-id" not in response.headers  # nothing to come back to
    [answer] = [m for m in _messages(response.text) if m.get("id") == 1]
    assert not answer["result"].get("isError"), answer
    return payload(answer["result"])


def test_a_default_server_refuses_a_request_without_a_session(stateful_server):
    response = lone_request(stateful_server.url, "tools/call", {"name": "list_jobs", "arguments": {}})
    assert response.status_code == 400, response.text[:300]
    assert "session" in response.text.lower()


def test_a_stateless_server_answers_every_request_alone_and_jobs_travel_as_ids(stateless_server):
    url = stateless_server.url
    started = lone_call(url, "tune_hyperparameters", {"request": TUNE, "wait_seconds": 0})
    job_id = started["job_id"]
    deadline = time.monotonic() + 120
    job = lone_call(url, "get_job", {"job_id": job_id})  # another request, another connection
    while not job["done"] and time.monotonic() < deadline:
        time.sleep(0.5)
        job = lone_call(url, "get_job", {"job_id": job_id})
    assert job["state"] == "SUCCEEDED", job
    assert job["result"]["n_trials"] == 3

    # A client of the 2026-07-28 protocol reads the same job by its id, and lists it.
    modern = RawHttpSession(url, TOKEN, "2026-07-28")
    try:
        assert payload(modern.call_tool("get_job", {"job_id": job_id}))["state"] == "SUCCEEDED"
        assert job_id in {j["job_id"] for j in payload(modern.call_tool("list_jobs", {}))["jobs"]}
    finally:
        modern.close()

    # The server's /metrics counts the job and its trials.
    scraped = httpx2.get(url.removesuffix("/mcp") + "/metrics", timeout=30)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(scraped.text) for s in family.samples}
    assert samples[("nba_mcp_trials_total", (("outcome", "complete"),))] == 3
    assert samples[("nba_mcp_job_run_duration_seconds_count", (("kind", "tune"), ("outcome", "completed")))] == 1
    assert samples[("nba_mcp_fit_duration_seconds_count", (("family", "decision_tree"),))] == 3
    assert samples[("nba_mcp_jobs_running", (("kind", "tune"),))] == 0


def test_a_handshake_client_still_gets_an_answer_after_initialize(stateless_server):
    # Clients that initialize first keep working; the server just hands out no session.
    client = RawHttpSession(stateless_server.url, TOKEN, HANDSHAKE_VERSION)
    try:
        assert client.session_id is None
        assert payload(client.call_tool("list_jobs", {}))["jobs"] is not None
    finally:
        client.close()


def test_progress_still_arrives_on_the_calls_own_stream(stateless_server):
    response = lone_request(stateless_server.url, "tools/call", {
        "name": "tune_hyperparameters", "arguments": {"request": {**TUNE, "seed": 4}},
        "_meta": {"progressToken": "tune-1"}})
    messages = _messages(response.text)
    progress = [m["params"]["message"] for m in messages if m.get("method") == "notifications/progress"]
    assert [m.split(",")[0] for m in progress if m.startswith("trial ")] == ["trial 1/3", "trial 2/3", "trial 3/3"]
    [answer] = [m for m in messages if m.get("id") == 1]
    assert payload(answer["result"])["state"] == "SUCCEEDED"


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("0", False), ("off", False)])
def test_the_setting_is_read_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("NBA_MCP_HTTP_STATELESS", value)
    assert Settings().http_stateless is expected


def test_a_value_that_is_not_a_boolean_is_refused_by_name():
    with pytest.raises(ValidationError, match=r"http_stateless\s+Input should be a valid boolean"):
        Settings(http_stateless="sometimes")
