"""Security: path escapes (symlinks too), constant-time token checks, tokens never logged, denials
that do not reveal whether something exists, loopback binding with Host/Origin checks, bounded reads.
Figures: ``<pytest tmp>/reliability/security.json``."""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import anyio
import pytest
from mcp import Client

from mcp_server import rbac
from mcp_server.error_handling import ResourceLimitError
from mcp_server.settings import Settings
from tools import identity
from tools.server import build_server
from tests.support import (
    error_of,
    payload,
    ANALYST,
    VIEWER,
    data_folder_with_escapes,
    isolated_settings,
    server_env,
    shared_template,
)

pytestmark = pytest.mark.anyio

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NOBODY = rbac.Principal("nobody", ())  # authenticated, but holds no role
FIGURES: dict = {}
SLOW_TUNE = {"dataset": "iris", "estimator": "random_forest", "max_trials": 30, "cv_folds": 3, "seed": 1,
             "space": {"n_estimators": {"type": "int", "low": 100, "high": 200}}}


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    root = tmp_path_factory.mktemp("security")
    data = data_folder_with_escapes(root, "a,target\n" + "".join(f"{i},{i % 2}\n" for i in range(40)))
    settings = isolated_settings(root / "home", shared_template(tmp_path_factory), data_dirs=[data])
    server = build_server(settings)
    yield server
    server.state.close()
    out = tmp_path_factory.getbasetemp() / "reliability"
    out.mkdir(exist_ok=True)
    (out / "security.json").write_text(json.dumps(FIGURES, indent=2))
    print("\nsecurity figures:", json.dumps(FIGURES))


def text_of(result) -> str:
    return result.content[0].text if result.content else json.dumps(payload(result))


# --- paths ---------------------------------------------------------------------------------------------

ESCAPES = ["escape", "escape.csv", "dangling", "dangling.csv", "linked/secret", "linked/secret.csv",
           "../outside/secret.csv", "/etc/passwd", "~/secret", "..", "sub/../../outside/secret"]


async def test_path_escapes_are_refused_alike_whether_the_target_exists_or_not(secured):
    answers = {}
    async with Client(secured) as client:
        listed = {d["name"] for d in payload(await client.call_tool("list_datasets", {}))["datasets"]}
        for name in ESCAPES:
            for tool, args in (("describe_dataset", {"name": name}),
                               ("validate_data", {"request": {"dataset": name}}),
                               ("tune_hyperparameters", {"request": {"dataset": name, "target": "target"}})):
                result = await client.call_tool(tool, args)
                assert result.is_error, (tool, name)
                assert "hunter2" not in text_of(result) and "password" not in text_of(result)
                answers[(tool, name)] = text_of(result)
        with pytest.raises(Exception) as resource_error:
            await client.read_resource("datasets://escape/schema")
    assert "hunter2" not in str(resource_error.value)
    assert not listed & {"escape", "dangling", "linked/secret"}  # symlinks out are not listed either
    for tool in ("describe_dataset", "validate_data", "tune_hyperparameters"):
        # A symlink to an existing file outside and one to a missing file get the same answer.
        assert answers[(tool, "escape")].replace("escape", "X") == answers[(tool, "dangling")].replace("dangling", "X")
        assert answers[(tool, "linked/secret")].replace("linked/secret", "X") == \
            answers[(tool, "dangling")].replace("dangling", "X")
    FIGURES["path_escape_calls"] = len(answers)


# --- denials -------------------------------------------------------------------------------------------


