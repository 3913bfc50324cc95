"""Roles as data, the pure authorize, acting_as / user_id principals, require_permission, audit log."""

from __future__ import annotations

import inspect
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_server import rbac
from mcp_server.error_handling import ConfigurationError, PermissionDeniedError
from mcp_server.rbac import (
    DEFAULT_ROLES_FILE,
    Permission,
    Principal,
    RoleTable,
    acting_as,
    audit_log,
    authorize,
    configure_rbac,
    current_principal,
    current_role_table,
    load_role_table,
    local_principal,
    principal_for_user,
    require_permission,
    reset_rbac,
)
from mcp_server.settings import Settings

P = Permission
EXPECTED = {
    "viewer": {P.READ},
    "analyst": {P.READ, P.EXECUTE},
    "developer": {P.READ, P.WRITE, P.EXECUTE},
    "admin": set(P),
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    """RBAC configured with the project's roles, a tmp audit log and two known users."""
    configured = Settings(
        data_home=tmp_path,
        audit_log_path=tmp_path / "logs" / "nested" / "audit.jsonl",
        user_roles={"alice": ["developer"], "victor": ["viewer"]},
    )
    configure_rbac(configured)
    yield configured
    reset_rbac()


def audit_entries(settings: Settings) -> list[dict]:
    return [json.loads(line) for line in settings.audit_log_path.read_text().splitlines()]


@pytest.fixture(scope="module")
def project_roles() -> RoleTable:
    return load_role_table(DEFAULT_ROLES_FILE)


@pytest.mark.parametrize("role", sorted(EXPECTED))
@pytest.mark.parametrize("permission", list(Permission))
def test_role_permission_matrix(role, permission, project_roles) -> None:
    principal = Principal("someone", {role})
    assert authorize(principal, permission, project_roles) is (permission in EXPECTED[role])


@pytest.mark.parametrize(
    ("roles", "granted"),
    [
        (set(), set()),
        ({"intruder"}, set()),  # unknown role: deny by default
        ({"viewer", "intruder"}, {P.READ}),
        ({"viewer", "analyst"}, {P.READ, P.EXECUTE}),
    ],
)
def test_roles_combine_and_unknown_roles_grant_nothing(roles, granted, project_roles) -> None:
    principal = Principal("someone", roles)
    assert {p for p in Permission if authorize(principal, p, project_roles)} == granted


def test_no_principal_is_never_authorized(project_roles) -> None:
    assert not any(authorize(None, p, project_roles) for p in Permission)


def test_principal_is_frozen_and_hashable() -> None:
    principal = Principal("bob", ["viewer", "viewer"])
    assert principal.roles == frozenset({"viewer"})
    assert hash(principal) == hash(Principal("bob", {"viewer"}))
    with pytest.raises(AttributeError):
        principal.id = "eve"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[roles]\nviewer = ["read", "fly"]\n', r"role 'viewer' names unknown permissions \['fly'\]"),
        ('[roles]\nviewer = "read"\n', "role 'viewer' must list its permissions"),
        ('viewer = ["read"]\n', "must have a \\[roles\\] table"),
        ("[roles\n", "is not valid TOML"),
    ],
)
def test_bad_roles_files_are_configuration_errors(content, message, tmp_path) -> None:
    path = tmp_path / "roles.toml"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=message):
        load_role_table(path)


