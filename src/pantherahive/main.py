"""create_app(): the platform's HTTP application — middleware, error handlers, lifespan,
routers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from limits import RateLimitItem
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import Scope

from pantherahive import __version__
from pantherahive.consumers import ANNOUNCED_SCHEMAS, all_consumers, asyncapi
from pantherahive.core.errors import ServiceUnavailable, Unauthenticated
from pantherahive.domains.audit import router as audit_router
from pantherahive.domains.audit.api import ArchiveConfig, ArchiveStore, AuditService
from pantherahive.domains.identity import router as identity_router
from pantherahive.domains.identity.access_tokens import router as access_tokens_router
from pantherahive.domains.identity.auth import Authenticator
from pantherahive.domains.identity.delivery import AccountMessageSender
from pantherahive.domains.identity.mfa import MfaConfig, SecondFactor
from pantherahive.domains.identity.service import IdentityConfig, IdentityService
from pantherahive.domains.identity.sso import router as sso_router
from pantherahive.domains.identity.sso.oidc import OidcClient
from pantherahive.domains.identity.sso.service import SingleSignOn, SsoConfig
from pantherahive.domains.notifications import router as notifications_router
from pantherahive.domains.notifications.api import NotificationsRuntime
from pantherahive.domains.projects import router as projects_router
from pantherahive.domains.tasks import router as tasks_router
from pantherahive.infra import heap
from pantherahive.infra.bus.embedded import EmbeddedRuntime
from pantherahive.infra.bus.from_settings import is_embedded
from pantherahive.infra.db.embedded import embedded_database_urls
from pantherahive.infra.db.engine import Database
from pantherahive.infra.db.roles import login_problems
from pantherahive.infra.http.docs import install_offline_docs
from pantherahive.infra.http.gateway import GatewayMiddleware
from pantherahive.infra.http.idempotency import IdempotencyStore
from pantherahive.infra.http.problems import document_problems, install_problem_handlers
from pantherahive.infra.http.unit_of_work import UnitOfWorkMiddleware
from pantherahive.infra.logging import configure_logging, get_logger
from pantherahive.infra.ratelimit import RateLimits
from pantherahive.infra.security import crypto
from pantherahive.infra.security.crypto import SecretBox
from pantherahive.infra.security.dependency import Authentication, install_authentication
from pantherahive.infra.security.jwks import jwks_router
from pantherahive.infra.security.passwords import Passwords
from pantherahive.infra.security.scopes import document_scopes
from pantherahive.infra.security.signing_keys import KeyRing, key_ring
from pantherahive.infra.security.tokens import AccessTokens, parse_personal_token
from pantherahive.infra.tracing import instrument_app, instrument_database
from pantherahive.settings import Settings, get_settings

log = get_logger("pantherahive")


@dataclass
class Platform:
    """Everything a request needs that lives as long as the process."""

    settings: Settings
    db: Database
    rate_limits: RateLimits
    user_rate_item: RateLimitItem
    anonymous_rate_item: RateLimitItem
    identity: IdentityService
    audit: AuditService
    authenticator: Authenticator
    idempotency: IdempotencyStore
    notifications: NotificationsRuntime
    signing_keys: KeyRing
    sso: SingleSignOn


def build_platform(
    settings: Settings, database_url: str, sender: AccountMessageSender | None = None
) -> Platform:
    db = Database.connect(
        database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        statement_timeout_ms=settings.db_statement_timeout_ms,
    )
    secret = settings.resolved_secret_key()
    signing_keys = key_ring(settings)
    limits = RateLimits(redis_url=settings.redis_url, enabled=settings.rate_limit_enabled)
    notifications = NotificationsRuntime(settings, db, key_material=secret)
    identity = IdentityService(
        passwords=Passwords(
            time_cost=settings.argon2_time_cost,
            memory_kib=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        ),
        tokens=AccessTokens(
            signing_keys,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl_seconds=settings.access_token_ttl_seconds,
        ),
        sender=sender or notifications.sender,
        config=IdentityConfig(
            signup_open=settings.signup_open,
            require_email_verification=settings.require_email_verification,
            refresh_ttl=timedelta(days=settings.refresh_token_ttl_days),
            email_token_ttl=timedelta(hours=settings.email_token_ttl_hours),
            reset_token_ttl=timedelta(minutes=settings.password_reset_ttl_minutes),
        ),
    )
    return Platform(
        settings=settings,
        db=db,
        rate_limits=limits,
        user_rate_item=limits.parse(settings.rate_limit_user),
        anonymous_rate_item=limits.parse(settings.rate_limit_anonymous),
        identity=identity,
        audit=AuditService(ArchiveStore(audit_archive_config(settings))),
        authenticator=Authenticator(
            identity,
            limits,
            settings.rate_limit_login_failures,
            SecondFactor(
                identity,
                limits,
                settings.rate_limit_login_failures,
                box=SecretBox(secret, purpose="totp-secrets"),
                config=MfaConfig(
                    issuer=settings.mfa_issuer,
                    challenge_ttl=timedelta(seconds=settings.mfa_challenge_ttl_seconds),
                ),
            ),
        ),
        idempotency=IdempotencyStore(db.sessions, secret),
        notifications=notifications,
        signing_keys=signing_keys,
        sso=SingleSignOn(
            identity=identity,
            oidc=OidcClient(
                timeout_seconds=settings.oidc_timeout_seconds,
                allow_http=settings.oidc_allow_http_issuers,
            ),
            key=crypto.derive_key(secret, b"identity.sso"),
            config=SsoConfig(
                app_base_url=settings.app_base_url,
                allow_http_issuers=settings.oidc_allow_http_issuers,
                login_ttl=timedelta(seconds=settings.oidc_login_ttl_seconds),
            ),
        ),
    )


def audit_archive_config(settings: Settings) -> ArchiveConfig:
    secret = settings.audit_s3_secret_access_key
    return ArchiveConfig(
        url=settings.audit_archive_url or str(settings.data_path / "archive"),
        segment_events=settings.audit_segment_events,
        retention_days=settings.audit_retention_days,
        s3_endpoint=settings.audit_s3_endpoint,
        s3_region=settings.audit_s3_region,
        s3_access_key_id=settings.audit_s3_access_key_id,
        s3_secret_access_key=secret.get_secret_value() if secret else None,
        s3_allow_http=settings.audit_s3_allow_http,
    )


def resolve_database_url(settings: Settings) -> str:
    """The app login's URL: ``DATABASE_URL``, or the embedded PostgreSQL's (started if need
    be) when neither database URL is set."""
    if settings.database_url:
        return settings.database_url
    if settings.database_admin_url:
        raise ValueError(
            "DATABASE_ADMIN_URL is set but DATABASE_URL is not: the app logs in as "
            "pantherahive_app with its own URL (docs/configuration.md, Database roles)"
        )
    return embedded_database_urls(settings.data_path).app


def resolve_admin_database_url(settings: Settings) -> str:
    """The owner's URL, for migrations and administrative commands: ``DATABASE_ADMIN_URL``,
    or the embedded PostgreSQL's when neither database URL is set."""
    if settings.database_admin_url:
        return settings.database_admin_url
    if settings.database_url:
        raise ValueError(
            "DATABASE_ADMIN_URL is not set: migrations and administrative commands run as "
            "the database owner, DATABASE_URL is the app's own login (pantherahive_app)"
        )
    return embedded_database_urls(settings.data_path).admin


