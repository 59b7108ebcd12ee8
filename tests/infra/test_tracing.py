"""Traces appear for requests and SQL when an exporter is configured."""

from __future__ import annotations

from pathlib import Path

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pantherahive.infra.tracing import tracing_requested
from pantherahive.main import create_app
from tests.conftest import make_settings
from tests.support.db import app_database_url


async def test_request_and_sql_spans_are_exported(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    app = create_app(
        make_settings(tmp_path), database_url=app_database_url(), span_exporter=exporter
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post(
                "/v1/auth/login", json={"tenant": "nobody", "login": "x", "password": "y"}
            )
        app.state.tracer_provider.force_flush()
    assert response.status_code == 401
    names = [span.name for span in exporter.get_finished_spans()]
    assert any("/v1/auth/login" in name for name in names), names
    assert any(name.startswith(("SELECT", "BEGIN")) for name in names), names


def test_tracing_is_off_without_an_endpoint(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert not tracing_requested()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert tracing_requested()
