"""Settings: the generated JWT secret is created once, even by processes racing for it."""

from __future__ import annotations

import multiprocessing
import os
import stat
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from pantherahive.settings import Settings, load_or_create_secret

PROCESSES = 8
DIRECTORIES = 150  # fresh data directories raced for, one after another, by every process


def _race(root: str, barrier: Barrier, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    barrier.wait()
    got: list[str] = []
    try:
        for i in range(DIRECTORIES):
            got.append(load_or_create_secret(Path(root) / str(i) / "secrets" / "jwt.key"))
    except BaseException as exc:  # report it: an exception is what this test hunts
        results.put(("error", repr(exc)))
        return
    results.put(("ok", got))


def test_processes_racing_on_fresh_directories_all_get_the_same_secret(tmp_path: Path) -> None:
    """What ``serve --workers N`` does on a first start: N processes, no secret yet."""
    # forkserver: a clean process (no inherited threads) that forks the racers cheaply
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["pantherahive.settings", __name__])
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    workers = [
        context.Process(target=_race, args=(str(tmp_path), barrier, results))
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    answers = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0] * PROCESSES
    errors = [value for kind, value in answers if kind != "ok"]
    assert not errors, errors
    for i in range(DIRECTORIES):
        path = tmp_path / str(i) / "secrets" / "jwt.key"
        kept = {got[i] for _, got in answers}
        assert kept == {path.read_text(encoding="utf-8").strip()}, i
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert [p.name for p in path.parent.iterdir()] == ["jwt.key"]  # no temporary left


def test_an_existing_secret_is_kept_and_a_configured_one_wins(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    first = settings.resolved_jwt_secret()
    assert len(first) >= 32
    again = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    assert again.resolved_jwt_secret() == first
    configured = Settings(_env_file=None, data_dir=tmp_path, jwt_secret="c" * 40)  # type: ignore[call-arg]
    assert configured.resolved_jwt_secret() == "c" * 40


def test_an_empty_secret_file_is_refused_not_used(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "jwt.key"
    path.parent.mkdir(parents=True)
    path.write_text("\n", encoding="utf-8")
    os.chmod(path, 0o600)
    with pytest.raises(ValueError, match="empty"):
        load_or_create_secret(path)
