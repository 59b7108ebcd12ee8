"""Field-name conventions: Python's snake_case inside, the API's camelCase outside. The
same function the response schemas use as their alias generator, so an event's
``changes`` keys and a 422's field names always match the documents clients read."""

from __future__ import annotations

from functools import lru_cache

from pydantic.alias_generators import to_camel

camel = lru_cache(maxsize=1024)(to_camel)
