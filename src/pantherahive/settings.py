"""Platform settings, validated once at start-up.

Every variable is documented in ``docs/configuration.md``; keep the two in step.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MAX_ACCESS_TOKEN_TTL_SECONDS = 15 * 60
MAX_REFRESH_TOKEN_TTL_DAYS = 30


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PANTHERAHIVE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    env: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    data_dir: Path = Path(".pantherahive")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"

    # The app login (pantherahive_app) and the owner: docs/configuration.md "Database roles".
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "PANTHERAHIVE_DATABASE_URL")
    )
    database_admin_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_ADMIN_URL", "PANTHERAHIVE_DATABASE_ADMIN_URL"),
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "PANTHERAHIVE_REDIS_URL")
    )
    bus_url: str = Field(
        default="embedded", validation_alias=AliasChoices("BUS_URL", "PANTHERAHIVE_BUS_URL")
    )
    # Event backbone (docs/events.md)
    bus_run_consumers: bool = True
    bus_max_attempts: int = Field(default=5, ge=1, le=100)
    bus_retry_base_seconds: float = Field(default=0.5, ge=0)
    bus_retry_max_seconds: float = Field(default=30.0, ge=0)
    bus_poll_interval_seconds: float = Field(default=1.0, gt=0)
    bus_batch_size: int = Field(default=200, ge=1, le=10_000)
    bus_stream: str = Field(default="PANTHERAHIVE_EVENTS", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    bus_ack_wait_seconds: float = Field(default=30.0, gt=0)
    bus_retention_days: int = Field(default=7, ge=1)
    bus_prune_interval_seconds: float = Field(default=3600.0, gt=0)
    # A fixed pool: overflow connections are opened and closed again under bursts, and a
    # new connection costs asyncpg's connect and type setup (bench: ~20 % more CPU per
    # request at 32 concurrent requests with 10 + 10 than with 20 + 0).
    db_pool_size: int = Field(default=20, ge=1, le=200)
    db_max_overflow: int = Field(default=0, ge=0, le=200)
    db_statement_timeout_ms: int = Field(default=15_000, ge=100)

    # Access tokens are signed with the Ed25519 keys in this directory (docs/identity.md,
    # "Signing keys"); unset: <data_dir>/keys, created on first start in development only.
    signing_keys_dir: Path | None = None
    # Keys the idempotency fingerprints and stored webhook secrets; unset: jwt_secret.
    secret_key: SecretStr | None = None
    jwt_secret: SecretStr | None = None
    jwt_issuer: str = "pantherahive"
    jwt_audience: str = "pantherahive-api"
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=MAX_ACCESS_TOKEN_TTL_SECONDS)
    refresh_token_ttl_days: int = Field(default=30, ge=1, le=MAX_REFRESH_TOKEN_TTL_DAYS)
    email_token_ttl_hours: int = Field(default=24, ge=1, le=24 * 7)
    password_reset_ttl_minutes: int = Field(default=30, ge=5, le=24 * 60)

    # Two-factor authentication (docs/identity.md)
    mfa_issuer: str = Field(default="PantheraHive", min_length=1, max_length=100)
    mfa_challenge_ttl_seconds: int = Field(default=300, ge=30, le=3600)

    signup_open: bool = True
    require_email_verification: bool = False

    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # GET /v1/projects/{id}/schedule holds a project's whole graph in memory: larger is 409.
    schedule_max_tasks: int = Field(default=5_000, ge=1, le=1_000_000)
    cors_origins: list[str] = Field(default_factory=list)

    rate_limit_enabled: bool = True
    rate_limit_login_failures: str = "10/5 minutes"
    rate_limit_user: str = "1200/minute"
    rate_limit_anonymous: str = "300/minute"

    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=1024)
    argon2_parallelism: int = Field(default=4, ge=1)

    # Notifications (docs/notifications.md). No SMTP host / SMS URL: messages are logged.
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_tls: bool = False
    smtp_from: str = "PantheraHive <no-reply@pantherahive.local>"
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    smtp_ca_file: str | None = None
    sms_provider_url: str | None = None
    sms_account_sid: str | None = None
    sms_auth_token: SecretStr | None = None
    sms_from: str | None = None
    sms_timeout_seconds: float = Field(default=5.0, gt=0)
    webhook_allow_private_addresses: bool = False
    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    webhook_disable_after_failures: int = Field(default=5, ge=1)
    delivery_max_attempts: int = Field(default=5, ge=1, le=50)
    delivery_backoff_seconds: float = Field(default=2.0, ge=0)
    delivery_backoff_max_seconds: float = Field(default=600.0, ge=0)
    delivery_poll_seconds: float = Field(default=1.0, gt=0)
    notifications_worker_enabled: bool = True
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0)
    app_base_url: str = "http://localhost:8000"

    # Single sign-on (docs/identity.md): http issuers are for a local test provider only.
    oidc_allow_http_issuers: bool = False
    oidc_timeout_seconds: float = Field(default=5.0, gt=0)
    oidc_login_ttl_seconds: int = Field(default=600, ge=30, le=3600)

    # audit archive: a local directory (default <data_dir>/archive) or s3://bucket/prefix
    audit_archive_url: str | None = None
    audit_retention_days: int = Field(default=365, ge=1)
    audit_segment_events: int = Field(default=50_000, ge=1, le=1_000_000)
    audit_s3_endpoint: str | None = None
    audit_s3_region: str = "us-east-1"
    audit_s3_access_key_id: str | None = None
    audit_s3_secret_access_key: SecretStr | None = None
    audit_s3_allow_http: bool = False

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _refuse_weak_production(self) -> Settings:
        """Production refuses what is only safe on one developer's machine; each error names
        the setting to change. Development keeps the conveniences (generated secrets,
        private webhook targets, several workers counting rate limits apart)."""
        if self.env == "production":
            _refuse_weak_secret("PANTHERAHIVE_JWT_SECRET", self.jwt_secret)
            if "*" in self.cors_origins:
                raise ValueError("PANTHERAHIVE_CORS_ORIGINS may not be '*' in production")
            if self.webhook_allow_private_addresses:
                raise ValueError(
                    "PANTHERAHIVE_WEBHOOK_ALLOW_PRIVATE_ADDRESSES may not be true in production: "
                    "webhooks could reach the internal network"
                )
            self.refuse_unshared_rate_limits(self.workers)
            if self.signing_keys_dir is None:
                raise ValueError(
                    "PANTHERAHIVE_SIGNING_KEYS_DIR must be set in production: every process "
                    "signs and verifies access tokens with the keys in that one shared "
                    "directory (create the first with `pantherahive keys add --activate`)"
                )
            if self.database_url and self.database_url == self.database_admin_url:
                raise ValueError(
                    "DATABASE_URL and DATABASE_ADMIN_URL may not be the same in production: "
                    "the app logs in as pantherahive_app, never as the owner"
                )
        return self

    def refuse_unshared_rate_limits(self, workers: int) -> None:
        """Several processes count rate limits in memory apart unless they share Redis: each
        would allow the full limit, N of them N times it (``serve --workers`` calls this too)."""
        if self.env == "production" and workers > 1 and self.rate_limit_enabled \
                and not self.redis_url:
            raise ValueError(
                f"PANTHERAHIVE_WORKERS={workers} needs REDIS_URL in production: without a "
                "shared store every worker counts rate limits on its own"
            )

    @property
    def data_path(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def signing_keys_path(self) -> Path:
        if self.signing_keys_dir is None:
            return self.data_path / "keys"
        return self.signing_keys_dir.expanduser().resolve()

    def resolved_secret_key(self) -> str:
        """The key of idempotency fingerprints and stored webhook secrets: the configured
        one, else the JWT secret (configured or generated), which held that role before
        access tokens moved to signing keys — so stored secrets stay readable."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        return self.resolved_jwt_secret()

    def resolved_jwt_secret(self) -> str:
        """The configured JWT key, or one generated on first start and kept in the data dir."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        return load_or_create_secret(self.data_path / "secrets" / "jwt.key")


MIN_SECRET_CHARS = 32
_PLACEHOLDER_WORDS = ("change", "secret", "example", "default", "placeholder", "dummy")


def _refuse_weak_secret(name: str, value: SecretStr | None) -> None:
    """A production secret is configured explicitly — every machine of a fleet must hold
    the same one, not each generate its own — and is neither short nor a placeholder."""
    if value is None:
        raise ValueError(
            f"{name} must be set in production: a key generated into one machine's data "
            "directory differs on every other machine of a fleet"
        )
    secret = value.get_secret_value()
    if len(secret) < MIN_SECRET_CHARS:
        raise ValueError(f"{name} must be at least {MIN_SECRET_CHARS} characters")
    lowered = secret.lower()
    if any(word in lowered for word in _PLACEHOLDER_WORDS) or len(set(secret)) < 8:
        raise ValueError(f"{name} looks like a placeholder; generate one (openssl rand -hex 32)")


def load_or_create_secret(path: Path) -> str:
    """Read the secret, or create it so that every racing process ends up with the same one.

    ``serve --workers N`` starts N processes that may all find no file. Each writes its
    candidate to a private temporary file and hard-links it into place; ``os.link`` fails
    if the name exists, so exactly one candidate wins and the file only ever appears
    complete. Everyone — winner and losers — then uses what the file holds.
    """
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:  # mkstemp: mode 0600
            handle.write(secrets.token_urlsafe(48))
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return _read_secret(path)


def _read_secret(path: Path) -> str:
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise ValueError(f"{path} is empty; delete it to have a new secret generated")
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