async def test_denials_read_the_same_for_existing_and_missing_things(secured):
    async with Client(secured) as client:
        job = (await client.call_tool("tune_hyperparameters", {"request": SLOW_TUNE, "wait_seconds": 0}))
        job_id = payload(job)["job_id"]
        runs = payload(await client.call_tool("search_runs", {"request": {"max_results": 1}}))["runs"]
        run_id = runs[0]["run_id"] if runs else None
        while run_id is None:  # the job's parent run
            await anyio.sleep(0.1)
            runs = payload(await client.call_tool("search_runs", {"request": {"max_results": 1}}))["runs"]
            run_id = runs[0]["run_id"] if runs else None
    missing_job, missing_run = "0123456789ab", "f" * 32
    cases = [
        (VIEWER, "cancel_job", {"job_id": job_id}, {"job_id": missing_job}),
        (VIEWER, "register_model", {"run_id": run_id, "model_name": "m"}, {"run_id": missing_run, "model_name": "m"}),
        (NOBODY, "get_job", {"job_id": job_id}, {"job_id": missing_job}),
        (NOBODY, "get_run", {"run_id": run_id}, {"run_id": missing_run}),
        (NOBODY, "compare_runs", {"run_ids": [run_id, "e" * 32]}, {"run_ids": [missing_run, "e" * 32]}),
        (ANALYST, "register_model", {"run_id": run_id, "model_name": "m"}, {"run_id": missing_run, "model_name": "m"}),
    ]
    compared = 0
    for principal, tool, existing, missing in cases:
        with rbac.acting_as(principal):
            async with Client(secured) as client:
                first = await client.call_tool(tool, existing)
                second = await client.call_tool(tool, missing)
                resources = []
                if tool == "get_run":
                    for uri in (f"runs://{run_id}", f"runs://{missing_run}"):
                        try:
                            await client.read_resource(uri)
                        except Exception as exc:  # noqa: BLE001 - the denial is what we compare
                            resources.append(str(exc))
        assert first.is_error and second.is_error
        assert error_of(first) == error_of(second) == {"code": "permission_denied", "message": "permission denied"}
        if resources:
            assert len(resources) == 2 and resources[0] == resources[1] and "permission denied" in resources[0]
        compared += 1
    async with Client(secured) as client:
        await client.call_tool("cancel_job", {"job_id": job_id})
        await client.call_tool("get_job", {"job_id": job_id, "wait_seconds": 30})
    FIGURES["denial_pairs_identical"] = compared


# --- tokens --------------------------------------------------------------------------------------------

TOKENS = ["first-token-0123456789", "second-token-abcdefghij", "third-token-zyxwvutsrq"]


def verifier_with_three_tokens() -> identity.SettingsTokenVerifier:
    entries = [{"sha256": hashlib.sha256(t.encode()).hexdigest(), "principal": f"p{i}", "roles": ["viewer"]}
               for i, t in enumerate(TOKENS[:2])]
    return identity.SettingsTokenVerifier(Settings(http_tokens=entries, http_token=TOKENS[2]))


async def test_every_configured_token_is_compared_in_constant_time(monkeypatch):
    import hmac

    verifier = verifier_with_three_tokens()
    calls = []
    compare = hmac.compare_digest

    def counting(a, b):
        calls.append((len(a), len(b)))
        return compare(a, b)

    from tools import static_tokens  # where the static tokens are compared

    monkeypatch.setattr(static_tokens.hmac, "compare_digest", counting)
    for token in [*TOKENS, "wrong", TOKENS[0][:-1], ""]:
        calls.clear()
        accepted = await verifier.verify_token(token)
        assert (accepted is not None) == (token in TOKENS)
        # No early exit and digests of equal length: the same work for a match, a near miss, a miss.
        assert calls == [(32, 32)] * 3
        if accepted is not None:
            assert token not in json.dumps(accepted.model_dump(mode="json"))
    monkeypatch.undo()
    timings = {}
    # A match costs more than a miss (a principal is built), which the 401 reveals anyway; what must
    # not differ is which token matched, or how close a miss came.
    for label, token in (("match_first", TOKENS[0]), ("match_last", TOKENS[2]),
                         ("near_miss", TOKENS[0][:-1] + "X"), ("far_miss", "x" * len(TOKENS[0]))):
        samples = []
        for _ in range(3000):
            started = time.perf_counter_ns()
            await verifier.verify_token(token)
            samples.append(time.perf_counter_ns() - started)
        timings[label] = statistics.median(samples) / 1000
    FIGURES["token_verify_median_us"] = {k: round(v, 2) for k, v in timings.items()}


