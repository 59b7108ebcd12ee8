"""Prometheus metrics of the event backbone (served on ``/metrics`` with the rest)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CONSUMER_LAG = Gauge(
    "outbox_consumer_lag_events",
    "Events a consumer has not handled yet: outbox rows (embedded, capped at 100000) or "
    "unacknowledged broker messages (NATS, Kafka)",
    ["consumer"],
    multiprocess_mode="livemax",
)
HANDLER_ERRORS = Counter(
    "bus_handler_errors_total", "Handler attempts that raised, by consumer", ["consumer"]
)
EVENTS_CONSUMED = Counter(
    "bus_events_consumed_total",
    "Events delivered to a consumer, by outcome (handled, duplicate, parked)",
    ["consumer", "outcome"],
)
EVENTS_PUBLISHED = Counter(
    "bus_events_published_total", "Outbox events the relay published, by transport", ["transport"]
)
