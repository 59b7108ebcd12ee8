"""``pantherahive dead-letters list|replay`` against the real database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from pantherahive.cli.main import app
from pantherahive.infra.bus.delivery import RetryPolicy
from pantherahive.infra.bus.embedded import drain
from pantherahive.infra.db.engine import Database
from pantherahive.settings import get_settings
from tests.infra.bus.conftest import Effects, Emit, Recorder
from tests.support.servers import set_database_env


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    set_database_env(monkeypatch, database_url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
async def parked(
    app_db: Database, effects: Effects, emit_events: Emit
) -> tuple[str, uuid.UUID]:
    broken = Recorder(fail=lambda _e, _a: True)
    [event_id] = await emit_events(uuid.uuid4(), 1, broken.happened)
    await drain(app_db, [broken.spec], retry=RetryPolicy(max_attempts=2, base_delay=0))
    return broken.name, event_id


def test_dead_letters_list_shows_the_parked_event_and_replay_reports_failures(
    cli_env: None, parked: tuple[str, uuid.UUID]
) -> None:
    consumer, event_id = parked
    runner = CliRunner()
    listed = runner.invoke(app, ["dead-letters", "list", "--consumer", consumer])
    assert listed.exit_code == 0, listed.output
    [line] = [ln for ln in listed.output.splitlines() if str(event_id) in ln]
    fields = line.split("\t")
    assert fields[1] == consumer
    assert "attempts=2" in line
    assert "RuntimeError: boom" in line

    # The test consumer is not one of the platform's: the replay says so and fails.
    replayed = runner.invoke(app, ["dead-letters", "replay", fields[0]])
    assert replayed.exit_code == 1
    assert "unknown consumer" in replayed.output
    unknown = runner.invoke(app, ["dead-letters", "replay", "999999999"])
    assert unknown.exit_code == 1
    assert "not found" in unknown.output
