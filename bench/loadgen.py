"""The load generator: a separate process that drives one workload against one server.

Run as ``python -m bench.loadgen SPEC.json``; prints one JSON result on stdout.

It is deliberately small and cheap: raw HTTP/1.1 over persistent loopback connections
(asyncio + uvloop when installed, responses parsed by ``httptools``, the parser uvicorn
itself uses), a fixed number of connections each sending its next request as soon as the
previous answer arrived (closed loop), a warm-up that is not measured, then a fixed
measuring window. Every request that *starts* inside the window is measured, so the run
is bounded by ``warmup + duration + timeout``.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httptools

from bench.workloads import Request, Response, Workload, build_workload

REQUEST_TIMEOUT_S = 30.0
MAX_ERROR_SAMPLES = 5


class ConnectionLost(Exception):
    pass


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Response] | None = None
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.keep_alive = True
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionLost("connection closed by the server"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        response = Response(self.parser.get_status_code(), self.headers, b"".join(self.body))
        self.headers, self.body = {}, []
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(response)

    def _fail(self, exc: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    async def send(self, raw: bytes) -> Response:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.waiter = waiter = loop.create_future()
        timer = loop.call_later(REQUEST_TIMEOUT_S, self._fail, TimeoutError("no answer"))
        self.transport.write(raw)
        try:
            return await waiter
        finally:
            timer.cancel()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass
class Client:
    """A connection that reconnects when the server closes it."""

    host: str
    port: int
    conn: _Connection | None = None
    host_header: bytes = b""
    completed: int = 0

    def __post_init__(self) -> None:
        self.host_header = f"{self.host}:{self.port}".encode()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_Connection, self.host, self.port)
        return protocol

    def encode(self, request: Request) -> bytes:
        lines = [f"{request.method} {request.path} HTTP/1.1".encode(), b"Host: " + self.host_header]
        for name, value in request.headers.items():
            lines.append(f"{name}: {value}".encode("latin-1"))
        body = request.body or b""
        if request.body is not None:
            lines.append(b"Content-Type: application/json")
            lines.append(b"Content-Length: " + str(len(body)).encode())
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    async def send(self, request: Request) -> Response:
        if self.conn is None or self.conn.closed:
            self.conn = await self._connect()
        conn = self.conn
        try:
            response = await conn.send(self.encode(request))
        except BaseException:
            conn.close()
            self.conn = None
            raise
        if not conn.keep_alive:
            conn.close()
            self.conn = None
        self.completed += 1
        return response

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class Tally:
    latencies_ns: list[int] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(what[:300])


def percentile(sorted_values: list[int], fraction: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1] / 1e6


async def _worker(
    client: Client,
    workload: Workload,
    index: int,
    tally: Tally,
    measure_from: float,
    end: float,
) -> None:
    state = workload.connection(index)
    clock = time.perf_counter
    while True:
        started = clock()
        if started >= end:
            return
        request = state.next_request()
        try:
            response = await client.send(request)
        except Exception as exc:
            if started >= measure_from:
                tally.error(f"{request.method} {request.path}: {type(exc).__name__}: {exc}")
            await asyncio.sleep(0.01)
            continue
        elapsed_ns = int((clock() - started) * 1e9)
        ok = state.handle(request, response)
        if started < measure_from:
            continue
        key = str(response.status)
        tally.statuses[key] = tally.statuses.get(key, 0) + 1
        tally.latencies_ns.append(elapsed_ns)
        if not ok:
            tally.error(
                f"{request.method} {request.path} -> {response.status}: "
                f"{response.body[:200].decode('utf-8', 'replace')}"
            )


async def _prepare(client: Client, workload: Workload, index: int) -> None:
    state = workload.connection(index)
    for request in state.preparation():
        response = await client.send(request)
        if not state.prepared(request, response):
            raise RuntimeError(
                f"preparation failed: {request.method} {request.path} -> {response.status} "
                f"{response.body[:200]!r}"
            )


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    workload = build_workload(spec["workload"], spec["context"])
    connections = int(spec["connections"])
    clients = [Client(spec["host"], int(spec["port"])) for _ in range(connections)]
    try:
        await asyncio.gather(*(c.send(workload.probe()) for c in clients))
        await asyncio.gather(*(_prepare(c, workload, i) for i, c in enumerate(clients)))
        usage_before = resource.getrusage(resource.RUSAGE_SELF)
        warmup, duration = float(spec["warmup"]), float(spec["duration"])
        start = time.perf_counter()
        measure_from, end = start + warmup, start + warmup + duration
        tally = Tally()
        await asyncio.gather(
            *(_worker(c, workload, i, tally, measure_from, end) for i, c in enumerate(clients))
        )
        finished = time.perf_counter()
        usage_after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        for client in clients:
            client.close()
    window = max(finished, end) - measure_from
    latencies = sorted(tally.latencies_ns)
    count = len(latencies)
    cpu = (usage_after.ru_utime + usage_after.ru_stime) - (
        usage_before.ru_utime + usage_before.ru_stime
    )
    return {
        "workload": spec["workload"],
        "connections": connections,
        "duration_s": round(window, 3),
        "requests": count,
        "errors": tally.errors,
        "error_samples": tally.error_samples,
        "statuses": tally.statuses,
        "rps": round(count / duration, 1) if duration else 0.0,
        "latency_ms": {
            "mean": round(sum(latencies) / count / 1e6, 3) if count else 0.0,
            "p50": round(percentile(latencies, 0.50), 3),
            "p90": round(percentile(latencies, 0.90), 3),
            "p99": round(percentile(latencies, 0.99), 3),
            "max": round(latencies[-1] / 1e6, 3) if count else 0.0,
        },
        "loadgen_cpu_s": round(cpu, 2),
        # Everything answered during the process's life (probe, preparation, warm-up and
        # window): the denominator of the servers' CPU per request.
        "requests_total": sum(c.completed for c in clients),
    }


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        runner = asyncio.run
    result = runner(run(spec))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
