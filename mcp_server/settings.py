"""One typed Settings object for the whole product.

Precedence (highest first): explicit arguments > environment > ``config/server.toml`` > defaults.
Environment variables use the ``NBA_MCP_`` prefix, and MLflow's own ``MLFLOW_TRACKING_URI`` and
``MLFLOW_EXPERIMENT_NAME`` are honoured as well. Nothing else in the product reads ``os.environ``:
build a ``Settings`` once and pass it explicitly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "config"
DEFAULT_CONFIG_FILE = CONFIG_DIR / "server.toml"


def default_data_home() -> Path:
    """Per-user data folder: MCP clients start servers from arbitrary working directories."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "nba-mcp"


class TokenEntry(BaseModel):
    """An HTTP bearer token, stored as its SHA-256 hex digest, and who it stands for."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    principal: str = Field(min_length=1, max_length=128)
    roles: list[str] = Field(min_length=1)


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

    # --- jobs -----------------------------------------------------------------------------
    max_concurrent_jobs: int = Field(default=2, ge=1, le=64)
    max_queued_jobs: int = Field(default=100, ge=0, le=10_000, description="Jobs that may wait beyond the running ones")
    job_timeout_seconds: float = Field(default=3600.0, gt=0)
    default_wait_seconds: float = Field(default=45.0, ge=0, le=55)

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
    max_jobs_per_principal: int = Field(default=4, ge=1, le=10_000, description="Queued plus running jobs per principal")
    max_sessions: int = Field(default=1000, ge=1, le=100_000, description="Open streamable-HTTP sessions in all")
    max_sessions_per_principal: int = Field(default=16, ge=1, le=100_000, description="Open sessions per principal")
    session_idle_timeout_seconds: float = Field(default=300.0, gt=0, le=86_400)
    http_body_timeout_seconds: float = Field(
        default=10.0, gt=0, le=600, description="A request body must arrive within this time (else 408)"
    )
    max_data_columns: int = Field(default=2000, gt=0, description="Columns of a data file, checked from its header")

    # --- access control and audit ---------------------------------------------------------
    roles_file: Path = CONFIG_DIR / "roles.toml"
    audit_log_path: Path | None = Field(default=None, description="Default: <data_home>/audit.jsonl")
    local_principal: str = "local"
    local_role: str = "developer"
    user_roles: dict[str, list[str]] = Field(
        default_factory=dict, description="user_id -> roles, for the user_id decorator style"
    )
    http_tokens: list[TokenEntry] = Field(default_factory=list)
    http_token: SecretStr | None = Field(
        default=None, description="A single plaintext token from the environment (NBA_MCP_HTTP_TOKEN)"
    )
    http_token_role: str = "developer"

    # --- errors and monitoring ------------------------------------------------------------
    error_webhook_url: str | None = None
    error_webhook_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    recent_errors_limit: int = Field(default=100, ge=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- HTTP transport -------------------------------------------------------------------
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8765, ge=0, le=65535)
    allowed_origins: list[str] = Field(default_factory=list)

    @field_validator("data_home", "artifact_root", "audit_log_path", "roles_file", mode="after")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("data_dirs", mode="after")
    @classmethod
    def _resolve_data_dirs(cls, value: list[Path]) -> list[Path]:
        # Relative folders in the config file are relative to the config folder, not the cwd.
        return [(p if p.is_absolute() else CONFIG_DIR / p).expanduser().resolve() for p in value]

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
        config_file = Path(os.environ.get("NBA_MCP_CONFIG_FILE", DEFAULT_CONFIG_FILE))
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file)
        return (init_settings, env_settings, toml)


def load_settings(**overrides: Any) -> Settings:
    """Build settings; keyword arguments win over the environment and the config file."""
    return Settings(**overrides)
