"""``If-Match`` as projects and tasks both apply it: RFC 9110's strong comparison."""

from __future__ import annotations

import pytest

from pantherahive.core.errors import PreconditionFailed, ValidationFailed
from pantherahive.core.etags import MAX_IF_MATCH_LENGTH, check_if_match, etag


@pytest.mark.parametrize(
    "field",
    [None, "*", " * ", '"3"', ' "3" ', '"1", "3"', '"1","3"', 'W/"3", "3"', ', "3" ,',
     '"a,b", "3"'],
)
def test_holds(field: str | None) -> None:
    check_if_match(field, 3, resource="task")


@pytest.mark.parametrize(
    "field",
    ['W/"3"', 'w/"3"', '"2"', "3", "", "nonsense", '"3" "4"', '"3"x', '*, "3"', '"3', "'3'",
     '"03"', '" 3"'],
)
def test_fails_with_the_current_etag(field: str) -> None:
    with pytest.raises(PreconditionFailed) as caught:
        check_if_match(field, 3, resource="task")
    assert caught.value.headers == {"ETag": '"3"'}
    assert "version 3" in caught.value.detail


def test_too_long_is_422() -> None:
    field = ", ".join(['"1"'] * 200)
    assert len(field) > MAX_IF_MATCH_LENGTH
    with pytest.raises(ValidationFailed) as caught:
        check_if_match(field, 1, resource="project")
    assert caught.value.errors[0].field == "If-Match"
    at_the_limit = ", ".join(['"2"'] * 100) + ', "1"'
    assert len(at_the_limit) <= MAX_IF_MATCH_LENGTH
    check_if_match(at_the_limit, 1, resource="project")


def test_etag_is_a_strong_tag_of_the_version() -> None:
    assert etag(7) == '"7"'
