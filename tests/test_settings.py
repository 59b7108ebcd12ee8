"""Settings: the generated JWT secret is created once, even by processes racing for it;
production refuses unsafe settings, naming each."""

from __future__ import annotations

import multiprocessing
import os
import re
import stat
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pantherahive.settings import Settings, load_or_create_secret
from tests.support.races import race

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
    answers, exit_codes = race(
        _race, str(tmp_path), processes=PROCESSES, preload=["pantherahive.settings", __name__]
    )
    assert exit_codes == [0] * PROCESSES
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


# ---- production refuses unsafe settings, each error naming the setting --------------------

STRONG = "a3f9c2e7b1d84f06e5c9a27b3d1f8e40c6b2a9d7e3f1c5b8"


def production(tmp_path: Path, **values: Any) -> Settings:
    base: dict[str, Any] = {
        "env": "production", "data_dir": tmp_path, "jwt_secret": STRONG,
        "signing_keys_dir": tmp_path / "keys",
    }
    return Settings(_env_file=None, **{**base, **values})  # type: ignore[call-arg]


def test_a_sound_production_configuration_starts(tmp_path: Path) -> None:
    settings = production(
        tmp_path, workers=4, redis_url="redis://cache:6379/0",
        database_url="postgresql://pantherahive_app:a@db/ph",
        database_admin_url="postgresql://owner:b@db/ph",
    )
    assert settings.resolved_jwt_secret() == STRONG


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"jwt_secret": None}, "PANTHERAHIVE_JWT_SECRET must be set in production"),
        ({"jwt_secret": "k" * 31}, "PANTHERAHIVE_JWT_SECRET must be at least 32"),
        ({"jwt_secret": "change-me-" + STRONG}, "PANTHERAHIVE_JWT_SECRET looks like a placeholder"),
        ({"jwt_secret": "my-production-secret-for-the-api"}, "PANTHERAHIVE_JWT_SECRET looks like"),
        ({"jwt_secret": "ab" * 20}, "PANTHERAHIVE_JWT_SECRET looks like a placeholder"),
        ({"webhook_allow_private_addresses": True},
         "PANTHERAHIVE_WEBHOOK_ALLOW_PRIVATE_ADDRESSES"),
        ({"workers": 2}, "PANTHERAHIVE_WORKERS=2 needs REDIS_URL"),
        ({"cors_origins": "*"}, "PANTHERAHIVE_CORS_ORIGINS"),
        ({"database_url": "postgresql://owner:x@db/ph",
          "database_admin_url": "postgresql://owner:x@db/ph"},
         "DATABASE_URL and DATABASE_ADMIN_URL may not be the same"),
    ],
)
def test_production_refuses_each_unsafe_setting_by_name(
    tmp_path: Path, values: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(named)):
        production(tmp_path, **values)


def test_development_keeps_the_conveniences(tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=tmp_path, workers=4, webhook_allow_private_addresses=True,
        cors_origins="*",
    )
    assert len(settings.resolved_jwt_secret()) >= 32  # generated into the data directory


def test_several_workers_without_redis_are_fine_when_rate_limits_are_off(tmp_path: Path) -> None:
    settings = production(tmp_path, workers=4, rate_limit_enabled=False)
    settings.refuse_unshared_rate_limits(8)


def test_serve_workers_option_is_held_to_the_same_rule(tmp_path: Path) -> None:
    """``serve --workers N`` overrides the setting: serve asks the same question."""
    settings = production(tmp_path)
    settings.refuse_unshared_rate_limits(1)
    with pytest.raises(ValueError, match="PANTHERAHIVE_WORKERS=3 needs REDIS_URL"):
        settings.refuse_unshared_rate_limits(3)
