"""One typed Settings object for the whole product.

Precedence (highest first): explicit arguments > environment > the user's config file > the
packaged defaults (``mcp_server/config/server.toml``, package data read with ``importlib.resources``).
The user's file is ``NBA_MCP_CONFIG`` when set (it must exist), else
``$XDG_CONFIG_HOME/nba-mcp/config.toml`` (``~/.config/nba-mcp/config.toml``) when it exists;
relative paths in it are relative to its own folder. Nothing is looked up relative to the source
tree or the working directory. Environment variables use the ``NBA_MCP_`` prefix, and MLflow's own
``MLFLOW_TRACKING_URI`` and ``MLFLOW_EXPERIMENT_NAME`` are honoured as well. Nothing else in the
product reads ``os.environ``: build a ``Settings`` once and pass it explicitly.
"""

from __future__ import annotations

import os
import tomllib
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from mcp_server._package_data import PACKAGED_DEFAULTS
from mcp_server.error_handling import ConfigurationError
from mcp_server.identity_settings import JwtSettings, TokenEntry
from mcp_server.threads import usable_cores

CONFIG_ENV_VAR = "NBA_MCP_CONFIG"
# Path fields that a config file may give relative to its own folder.
_FILE_RELATIVE_PATHS = ("data_home", "artifact_root", "audit_log_path", "roles_file", "log_file", "http_tokens_file")


def default_worker_memory_mb() -> int:
    """Half of this machine's memory, at least 2 GB: a runaway fit fails before the machine swaps
    or the kernel's OOM killer picks a process (a warm worker maps 0.6-1.0 GB of address space)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (AttributeError, ValueError, OSError):  # not POSIX
        return 8192
    return max(2048, total // 2)


def default_data_home() -> Path:
    """Per-user data folder: MCP clients start servers from arbitrary working directories."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "nba-mcp"


