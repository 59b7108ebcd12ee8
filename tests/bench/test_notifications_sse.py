"""The SSE benchmark's accounting: a notification that never arrived counts as lost and
infinitely late, so a run with losses cannot report a good percentile or meet the target."""

from __future__ import annotations

from bench.notifications_sse import summarize


def test_every_notification_arrived_fast() -> None:
    sent = [float(i) for i in range(200)]
    result = summarize(sent, {i: t + 0.010 for i, t in enumerate(sent)},
                       requested=200, achieved=200)
    assert (result["notifications_lost"], result["met"]) == (0, True)
    assert result["latency_ms"]["p99"] == 10.0


def test_losses_are_counted_and_fail_the_run() -> None:
    sent = [float(i) for i in range(200)]
    arrived = {i: t + 0.010 for i, t in enumerate(sent) if i % 50 != 0}  # 4 never came
    result = summarize(sent, arrived, requested=200, achieved=200)
    assert result["notifications_lost"] == 4
    assert result["notifications_received"] == 196
    assert result["latency_ms"]["p99"] is None  # the slowest 1 % are the lost ones
    assert result["latency_ms"]["max"] is None
    assert result["latency_ms"]["p50"] == 10.0
    assert result["latency_received_only_ms"]["p99"] == 10.0  # for information only
    assert result["met"] is False


def test_a_rate_not_reached_is_not_met() -> None:
    sent = [float(i) for i in range(100)]
    result = summarize(sent, {i: t + 0.001 for i, t in enumerate(sent)},
                       requested=200, achieved=150)
    assert result["met"] is False
