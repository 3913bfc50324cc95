"""Role-based access control: permissions, principals, roles as data, one pure ``authorize``.

Roles live in the packaged ``config/roles.toml`` unless ``Settings.roles_file`` names another file;
a role not listed grants nothing.
Who is calling comes from the context (``acting_as(principal)``, set per request by the server
from the transport, or by library code), never from tool arguments. For library code in the
seed's style a function may take a ``user_id`` argument instead: when no principal is set in the
context and ``user_id`` is passed, the principal is looked up in ``Settings.user_roles``. The
context wins when both exist, so a caller cannot raise its rights by naming another user.

Every decision made by ``require_permission`` is appended to a JSON-lines audit log
(``Settings.audit_log_path``, rotated by size; repeated denials of one principal summarized per
interval) once ``configure_rbac(settings)`` has run; until then auditing is off.
A denial always raises ``PermissionDeniedError("permission denied")``: the message never says
whether the resource exists or which permission was missing.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import threading
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from mcp_server._package_data import PACKAGED_ROLES
from mcp_server.error_handling import ConfigurationError, PermissionDeniedError
from mcp_server.log_bounds import RepeatedEvents, RotatingAppender

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from mcp_server.settings import Settings

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_ROLES_FILE = PACKAGED_ROLES  # package data (importlib.resources)


class Permission(StrEnum):
    READ = "read"
    WRITE = "write"
    EXECUTE = "execute"
    DELETE = "delete"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """Who is acting: an id and the names of its roles (any iterable, stored as a frozenset)."""

    id: str
    roles: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", frozenset(self.roles))


@dataclass(frozen=True)
class RoleTable:
    """Role name -> permissions it grants. Read-only once built."""

    roles: Mapping[str, frozenset[Permission]]

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", MappingProxyType(dict(self.roles)))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Iterable[str]]) -> RoleTable:
        """Build from plain data (as read from TOML), refusing unknown permission names."""
        known = {p.value for p in Permission}
        table = {}
        for role, names in mapping.items():
            if isinstance(names, str) or not isinstance(names, Iterable):
                raise ConfigurationError(
                    f"role {role!r} must list its permissions, got {names!r}"
                )
            unknown = sorted(set(names) - known)
            if unknown:
                raise ConfigurationError(
                    f"role {role!r} names unknown permissions {unknown}; "
                    f"permissions are {sorted(known)}"
                )
            table[role] = frozenset(Permission(name) for name in names)
        return cls(table)

    def permissions_for(self, roles: Iterable[str]) -> frozenset[Permission]:
        """Union of the permissions of ``roles``; unknown roles add nothing."""
        granted: set[Permission] = set()
        for role in roles:
            granted |= self.roles.get(role, frozenset())
        return frozenset(granted)


def load_role_table(path: Path | str | Traversable) -> RoleTable:
    """Read a roles file: a ``[roles]`` table of ``role = ["permission", ...]``."""
    path = Path(path) if isinstance(path, str) else path
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigurationError(f"roles_file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"roles_file {str(path)!r} is not valid TOML: {exc}") from None
    roles = data.get("roles")
    if not isinstance(roles, dict):
        raise ConfigurationError(f"roles_file {str(path)!r} must have a [roles] table")
    return RoleTable.from_mapping(roles)


def authorize(
    principal: Principal | None, permission: Permission, role_table: RoleTable | None = None
) -> bool:
    """True if one of the principal's roles grants ``permission``; no principal -> False.

    Pure when ``role_table`` is given; without it, the configured table is used.
    """
    if principal is None:
        return False
    table = role_table if role_table is not None else current_role_table()
    return Permission(permission) in table.permissions_for(principal.roles)


# --- who is acting -----------------------------------------------------------------------------

_current_principal: ContextVar[Principal | None] = ContextVar("nba_mcp_principal", default=None)


@contextlib.contextmanager
def acting_as(principal: Principal | None) -> Iterator[Principal | None]:
    """Run the block (and tasks it starts) as ``principal``; restores the previous one after."""
    token = _current_principal.set(principal)
    try:
        yield principal
    finally:
        _current_principal.reset(token)


def current_principal() -> Principal | None:
    return _current_principal.get()


def local_principal(settings: Settings) -> Principal:
    """The principal of a local (stdio) session: ``Settings.local_principal`` with ``local_role``."""
    return Principal(settings.local_principal, frozenset({settings.local_role}))


def principal_for_user(user_id: str) -> Principal:
    """A principal from ``Settings.user_roles``; an unknown user gets no roles (denied)."""
    return Principal(user_id, _state.user_roles.get(user_id, frozenset()))


# --- audit -------------------------------------------------------------------------------------


class AuditLog:
    """Appends one JSON line per access decision; thread-safe; off when ``path`` is None.

    The file is rotated by size (``max_bytes``, ``backups`` files kept). Denials are summarized per
    principal: the first in each ``repeat_interval`` seconds is written in full, the rest as one line
    ``{"allowed": false, "repeated": <count>, "actions": {action: count}}`` when the interval ends.
    Allowed decisions are always written one by one.
    """

    def __init__(self, path: Path | None = None, *, max_bytes: int = 50_000_000, backups: int = 5,
                 repeat_interval: float = 60.0) -> None:
        self.path = path
        self._file = RotatingAppender(path, max_bytes=max_bytes, backups=backups) if path is not None else None
        self._denials = RepeatedEvents(repeat_interval, self._write_denial_summary)

    def record(
        self, *, principal: Principal | None, permission: Permission, action: str, allowed: bool
    ) -> dict[str, Any]:
        entry = {
            "time": datetime.now(timezone.utc).isoformat(),
            "principal": principal.id if principal else None,
            "roles": sorted(principal.roles) if principal else [],
            "permission": permission.value,
            "action": action,
            "allowed": allowed,
        }
        if self._file is None:
            return entry
        if not allowed and not self._denials.admit(entry["principal"], action):
            return entry  # counted; written in the interval's summary line
        self._write(entry)
        return entry

    def flush(self) -> None:
        """Write pending denial summaries now (shutdown, tests)."""
        self._denials.flush()

    def _write_denial_summary(self, principal: Any, count: int, actions: dict[str, int], seconds: float) -> None:
        self._write({
            "time": datetime.now(timezone.utc).isoformat(),
            "principal": principal,
            "allowed": False,
            "repeated": count,
            "actions": actions,
            "seconds": round(seconds, 1),
        })

    def _write(self, entry: dict[str, Any]) -> None:
        assert self._file is not None
        try:
            self._file.append(json.dumps(entry) + "\n")
        except OSError:
            # A full disk must not turn into an outage; the decision itself still stands.
            logger.exception("could not append to audit log %s", self.path)


# --- module state and configuration ------------------------------------------------------------


@dataclass
class _RbacState:
    role_table: RoleTable | None = None  # loaded lazily from DEFAULT_ROLES_FILE
    audit_log: AuditLog = field(default_factory=AuditLog)
    user_roles: dict[str, frozenset[str]] = field(default_factory=dict)


_state = _RbacState()
_state_lock = threading.Lock()


def current_role_table() -> RoleTable:
    """The configured role table (the packaged ``roles.toml`` until configured)."""
    with _state_lock:
        if _state.role_table is None:
            _state.role_table = load_role_table(DEFAULT_ROLES_FILE)
        return _state.role_table


role_table = current_role_table  # short name used by the MCP adapter


def audit_log() -> AuditLog:
    return _state.audit_log


def configure_rbac(settings: Settings) -> RoleTable:
    """Load roles from ``settings.roles_file``, audit to ``settings.audit_log_path``, and take
    ``settings.user_roles``; warns about role names that grant nothing."""
    roles_file = settings.roles_file or DEFAULT_ROLES_FILE
    table = load_role_table(roles_file)
    user_roles = {user: frozenset(roles) for user, roles in settings.user_roles.items()}
    named = {settings.local_role, settings.http_token_role}.union(*user_roles.values())
    named |= {role for token in settings.http_tokens for role in token.roles}
    if settings.jwt is not None:
        named |= settings.jwt.granted_roles
    for role in sorted(named - set(table.roles)):
        logger.warning("role %r is not defined in %s: it grants nothing", role, roles_file)
    with _state_lock:
        _state.role_table = table
        _state.audit_log = AuditLog(settings.audit_log_path, max_bytes=settings.audit_log_max_bytes,
                                    backups=settings.audit_log_backups,
                                    repeat_interval=settings.log_repeat_interval_seconds)
        _state.user_roles = user_roles
    return table


def reset_rbac() -> None:
    """Back to the import-time state: project roles file, no audit, no user_roles (for tests)."""
    with _state_lock:
        _state.role_table = None
        _state.audit_log = AuditLog()
        _state.user_roles = {}


# --- the decorator -----------------------------------------------------------------------------


def require_permission(permission: Permission | str, *, action: str | None = None) -> Callable[[F], F]:
    """Allow calls only to a principal holding ``permission``; audit every decision.

    The principal is the context's (``acting_as``) or, failing that, the one named by a
    ``user_id`` argument of the wrapped function. Denied -> ``PermissionDeniedError``.
    ``action`` names the decision in the audit log (default: the function's qualified name).
    """
    try:
        needed = Permission(permission)
    except ValueError:
        raise ConfigurationError(
            f"permission must be one of {[p.value for p in Permission]}, got {permission!r}"
        ) from None

    def decorate(func: F) -> F:
        action_name = action or func.__qualname__
        signature = inspect.signature(func)
        takes_user_id = "user_id" in signature.parameters

        def check(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            principal = current_principal()
            if principal is None and takes_user_id:
                principal = _principal_from_arguments(signature, args, kwargs)
            allowed = authorize(principal, needed, current_role_table())
            _state.audit_log.record(
                principal=principal, permission=needed, action=action_name, allowed=allowed
            )
            if not allowed:
                raise PermissionDeniedError()

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                check(args, kwargs)
                return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            check(args, kwargs)
            return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def _principal_from_arguments(
    signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Principal | None:
    try:
        user_id = signature.bind_partial(*args, **kwargs).arguments.get("user_id")
    except TypeError:
        return None  # the call itself will raise the TypeError for its bad arguments
    if not isinstance(user_id, str) or not user_id:
        return None
    return principal_for_user(user_id)
