"""docs/events.md and the AsyncAPI document name the same events: every event type the
page names is a message of the document, and every declared event class has its row in
the page's catalogue."""

from __future__ import annotations

import re
from pathlib import Path

from pantherahive.consumers import asyncapi, published_events

EVENTS_MD = Path(__file__).resolve().parents[2] / "docs" / "events.md"
# A backticked `noun.verb_past`; whether the noun is an event's is decided below.
DOTTED = re.compile(r"`([a-z]+)\.([a-z_]+)`")
CATALOGUE_ROW = re.compile(r"^\| `([a-z_.]+)` \| (\d+) \| ", re.MULTILINE)


def _text() -> str:
    return EVENTS_MD.read_text(encoding="utf-8")


def test_every_event_type_the_page_names_is_a_message_of_the_document() -> None:
    messages = asyncapi()["components"]["messages"].values()
    documented = {message["payload"]["allOf"][1]["properties"]["type"]["const"]
                  for message in messages}
    nouns = {event_type.split(".")[0] for event_type in documented}
    named = {f"{noun}.{verb}" for noun, verb in DOTTED.findall(_text()) if noun in nouns}
    named |= {event_type for event_type, _ in CATALOGUE_ROW.findall(_text())}
    assert named, "docs/events.md names no event type"
    assert sorted(named - documented) == [], "named in docs/events.md, not in the document"


def test_every_declared_event_class_has_its_row_in_the_catalogue() -> None:
    rows = {(event_type, int(version)) for event_type, version in CATALOGUE_ROW.findall(_text())}
    declared = {(cls.TYPE, cls.VERSION) for cls in published_events()}
    assert sorted(declared - rows) == [], (
        "declared events missing from the catalogue of docs/events.md (type | version | …)"
    )
    assert sorted(rows - declared) == [], "catalogue rows of docs/events.md no class declares"
