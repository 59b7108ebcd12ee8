"""The hash recipes printed in docs/audit.md reproduce the stored hashes exactly — floats,
unicode, control characters and nested data included — when run as printed, on documents
read back from the export the way a third party would (``json.loads``)."""

from __future__ import annotations

import json
import math
import random
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import orjson
import pytest

from pantherahive.domains.audit.handlers import CONSUMERS
from pantherahive.infra.bus.embedded import drain
from tests.conftest import TenantHandle
from tests.domains.audit.helpers import app_db, make_event, record, record_batch

DOC = Path(__file__).resolve().parents[3] / "docs" / "audit.md"

TRICKY: list[dict[str, Any]] = [
    {"ratio": 1e-7, "small": 1.5e-5, "tiny": -2.5e-8, "big": 1e16, "whole": 123.0,
     "int": 42, "negative_zero": -0.0, "tenth": 0.1, "precise": 0.30000000000000004},
    {"name": "Zürich 東京 🐆 \u2028 \x7f", "ctrl": "tab\there\nnew\u0001\"quoted\"\\",
     "nested": {"b": [1, 2.5e-7, {"z": None, "a": True}], "a": "é", "A": False},
     "keys": {"b": 1, "a": 2, "B": 3, "é": 4, "Z": 5, "\uffff": 6, "🐆": 7}},
    {"changes": {"price": [0.1, 1e-7], "title": ["ancien", "nouveau ✓"]}},
    # jsonb keeps numbers exact: 1.5e300 comes back as a 301-digit integer, beyond 64 bits.
    {"beyond_64_bits": 2**70, "huge": 1.5e300, "with_a_float": 1e-7},
]


def recipes() -> list[dict[str, Any]]:
    """Each ```python block of the hash chain section, executed as printed."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## The hash chain"):text.index("### How seq stays gap-free")]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2, "docs/audit.md should print the orjson and the stdlib recipe"
    namespaces = []
    for block in blocks:
        namespace: dict[str, Any] = {}
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - our own docs
        namespaces.append(namespace)
    return namespaces


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "one-batch"])
async def test_the_documented_recipes_reproduce_stored_hashes(
    client: httpx.AsyncClient, tenant: TenantHandle, batched: bool
) -> None:
    tenant_id = UUID(tenant.id)
    await drain(app_db(client), CONSUMERS)
    events = [make_event(tenant_id, "thing.updated", data=data) for data in TRICKY]
    events.append(make_event(tenant_id, "thing.created", data=TRICKY[0]))
    await (record_batch if batched else record)(app_db(client), *events)

    response = await client.get("/v1/audit-events/export", headers=tenant.admin.headers)
    assert response.status_code == 200
    # Split on \n only: U+2028 in a string is not a line break of NDJSON.
    documents = [json.loads(line) for line in response.content.split(b"\n") if line]
    assert len(documents) >= len(events)
    ours = {str(event.id) for event in events}
    assert ours <= {doc["id"] for doc in documents}

    for namespace in recipes():
        audit_hash: Callable[[str, dict[str, Any]], str] = namespace["audit_hash"]
        prev = "0" * 64
        for doc in documents:  # the whole chain, from seq 1
            assert doc["prevHash"] == prev
            assert audit_hash(prev, doc) == doc["hash"], doc["seq"]
            prev = doc["hash"]

    # What the docs used to print is not exact: 1e-7 is written 1e-07 by json.dumps.
    doc = next(d for d in documents if d["id"] == str(events[0].id))
    fields = {name: doc.get(name) for name in recipes()[0]["HASHED"]}
    stdlib = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert stdlib.encode() != recipes()[0]["canonical"](doc)


@pytest.mark.parametrize("seed", [1, 2])
def test_the_documented_number_form_is_what_orjson_writes(seed: int) -> None:
    number = recipes()[1]["number"]
    rng = random.Random(seed)
    values = [1e-7, 1e-5, 1.5e-5, 9.99e-6, 1e16, 9.999999999999998e15, 123.0, 0.1, -0.0,
              0.0, 5e-324, 1.7976931348623157e308, 2.2250738585072014e-308]
    values += [float(f"{m}e{e}") for e in range(-320, 300) for m in (1, 1.5, 9.875)]
    while len(values) < 150_000:
        value = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        if math.isfinite(value):
            values.append(value)
    wrong = [v for v in values if number(v) != orjson.dumps(v).decode()]
    assert wrong == []
