"""Settings: environment variables with prefix LOSSMON_, then config/lossmon.toml, then defaults.

Validated once at start-up (fail fast): a bad value stops the process with a message
that names the variable.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_TOML = Path(__file__).resolve().parent.parent / "config" / "lossmon.toml"


def _toml_path() -> Path:
    return Path(os.environ.get("LOSSMON_CONFIG_FILE", str(DEFAULT_TOML)))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOSSMON_", extra="ignore")

    database_url: str = "sqlite:///./lossmon.db"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    # Windows are recomputed by a scheduler tick this often.
    compute_interval_s: float = Field(default=60.0, gt=0)
    # How many dirty windows one compute transaction claims.
    compute_batch_windows: int = Field(default=16, ge=1, le=10_000)
    # A claimed window's lease: a live pass renews it every quarter of this (heartbeat),
    # so a window whose pass died (crashed worker) is claimable again within this long.
    compute_lease_s: float = Field(default=10.0, gt=0)
    # Per window, the model versions and the values of each segment key with the most
    # predictions get precomputed metrics (the rest share one "other" row; filtered
    # queries for those values are computed on demand).
    slice_top_n: int = Field(default=20, ge=1, le=1000)

    # Per API key and API process, e.g. "120000/minute" or "100/second; 5000/minute";
    # empty disables. The default (2,000 req/s per process) is a guard against a runaway
    # client, not a quota: a serving fleet sends thousands of single POSTs/s on one key.
    rate_limit: str = "120000/minute"
    # Where counters live: "memory://" (per process) or e.g. "redis://host:6379" to
    # share one budget across API processes.
    rate_limit_storage_uri: str = "memory://"
    max_batch_items: int = Field(default=10_000, ge=1, le=1_000_000)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)

    # API processes of `lossmon serve` (0 = automatic: one per CPU on PostgreSQL, capped
    # at 8; always 1 on SQLite, which has a single writer).
    workers: int = Field(default=0, ge=0, le=64)
    # Per API process: the writes in flight at once (app/api/write_gate.py), and the
    # connections: this many pooled (plus as many overflow ones, for reads) and this many
    # for prediction batches (app/pg_statement_pool.py). Small on purpose: one process
    # runs on one core (README "Sizing workers and the pool" has the figures), and 3 x
    # this x 8 processes stays under PostgreSQL's default max_connections of 100.
    db_pool_size: int = Field(default=3, ge=1)
    db_pool_timeout_s: float = Field(default=5.0, gt=0)
    # API.md "Time bounds and faults": request work waits at most this long for a lock,
    # a busy SQLite file or a pooled connection, then answers 503 + Retry-After.
    # Scheduler jobs are not bound by it (their statements may run longer).
    db_lock_timeout_s: float = Field(default=2.0, gt=0, le=60)
    # Prediction/actual timestamps may lie at most this far ahead of the server's clock.
    max_future_s: float = Field(default=86_400.0, ge=0)

    # Webhooks (alerting). Private/loopback targets are refused unless allowed.
    webhook_allow_private: bool = False
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    webhook_max_attempts: int = Field(default=15, ge=1, le=100)
    webhook_max_age_s: float = Field(default=86_400.0, gt=0)
    webhook_backoff_base_s: float = Field(default=2.0, gt=0)
    webhook_backoff_max_s: float = Field(default=900.0, gt=0)
    deliver_interval_s: float = Field(default=5.0, gt=0)
    # Alertmanager forgets an alert that is not re-posted (resolve_timeout, 5 min by
    # default): a firing alert is re-posted at least this often.
    alertmanager_resend_s: float = Field(default=60.0, gt=0)
    # Key that encrypts webhook secrets at rest (Fernet, urlsafe base64 of 32 bytes).
    # Unset: read from (or, the first time, create) `secret_key_file`.
    secret_key: str | None = None
    secret_key_file: str = "./lossmon.secret"
    log_level: str = "INFO"
    # auto: human-readable text on a terminal, JSON lines otherwise (files, collectors).
    log_format: Literal["auto", "json", "text"] = "auto"

    def serve_workers(self) -> int:
        """`lossmon serve`'s process count when --workers is not given."""
        if self.workers:
            return self.workers
        if self.is_sqlite:
            return 1
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return max(1, min(8, cpus or 1))

    @field_validator("database_url")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        if not (v.startswith("sqlite") or v.startswith("postgresql")):
            raise ValueError(
                "LOSSMON_DATABASE_URL must be a sqlite:/// or postgresql+psycopg:// URL"
            )
        if v.startswith("postgresql://") or v.startswith("postgres://"):
            # Plain postgresql:// would pick psycopg2, which we do not ship.
            v = "postgresql+psycopg://" + v.split("://", 1)[1]
        return v

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit(cls, v: str) -> str:
        if v.strip():
            from limits import parse_many

            try:
                parse_many(v)
            except ValueError as exc:
                raise ValueError(
                    'LOSSMON_RATE_LIMIT must look like "6000/minute" (or empty to disable)'
                ) from exc
        return v.strip()

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        v = v.upper()
        if v not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("LOSSMON_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
        return v

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _toml_path()
        if path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings for the CLI; the app receives its Settings explicitly."""
    return load_settings()
