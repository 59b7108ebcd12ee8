"""OpenTelemetry traces, switched on only when an exporter is configured.

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set, every
request and every SQL statement becomes a span exported over OTLP/HTTP; the standard
``OTEL_*`` variables (headers, service name, sampler) apply. Without it nothing is
instrumented and requests pay nothing.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def tracing_requested() -> bool:
    return any(os.environ.get(name) for name in _ENDPOINT_VARIABLES)


def instrument_app(
    app: FastAPI, *, service_name: str, exporter: SpanExporter | None = None
) -> TracerProvider | None:
    """Trace HTTP requests; returns the provider (None when tracing is off)."""
    if exporter is None:
        if not tracing_requested():
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    name = os.environ.get("OTEL_SERVICE_NAME", service_name)
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, excluded_urls="healthz,readyz,metrics"
    )
    return provider


def instrument_database(provider: TracerProvider) -> None:
    """Spans for every asyncpg query (the SQLAlchemy instrumentation predates SQLAlchemy 2.1)."""
    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if not instrumentor.is_instrumented_by_opentelemetry:
        kwargs: dict[str, Any] = {"tracer_provider": provider}
        instrumentor.instrument(**kwargs)