def http_request(url: str, *, method: str = "GET", headers: dict | None = None, body: bytes | None = None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def big_post(port: int, path: str, size: int, headers: dict, *, chunked: bool) -> int:
    """POST a ``size``-byte body: declared up front (the server answers before the body is sent),
    or chunked without a length, as a client hiding the size would."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("POST", path)
        for key, value in {**headers, **({"Transfer-Encoding": "chunked"} if chunked
                                         else {"Content-Length": str(size)})}.items():
            connection.putheader(key, value)
        connection.endheaders()
        if chunked:
            try:
                for _ in range(size >> 20):
                    connection.send(b"100000\r\n" + b"x" * (1 << 20) + b"\r\n")
                connection.send(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered and closed before the client finished sending
        return connection.getresponse().status
    finally:
        connection.close()


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on ``port`` (from /proc: no traffic is sent)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                found.add(address if width == 32 else ".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def test_http_binds_loopback_checks_host_and_origin_and_never_logs_tokens(tmp_path, tmp_path_factory):
    from tests.support import free_port, wait_http

    assert Settings().http_host == "127.0.0.1"
    home = tmp_path / "home"
    isolated_settings(home, shared_template(tmp_path_factory))
    port = free_port()
    token, wrong = "s3cret-token-for-the-log-test", "wrong-token-also-never-logged"
    env = server_env(home, NBA_MCP_HTTP_TOKEN=token, NBA_MCP_LOG_LEVEL="DEBUG")
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "serve", "--transport", "http", "--port", str(port)],
                                cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=log)
        try:
            base = f"http://127.0.0.1:{port}"
            assert wait_http(base + "/health", 60)
            addresses = listening_addresses(port)
            assert addresses == {"127.0.0.1"}, addresses
            init = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}).encode()
            headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
            statuses = {
                "no_token": http_request(base + "/mcp", method="POST", headers=headers, body=init)[0],
                "wrong_token": http_request(base + "/mcp", method="POST", body=init,
                                            headers={**headers, "Authorization": f"Bearer {wrong}"})[0],
                "foreign_host": http_request(base + "/mcp", method="POST", body=init, headers={
                    **headers, "Authorization": f"Bearer {token}", "Host": "evil.example.com"})[0],
                "foreign_origin": http_request(base + "/mcp", method="POST", body=init, headers={
                    **headers, "Authorization": f"Bearer {token}", "Origin": "http://evil.example.com"})[0],
                "own_origin": http_request(base + "/mcp", method="POST", body=init, headers={
                    **headers, "Authorization": f"Bearer {token}", "Origin": base})[0],
                "body_9mib": big_post(port, "/mcp", 9 << 20, {**headers, "Authorization": f"Bearer {token}"},
                                      chunked=False),
                "body_9mib_chunked": big_post(port, "/mcp", 9 << 20, {**headers, "Authorization": f"Bearer {token}"},
                                              chunked=True),
            }
        finally:
            proc.terminate()
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
    assert statuses == {"no_token": 401, "wrong_token": 401, "foreign_host": 421, "foreign_origin": 403,
                        "own_origin": 200, "body_9mib": 413, "body_9mib_chunked": 413}, statuses
    logged = log_path.read_bytes() + b"".join(p.read_bytes() for p in home.glob("*.jsonl"))
    assert len(log_path.read_bytes()) > 1000  # DEBUG logging did run
    assert token.encode() not in logged and wrong.encode() not in logged
    FIGURES["http"] = {"listening_on": sorted(addresses), **statuses, "log_bytes_checked_for_tokens": len(logged)}


# --- bounded reads -----------------------------------------------------------------------------------------


def test_model_artifacts_past_the_size_limit_are_not_loaded(tmp_path, tmp_path_factory):
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    from mcp_server.mlflow_integration import get_mlflow_tracker

    X, y = load_iris(return_X_y=True, as_frame=True)
    settings = isolated_settings(tmp_path / "home", shared_template(tmp_path_factory))
    tracker = get_mlflow_tracker("bounded-reads", settings=settings)
    with tracker.start_run("model") as run_id:
        uri = tracker.log_model(DecisionTreeClassifier(max_depth=2).fit(X, y), input_example=X.head(2))
    assert tracker.load_model(uri).predict(X.head(3)).shape == (3,)
    small = get_mlflow_tracker("bounded-reads", settings=settings.model_copy(update={"max_data_bytes": 2000}))
    with pytest.raises(ResourceLimitError, match="more than 2000 bytes"):
        small.load_model(uri)
    FIGURES["model_artifact_bound"] = {"run": run_id, "limit_bytes": 2000, "refused": True}
