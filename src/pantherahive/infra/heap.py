"""The API process's garbage-collector policy.

A full (generation 2) collection walks every tracked object of the process. In the API
process that is ~200 000 objects before the first request — modules, classes, the
SQLAlchemy metadata, the Pydantic models, the routes — plus what the open connections
hold, and on the 2-core benchmark machine under load each full pass stopped the event loop
for 120-300 ms, every 4-10 s at 200 events/s (the consumers' objects that live across a
database round trip survive the young collections, and promotions start full passes).
Every event and request in flight waited: that pause, not the consumers, was the p99 of
``bench/notifications_sse.py`` (docs/notifications.md).

So, once the application is built: collect, then ``gc.freeze()`` what is left — it lives
as long as the process, and no collection needs to walk it again — and consider a full
collection only every 100 collections of generation 1 instead of 10 (CPython still waits
until a quarter of the long-lived objects are new). Garbage cycles among long-lived objects
are reclaimed less often; memory stays bounded by that interval.
"""

from __future__ import annotations

import gc

# Generation-1 collections between two full collections (CPython's default: 10).
FULL_COLLECTION_EVERY = 100


def settle() -> None:
    """Freeze the heap built so far and make full collections rarer (process-wide)."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