LOGIN_CHECK_TIMEOUT_SECONDS = 10.0


async def check_database_login(settings: Settings, db: Database) -> None:
    """Refuse to serve (production) or warn (development) when the app's login could
    escape row-level security: the point of a separate login is that it cannot.

    A database that is down or missing at start-up is not a reason to stay down: the app
    starts and answers 503 until it is back (docs: dependency down), unchecked.
    """
    try:
        problems = await asyncio.wait_for(login_problems(db), LOGIN_CHECK_TIMEOUT_SECONDS)
    except Exception as exc:  # any failure to reach the database: the check is skipped
        log.warning("database login not checked at start-up", error=f"{type(exc).__name__}")
        return
    if not problems:
        return
    message = (
        "DATABASE_URL must log in as the least-privilege app role (pantherahive_app): "
        + "; ".join(problems)
    )
    if settings.env == "production":
        raise RuntimeError(message)
    log.warning("database login is not least-privilege", problems=problems, hint=message)


def create_app(
    settings: Settings | None = None,
    *,
    database_url: str | None = None,
    sender: AccountMessageSender | None = None,
    span_exporter: SpanExporter | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    holder: dict[str, Platform] = {}
    tracer: list[TracerProvider] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        platform = build_platform(settings, database_url or resolve_database_url(settings), sender)
        holder["platform"] = platform
        app.state.platform = platform
        try:
            await check_database_login(settings, platform.db)
        except BaseException:
            await platform.db.dispose()
            raise
        install_authentication(
            app,
            Authentication(
                principals=platform.authenticator,
                rate_limits=platform.rate_limits,
                user_rate_item=platform.user_rate_item,
            ),
        )
        if tracer:
            instrument_database(tracer[0])
        await platform.notifications.start()
        bus = None
        if is_embedded(settings.bus_url) and settings.bus_run_consumers:
            bus = EmbeddedRuntime.from_settings(
                platform.db, settings, all_consumers(platform.notifications.consumers)
            )
            await bus.start()
        app.state.bus = bus
        purger = asyncio.create_task(platform.idempotency.purge_forever())
        try:
            yield
        finally:
            purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purger
            if bus is not None:
                await bus.stop()
            await platform.notifications.stop()
            await platform.db.dispose()

    app = FastAPI(
        title="PantheraHive Core Platform",
        version=__version__,
        description=(
            "Multi-tenant backend: tenants and users, projects and tasks, notifications, "
            "audit. Errors are RFC 9457 `application/problem+json`."
        ),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_problem_handlers(app)
    app.include_router(identity_router.public)
    app.include_router(identity_router.users)
    app.include_router(access_tokens_router.mine)
    app.include_router(access_tokens_router.tenant)
    app.include_router(sso_router.settings)
    app.include_router(sso_router.sign_in)
    app.include_router(audit_router.router)
    app.include_router(projects_router.router)
    app.include_router(tasks_router.router)
    app.include_router(notifications_router.router)
    app.include_router(notifications_router.webhooks)
    app.include_router(jwks_router(lambda: holder["platform"].signing_keys))
    _operations_routes(app)
    install_offline_docs(app)

    def principal(scope: Scope) -> tuple[str, str | None] | None:
        for key, value in scope.get("headers", []):
            if key == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer":
                    return None
                personal = parse_personal_token(token.strip())
                if personal is not None:
                    # Keyed by the token (known without a database read): its keys are
                    # its own, apart from its user's sessions'.
                    tenant_id, token_hash = personal
                    return f"pat:{token_hash.hex()}", str(tenant_id)
                try:
                    claims = holder["platform"].identity.tokens.verify(token.strip())
                except Unauthenticated:
                    return None
                return f"user:{claims.user_id}", str(claims.tenant_id)
        # Without a token, keys are the caller's by address: two clients that pick the same
        # key must not see each other's answers. (A replay also needs the same body, which
        # on these routes holds the caller's own secret: password, refresh token, …)
        client = scope.get("client")
        return f"ip:{client[0] if client else 'unknown'}", None

    app.add_middleware(
        UnitOfWorkMiddleware,
        sessions=lambda: holder["platform"].db.sessions,
        idempotency=lambda: holder["platform"].idempotency,
        principal=principal,
        announced_schemas=ANNOUNCED_SCHEMAS,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "If-Match",
                "X-Request-ID",
            ],
            expose_headers=[
                "ETag",
                "X-Request-ID",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
                "Retry-After",
                "Idempotent-Replayed",
            ],
        )
    app.add_middleware(GatewayMiddleware, max_body_bytes=settings.max_body_bytes)
    provider = instrument_app(app, service_name="pantherahive", exporter=span_exporter)
    if provider is not None:
        tracer.append(provider)
        app.state.tracer_provider = provider

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = document_problems(document_scopes(schema, app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _operations_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "Not ready"}})
    async def readyz(request: Request) -> dict[str, str]:
        """The database (and, embedded, the bus, which is the database) answers."""
        try:
            await request.app.state.platform.db.ping()
        except Exception as exc:
            raise ServiceUnavailable("The database is not reachable.") from exc
        return {"status": "ready", "database": "ok", "bus": "ok"}

    @app.get("/asyncapi.json", include_in_schema=False)
    async def asyncapi_json() -> Response:
        """The AsyncAPI 3.0 document of the platform's events (docs/asyncapi.yaml)."""
        return Response(_asyncapi_json(), media_type="application/json")

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def metrics() -> Response:
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@functools.cache
def _asyncapi_json() -> bytes:
    return orjson.dumps(asyncapi())


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (the CLI's ``serve`` uses it for every worker).
    The heap built so far is frozen for the process's life (infra/heap.py)."""
    app = create_app()
    heap.settle()
    return app
