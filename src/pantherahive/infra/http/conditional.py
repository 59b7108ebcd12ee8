"""The ``If-Match`` request header as routes declare it; the rule itself is
``pantherahive.core.etags.check_if_match``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header

from pantherahive.core.etags import MAX_IF_MATCH_LENGTH

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=MAX_IF_MATCH_LENGTH,
        description=(
            'The ETag from a previous read (`"<version>"`), a comma-separated list of them, '
            "or `*`. Compared strongly: a weak tag (`W/\"3\"`) never matches. A mismatch is "
            "412 with the current `ETag`; without the header the last write wins."
        ),
    ),
]
