"""Prometheus metrics of notifications (served on ``/metrics`` with the rest): what was
created, what the delivery worker sent, and how many real-time streams are open."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

NOTIFICATIONS_CREATED = Counter(
    "notifications_created_total",
    "Notifications committed, by notification type",
    ["type"],
)
DELIVERY_ATTEMPTS = Counter(
    "notification_delivery_attempts_total",
    "Email/SMS delivery attempts by channel and outcome (sent; retried: failed, will retry; "
    "failed: final)",
    ["channel", "outcome"],
)
WEBHOOK_DELIVERY_ATTEMPTS = Counter(
    "webhook_delivery_attempts_total",
    "Webhook delivery attempts by outcome (sent, retried, failed)",
    ["outcome"],
)
OPEN_STREAMS = Gauge(
    "notification_streams_open",
    "Real-time connections open in this process, by kind (sse, ws)",
    ["kind"],
    multiprocess_mode="livesum",
)
