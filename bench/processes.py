"""Server processes of the run (the platform and the ceiling app), and CPU accounting."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, path: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                response = httpx.get(self.base_url + path, timeout=2.0)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout}s ({last}):\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _spawn(name: str, argv: list[str], env: dict[str, str], cwd: Path, port: int) -> Server:
    log_path = cwd / f"{name}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    log.close()
    return Server(name, process, port, log_path)


def pantherahive_command() -> list[str]:
    script = Path(sys.executable).parent / "pantherahive"
    if script.exists():
        return [str(script)]
    found = shutil.which("pantherahive")
    if found:
        return [found]
    return [sys.executable, "-c", "from pantherahive.cli.main import app; app()"]


def start_platform(
    *, database_url: str, jwt_secret: str, work_dir: Path, workers: int, extra_env: dict[str, str]
) -> Server:
    """``pantherahive serve --no-migrate`` with production-like settings, in its own process."""
    port = free_port()
    data_dir = work_dir / "platform"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PANTHERAHIVE_HOST": "127.0.0.1",
        "PANTHERAHIVE_PORT": str(port),
        "PANTHERAHIVE_ENV": "production",
        "PANTHERAHIVE_JWT_SECRET": jwt_secret,
        "PANTHERAHIVE_LOG_LEVEL": "warning",
        "PANTHERAHIVE_RATE_LIMIT_ENABLED": "false",
        "PANTHERAHIVE_WORKERS": str(workers),
        "PANTHERAHIVE_DATA_DIR": str(data_dir),
        "PANTHERAHIVE_SIGNING_KEYS_DIR": str(data_dir / "keys"),
        **extra_env,
    }
    # Production refuses to start without a signing key: make one, as an operator would.
    if not (data_dir / "keys" / "keys.json").exists():
        subprocess.run(
            [*pantherahive_command(), "keys", "add", "--activate"],
            env=env, cwd=data_dir, check=True, stdout=subprocess.DEVNULL,
        )
    # cwd is the run's own directory, so a developer's ./.env cannot change the settings.
    return _spawn(
        "platform", [*pantherahive_command(), "serve", "--no-migrate"], env, data_dir, port
    )


def start_ceiling(
    *, database_url: str, work_dir: Path, workers: int, env: dict[str, str]
) -> Server:
    port = free_port()
    run_dir = work_dir / "ceiling"
    run_dir.mkdir(parents=True, exist_ok=True)
    bench_root = Path(__file__).resolve().parent.parent
    full_env = {
        **os.environ,
        **env,
        "BENCH_CEILING_DATABASE_URL": database_url,
        "BENCH_CEILING_PORT": str(port),
        "BENCH_CEILING_WORKERS": str(workers),
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(bench_root), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    return _spawn("ceiling", [sys.executable, "-m", "bench.ceiling"], full_env, run_dir, port)


def _stat(pid: int) -> tuple[int, float] | None:
    """(ppid, cpu seconds) of a process, from /proc."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu_seconds(root: int | None) -> float | None:
    """CPU time used so far by a process and all its live descendants (Linux only)."""
    if root is None or not Path("/proc").is_dir():
        return None
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                stats[int(entry.name)] = stat
    if root not in stats:
        return None
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += stats[pid][1]
        todo.extend(children.get(pid, []))
    return total


def wait_idle(pids: list[int | None], *, quiet_share: float = 0.05, timeout: float = 30.0) -> None:
    """Wait until the servers' background work (e.g. event consumers) has drained."""
    deadline = time.monotonic() + timeout
    previous = [tree_cpu_seconds(pid) for pid in pids]
    while time.monotonic() < deadline:
        time.sleep(0.5)
        current = [tree_cpu_seconds(pid) for pid in pids]
        busy = [
            (b - a) / 0.5
            for a, b in zip(previous, current, strict=True)
            if a is not None and b is not None
        ]
        previous = current
        if all(share < quiet_share for share in busy):
            return