def default_user_config_file() -> Path:
    """The documented per-user config file (it need not exist)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "nba-mcp" / "config.toml"


def user_config_file() -> Path | None:
    """``NBA_MCP_CONFIG`` if set (it must exist), else the per-user file if it exists."""
    named = os.environ.get(CONFIG_ENV_VAR)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigurationError(f"{CONFIG_ENV_VAR} names {str(path)!r}, which is not a file")
        return path
    default = default_user_config_file()
    return default if default.is_file() else None


def _read_toml(source: Traversable, label: str) -> dict[str, Any]:
    try:
        return tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"config file {label} cannot be read: {exc}") from None


def _user_file_values(path: Path) -> dict[str, Any]:
    """The user's file, with relative paths made relative to the file's folder."""
    values = _read_toml(path, str(path))
    folder = path.resolve().parent

    def anchored(value: Any) -> Any:
        if isinstance(value, str) and not Path(value).expanduser().is_absolute():
            return str(folder / value)
        return value

    for key in _FILE_RELATIVE_PATHS:
        if key in values:
            values[key] = anchored(values[key])
    if isinstance(values.get("data_dirs"), list):
        values["data_dirs"] = [anchored(v) for v in values["data_dirs"]]
    if "http_tokens" in values and "http_tokens_file" not in values:
        # The file that lists the tokens is the one re-read when it changes (tools/static_tokens.py).
        values["http_tokens_file"] = str(path.resolve())
    return values


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NBA_MCP_",
        env_nested_delimiter="__",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    # --- tracking -------------------------------------------------------------------------
    data_home: Path = Field(default_factory=default_data_home)
    tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("tracking_uri", "MLFLOW_TRACKING_URI", "NBA_MCP_TRACKING_URI"),
        description="MLflow tracking URI; default: sqlite file under data_home.",
    )
    artifact_root: Path | None = Field(default=None, description="Default: <data_home>/artifacts")
    experiment_name: str = Field(
        default="nba_model_training",
        min_length=1,
        validation_alias=AliasChoices(
            "experiment_name", "MLFLOW_EXPERIMENT_NAME", "NBA_MCP_EXPERIMENT_NAME"
        ),
    )
    tracking_timeout_seconds: float = Field(default=10.0, gt=0, le=600)

    # --- data -----------------------------------------------------------------------------
    data_dirs: list[Path] = Field(default_factory=list)
    max_data_bytes: int = Field(default=200_000_000, gt=0)
    max_data_rows: int = Field(default=2_000_000, gt=0)

    # --- tuning limits --------------------------------------------------------------------
    max_grid_size: int = Field(default=2000, gt=0)
    max_trials: int = Field(default=500, gt=0)
    max_cv_folds: int = Field(default=20, ge=2)
    default_time_budget_seconds: float = Field(
        default=60.0, gt=0, le=86_400,
        description="Wall budget of a search given neither max_trials nor timeout_seconds (search and its logging)",
    )
    dask_scheduler_address: str | None = None

    # --- honest evaluation ----------------------------------------------------------------
    leak_threshold: float = Field(
        default=0.98, gt=0.5, le=1.0,
        description="A feature (or pair) that alone reaches this CV score (roc_auc / balanced accuracy / r2) is a leak",
    )
    leak_screen_rows: int = Field(default=10_000, ge=100, description="Rows sampled for the target-leak screen")
    near_perfect_score: float = Field(
        default=0.99, gt=0.5, le=1.0, description="Bounded scores at or above this flag a model as too good to trust"
    )
    max_classes: int = Field(
        default=100, ge=2, le=10_000, description="A classification target with more classes is refused before any work"
    )
    max_class_share: float = Field(
        default=0.25, gt=0, le=1.0,
        description="A classification target with more classes than this share of its rows is refused (a label per row)",
    )
    holdout_reuse_limit: int = Field(
        default=10, ge=1, le=10_000,
        description="Models of one name evaluated on the same holdout past this count are flagged holdout_reused",
    )

    # --- jobs -----------------------------------------------------------------------------
    max_concurrent_jobs: int = Field(default=2, ge=1, le=64)
    cores: int = Field(
        default_factory=usable_cores, ge=1, le=65_536,
        description="Cores the server's fits share: concurrent jobs x parallel trials x threads per fit stays "
        "within them (default: the cores this process may use)",
    )
    max_queued_jobs: int = Field(default=100, ge=0, le=10_000, description="Jobs that may wait beyond the running ones")
    job_timeout_seconds: float = Field(default=3600.0, gt=0)
    default_wait_seconds: float = Field(default=40.0, ge=0, le=50)

    # --- reliability: stoppable jobs, fair sharing, bounded input shape ---------------------
    isolate_trials: bool = Field(
        default=True, description="Run a job's trials in worker processes that cancel, timeout and shutdown kill"
    )
    job_stop_grace_seconds: float = Field(
        default=10.0, gt=0, le=600, description="A job still running this long after cancel/timeout frees its slot anyway"
    )
    shutdown_timeout_seconds: float = Field(
        default=8.0, gt=0, le=600, description="On SIGTERM/SIGINT/stdin EOF: time to end jobs and their runs before exiting"
    )
    worker_memory_limit_mb: int | None = Field(
        default_factory=default_worker_memory_mb, ge=1024, le=16_777_216,
        description="Address space of each trial or fit worker process, in MB (RLIMIT_AS): a fit past it fails "
        "with a MemoryError naming this setting. Default: half the machine's memory; null: no limit",
    )
    max_jobs_per_principal: int = Field(default=4, ge=1, le=10_000, description="Queued plus running jobs per principal")
    max_sessions: int = Field(default=1000, ge=1, le=100_000, description="Open streamable-HTTP sessions in all")
    max_sessions_per_principal: int = Field(default=16, ge=1, le=100_000, description="Open sessions per principal")
    session_idle_timeout_seconds: float = Field(default=300.0, gt=0, le=86_400)
    http_body_timeout_seconds: float = Field(
        default=10.0, gt=0, le=600, description="A request body must arrive within this time (else 408)"
    )
    max_data_columns: int = Field(
        default=2000, gt=0, description="Columns of a data file, counted by the parser that loads it (header and rows)")
    max_data_cell_chars: int = Field(
        default=10_000, gt=0, le=100_000_000, description="Characters of one cell or column name of a data file")
    max_data_parse_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="A data file still being parsed after this long is refused")
    max_frame_cache_bytes: int = Field(
        default=512_000_000, ge=0,
        description="Memory of the loaded data frames kept for reuse (least recently used dropped first; 0: none)")

    # --- admission per principal (HTTP): what one token may hold at once -------------------
    max_requests_per_principal: int = Field(
        default=32, ge=1, le=100_000,
        description="HTTP requests of one principal being served at once (long-lived GET streams aside); "
        "more -> 429 naming this setting",
    )
    max_body_bytes_per_principal: int = Field(
        default=16 * 1024 * 1024, ge=64 * 1024, le=1 << 34,
        description="Request body bytes one principal may have in flight (being received or served); "
        "more -> 429 naming this setting",
    )
    max_read_calls_per_principal: int = Field(
        default=2, ge=1, le=1_000,
        description="Calls that load a data file (describe_dataset, validate_data, the dataset schema resource) "
        "one principal may run at once; further calls wait their turn",
    )

    # --- the HTTP front: connections and timeouts ------------------------------------------
    http_header_timeout_seconds: float = Field(
        default=10.0, gt=0, le=600, description="A request's line and headers must arrive within this time "
        "(else the connection is closed)",
    )
    http_keep_alive_timeout_seconds: float = Field(
        default=5.0, gt=0, le=3600, description="An idle keep-alive connection is closed after this time"
    )
    http_max_connections: int = Field(
        default=1000, ge=8, le=1_000_000,
        description="Open HTTP connections; also held below the descriptor limit minus http_fd_reserve. "
        "At the limit a new connection displaces the oldest one still waiting for its headers",
    )
    http_fd_reserve: int = Field(
        default=256, ge=64, le=100_000,
        description="File descriptors kept for the server's own files, pipes and worker processes: "
        "connections stop at RLIMIT_NOFILE minus this",
    )

    # --- access control and audit ---------------------------------------------------------
    roles_file: Path | None = Field(default=None, description="Default: the packaged roles.toml")
    audit_log_path: Path | None = Field(default=None, description="Default: <data_home>/audit.jsonl")
    local_principal: str = "local"
    local_role: str = "developer"
    user_roles: dict[str, list[str]] = Field(
        default_factory=dict, description="user_id -> roles, for the user_id decorator style"
    )
    http_tokens: list[TokenEntry] = Field(default_factory=list)
    http_tokens_file: Path | None = Field(
        default=None,
        description="A TOML file whose [[http_tokens]] are the static tokens, re-read when it changes and on "
        "SIGHUP (default: the config file, when it lists http_tokens)",
    )
    http_token: SecretStr | None = Field(
        default=None, description="A single plaintext token from the environment (NBA_MCP_HTTP_TOKEN)"
    )
    http_token_role: str = "developer"
    jwt: JwtSettings | None = Field(default=None, description="Accept access tokens of this identity provider")

    # --- errors and monitoring ------------------------------------------------------------
    error_webhook_url: str | None = None
    error_webhook_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    recent_errors_limit: int = Field(default=100, ge=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- logs that cannot fill a disk ------------------------------------------------------
    log_file: Path | None = Field(
        default=None, description="Also write the server log to this file, rotated by size (default: stderr only)"
    )
    log_max_bytes: int = Field(default=20_000_000, ge=10_000, description="Server log file size before rotation")
    log_backups: int = Field(default=5, ge=1, le=1000, description="Rotated server log files kept")
    audit_log_max_bytes: int = Field(default=50_000_000, ge=10_000, description="Audit log size before rotation")
    audit_log_backups: int = Field(default=5, ge=1, le=1000, description="Rotated audit log files kept")
    log_repeat_interval_seconds: float = Field(
        default=60.0, gt=0, le=86_400,
        description="Repeated denials of one principal (and repeated accept errors) are written once, then "
        "summarized with a count once per interval",
    )

    # --- HTTP transport -------------------------------------------------------------------
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8765, ge=0, le=65535)
    allowed_origins: list[str] = Field(default_factory=list)
    http_stateless: bool = Field(
        default=False,
        description="Serve streamable HTTP statelessly: no session ids, every request stands alone (runs, "
        "models and jobs are named by ids), so replicas behind a load balancer need no session affinity. "
        "Clients of the 2026-07-28 protocol are served statelessly either way; the SSE transport ignores it",
    )

    @field_validator("data_home", "artifact_root", "audit_log_path", "roles_file", "log_file", "http_tokens_file",
                     mode="after")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("data_dirs", mode="after")
    @classmethod
    def _resolve_data_dirs(cls, value: list[Path]) -> list[Path]:
        # A config file anchors its relative folders to its own folder (see _user_file_values).
        return [p.expanduser().resolve() for p in value]

    @model_validator(mode="after")
    def _fill_paths(self) -> Settings:
        if self.artifact_root is None:
            self.artifact_root = self.data_home / "artifacts"
        if self.audit_log_path is None:
            self.audit_log_path = self.data_home / "audit.jsonl"
        if self.tracking_uri is None:
            self.tracking_uri = f"sqlite:///{self.data_home / 'mlflow.db'}"
        return self

    @property
    def is_remote_tracking(self) -> bool:
        return str(self.tracking_uri).startswith(("http://", "https://"))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings]
        user_file = user_config_file()
        if user_file is not None:
            sources.append(InitSettingsSource(settings_cls, init_kwargs=_user_file_values(user_file)))
        packaged = _read_toml(PACKAGED_DEFAULTS, "packaged server.toml")
        sources.append(InitSettingsSource(settings_cls, init_kwargs=packaged))
        return tuple(sources)

