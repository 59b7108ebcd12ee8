"""`pantherahive serve` on a machine with no database: what `make run` does, end to end."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.servers import free_port


def test_serve_starts_embedded_postgres_migrates_serves_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    unset = {"DATABASE_URL", "DATABASE_ADMIN_URL", "REDIS_URL"}
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(
        PANTHERAHIVE_DATA_DIR=str(data_dir),
        PANTHERAHIVE_PORT=str(port),
        PANTHERAHIVE_ARGON2_MEMORY_KIB="1024",
        PANTHERAHIVE_ARGON2_TIME_COST="1",
        PANTHERAHIVE_ARGON2_PARALLELISM="1",
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            # two workers on a fresh data directory: they must share one generated secret
            [sys.executable, "-m", "pantherahive.cli", "serve", "--workers", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, log_path.read_text()
                time.sleep(0.5)
            else:
                raise AssertionError("not ready in time:\n" + log_path.read_text())
            slug = "serve-check"
            created = httpx.post(
                f"{base}/v1/tenants",
                json={
                    "name": "S",
                    "slug": slug,
                    "admin": {"username": "root", "password": "serve-pass-1"},
                },
                timeout=30,
            )
            assert created.status_code == 201, created.text
            # whichever worker answers, it accepts the token the other one signed
            me = {"Authorization": f"Bearer {created.json()['accessToken']}"}
            for _ in range(12):
                with httpx.Client(timeout=10) as fresh:  # a new connection each time
                    assert fresh.get(f"{base}/v1/users/me", headers=me).status_code == 200
            docs = httpx.get(f"{base}/openapi.json", timeout=10).json()
            assert "/v1/users/me" in docs["paths"]
        finally:
            proc.send_signal(signal.SIGTERM)  # what systemd and container runtimes send
            proc.wait(60)

    output = log_path.read_text()
    assert f"PantheraHive is starting at http://127.0.0.1:{port}" in output
    assert "/docs" in output
    key = data_dir / "secrets" / "jwt.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().strip() not in output
    # the app's database login got a generated password, kept like the JWT key
    app_key = data_dir / "secrets" / "database.key"
    assert stat.S_IMODE(app_key.stat().st_mode) == 0o600
    assert app_key.read_text().strip() not in output
    # the embedded server went down with the platform
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