def test_missing_roles_file_is_a_configuration_error(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_role_table(tmp_path / "absent.toml")


def test_acting_as_sets_and_restores_the_principal() -> None:
    outer, inner = Principal("outer", {"viewer"}), Principal("inner", {"admin"})
    assert current_principal() is None
    with acting_as(outer):
        with acting_as(inner):
            assert current_principal() is inner
        assert current_principal() is outer
    assert current_principal() is None


def test_local_principal_and_configured_users(settings) -> None:
    assert local_principal(settings) == Principal("local", {"developer"})
    assert principal_for_user("alice") == Principal("alice", {"developer"})
    assert principal_for_user("mallory") == Principal("mallory", frozenset())


# --- require_permission ------------------------------------------------------------------------


def _deploy(model_id: str, user_id: str | None = None, *, alias: str = "champion") -> str:
    return f"{model_id}@{alias}"


async def _deploy_async(model_id: str, user_id: str | None = None, *, alias: str = "champion") -> str:
    return _deploy(model_id, user_id, alias=alias)


@pytest.mark.parametrize("func", [_deploy, _deploy_async], ids=["sync", "async"])
def test_decorator_keeps_signature_and_async_ness(func) -> None:
    wrapped = require_permission(Permission.WRITE)(func)
    assert inspect.signature(wrapped) == inspect.signature(func)
    assert inspect.iscoroutinefunction(wrapped) == inspect.iscoroutinefunction(func)
    assert wrapped.__name__ == func.__name__


async def _call(func, *args, **kwargs):
    result = func(*args, **kwargs)
    return await result if inspect.isawaitable(result) else result


@pytest.mark.anyio
@pytest.mark.parametrize("func", [_deploy, _deploy_async], ids=["sync", "async"])
@pytest.mark.parametrize(
    ("context_principal", "user_id", "allowed"),
    [
        (Principal("dev", {"developer"}), None, True),
        (Principal("viewer", {"viewer"}), None, False),
        (None, "alice", True),  # user_id style: alice is a developer in settings.user_roles
        (None, "victor", False),  # a viewer
        (None, "mallory", False),  # unknown user
        (None, None, False),  # nobody
        (Principal("viewer", {"viewer"}), "alice", False),  # the context wins over an argument
        (Principal("dev", {"developer"}), "victor", True),
    ],
)
async def test_require_permission_decisions(func, context_principal, user_id, allowed, settings):
    wrapped = require_permission(Permission.WRITE)(func)
    with acting_as(context_principal):
        if allowed:
            assert await _call(wrapped, "m1", user_id, alias="prod") == "m1@prod"
        else:
            with pytest.raises(PermissionDeniedError) as denied:
                await _call(wrapped, "m1", user_id=user_id)
            assert str(denied.value) == "permission denied"
    [entry] = audit_entries(settings)
    who = context_principal.id if context_principal else user_id
    assert entry["principal"] == who
    assert (entry["permission"], entry["allowed"]) == ("write", allowed)
    assert entry["action"] == func.__qualname__
    assert entry["time"].endswith("+00:00")


def test_denial_happens_before_the_function_runs(settings) -> None:
    ran = []

    @require_permission("delete", action="delete_run")
    def delete_run(run_id: str) -> None:
        ran.append(run_id)

    with acting_as(Principal("ana", {"analyst"})), pytest.raises(PermissionDeniedError):
        delete_run("r1")
    assert ran == []
    assert audit_entries(settings)[0]["action"] == "delete_run"


def test_unknown_permission_is_refused_at_decoration() -> None:
    with pytest.raises(ConfigurationError, match="permission must be one of"):
        require_permission("fly")


def test_seed_snippet_runs_as_written(settings) -> None:
    @require_permission(Permission.WRITE)
    def deploy_model(model_id: str, user_id: str): ...

    assert deploy_model("model-1", "alice") is None
    with pytest.raises(PermissionDeniedError):
        deploy_model("model-1", user_id="victor")


def test_audit_appends_are_whole_lines_under_threads(settings) -> None:
    @require_permission(Permission.READ)
    def read(user_id: str) -> None: ...

    def worker(index: int) -> None:
        for _ in range(50):
            try:
                read("alice" if index % 2 else "mallory")
            except PermissionDeniedError:
                pass

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    audit_log().flush()
    entries = audit_entries(settings)
    assert sum(entry["allowed"] for entry in entries) == 200
    # Repeated denials of one principal: the first in full, the other 199 as one line with a count.
    denied = [entry for entry in entries if not entry["allowed"]]
    assert [entry.get("repeated", 1) for entry in denied] == [1, 199]
    assert denied[1]["principal"] == "mallory" and denied[1]["actions"] == {denied[0]["action"]: 199}


def test_configure_rbac_uses_the_settings_roles_file(tmp_path, caplog) -> None:
    roles_file = tmp_path / "roles.toml"
    roles_file.write_text('[roles]\nreader = ["read"]\n')
    try:
        table = configure_rbac(Settings(data_home=tmp_path, roles_file=roles_file, local_role="reader"))
        assert current_role_table() is table and rbac.role_table() is table
        assert authorize(Principal("x", {"reader"}), Permission.READ)
        assert not authorize(Principal("x", {"developer"}), Permission.READ)  # not in this table
        assert "'developer' is not defined" in caplog.text  # http_token_role default
        assert audit_log().path == tmp_path / "audit.jsonl"
    finally:
        reset_rbac()


def test_default_state_uses_project_roles_and_no_audit() -> None:
    reset_rbac()
    assert current_role_table().roles == load_role_table(DEFAULT_ROLES_FILE).roles
    assert audit_log().path is None
    assert audit_log().record(
        principal=None, permission=Permission.READ, action="probe", allowed=False
    )["allowed"] is False
