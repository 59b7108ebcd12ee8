"""Events of types a test makes up on the spot.

Bus tests invent a fresh event type per run (so no consumer of another test, nor the
shared app's, ever wants it) and care only about the envelope, not about a payload
schema. ``adhoc`` gives them an ``EventData`` instance of such a type without declaring a
class: it is not registered (it is no part of the platform's contract, nor of the AsyncAPI
document), and its data is whatever the test passes.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

from pantherahive.core.events import ANY_SUBJECT, EventData


class _Adhoc(EventData):
    model_config = ConfigDict(extra="allow")


_CLASSES: dict[str, type[_Adhoc]] = {}


def adhoc(event_type: str, data: dict[str, Any] | None = None) -> EventData:
    """An event of ``event_type`` (version 1) carrying ``data``; ``emit`` needs its
    ``subject_type``."""
    cls = _CLASSES.get(event_type)
    if cls is None:
        namespace = {"TYPE": event_type, "VERSION": 1, "SUBJECT": ANY_SUBJECT}
        cls = _CLASSES[event_type] = type(f"Adhoc[{event_type}]", (_Adhoc,), namespace)
    return cls(**(data or {}))
