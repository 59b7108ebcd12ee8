"""The API process's garbage-collector policy (infra/heap.py): the heap built before the
first request is frozen, and full collections are considered ten times less often."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from pantherahive.infra import heap
from pantherahive.main import app_from_env
from pantherahive.settings import get_settings


@pytest.fixture
def gc_restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("gc_restored")
def test_settle_freezes_what_exists_and_makes_full_collections_rarer() -> None:
    young, middle, _ = gc.get_threshold()
    kept = [[n] for n in range(1000)]  # tracked objects that exist before settling
    heap.settle()
    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold() == (young, middle, heap.FULL_COLLECTION_EVERY)
    # Later objects are collected as usual.
    later: list[object] = []
    later.append(later)
    del later
    assert gc.collect() >= 1


@pytest.mark.usefixtures("gc_restored")
def test_the_served_app_settles_the_heap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PANTHERAHIVE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PANTHERAHIVE_LOG_LEVEL", "warning")  # as the test settings
    get_settings.cache_clear()
    try:
        gc.unfreeze()
        app_from_env()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[2] == heap.FULL_COLLECTION_EVERY
    finally:
        get_settings.cache_clear()
