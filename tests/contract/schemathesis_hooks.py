"""Schemathesis hooks for the full contract run (loaded through ``SCHEMATHESIS_HOOKS``).

What the run does differently, each deliberate exception with its reason beside it:

* the run never deactivates or demotes its own user, nor ends its own session (that
  revokes the run's token, and every later request is a 401 that tests nothing): a case
  aimed at it is re-aimed at an unknown user or session id, which still exercises the
  route (404), and ``DELETE /v1/users/me/sessions`` always keeps the caller's session
  (``others=true``);
* "deleted resource still available" (ST301) is dropped for users only: deleting a user
  deactivates it (contract), so it is still there, ``status: INACTIVE``;
* "schema-valid request rejected" (ST202) is dropped only when the refusal is a rule the
  contract states and JSON Schema cannot express: a relation between values, or state on
  the server. Each is matched by the problem's ``type`` and, where there is one, the field
  its ``errors`` name, never by status alone.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import schemathesis
from schemathesis.core.failures import Failure
from schemathesis.openapi.checks import RejectedPositiveData, UseAfterFree

PROBLEMS = "https://docs.pantherahive.dev/problems/"

# (problem type slug, field named in `errors` or None for any): why it is not a defect.
SEMANTIC_REFUSALS: dict[tuple[str, str | None], str] = {
    ("validation-error", "cursor"): (
        "a cursor is opaque and issued by the server; an invented one is an invalid "
        "filter value, 422 by the contract"
    ),
    ("validation-error", "Idempotency-Key"): (
        "the same Idempotency-Key with another body is 422 by the contract; the run "
        "reuses its generated keys across operations"
    ),
    ("validation-error", "ownerId"): (
        "ownerId must be an ACTIVE user of the tenant (contract); a random UUID is not"
    ),
    ("ineligible-assignee", None): (
        "an assignee must be a member of the project (contract); a random UUID is not"
    ),
    ("precondition-failed", None): (
        "If-Match must carry the resource's current ETag (contract: 412); a generated "
        "one is stale"
    ),
    ("validation-error", "currentPassword"): "the caller's password is not guessable",
    ("validation-error", "types"): (
        "account-security notifications cannot be switched off in-app or by email "
        "(a rule on pairs of values)"
    ),
    ("validation-error", "url"): (
        "a webhook URL must resolve to a public address (contract); generated hosts "
        "do not resolve"
    ),
    ("validation-error", "toSeq"): "toSeq below fromSeq: a relation between two values",
    ("validation-error", "endDate"): "endDate before startDate: a relation (contract: 422)",
    ("validation-error", "expiresAt"): (
        "a personal access token's expiresAt must be in the future: a relation to the "
        "server's clock"
    ),
    ("validation-error", "issuer"): (
        "an SSO issuer must be https unless the platform allows http issuers (a setting)"
    ),
    ("validation-error", "clientSecret"): (
        "the first SSO configuration of a tenant needs a client secret (state on the server)"
    ),
    ("validation-error", "code"): (
        "a TOTP code is right only for the enrolled secret and the current 30 seconds"
    ),
    ("validation-error", "recoveryCode"): "recovery codes are issued by the server, secret",
    ("validation-error", "password"): "the caller's password is not guessable",
    ("no-pending-enrollment", None): (
        "confirming TOTP needs an enrollment started first (state on the server: 409)"
    ),
    ("invalid-token", None): (
        "an email or password-reset token is single-use and issued by the server; an "
        "invented one is refused"
    ),
}
_IDEMPOTENCY_DETAIL = "This Idempotency-Key was used with a different request body."


def _problem(response: Any) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except (ValueError, TypeError):
        return {}
    return body if isinstance(body, dict) else {}


# email-validator refuses special-use and reserved domains (RFC 6761: .test, .invalid, …),
# which JSON Schema's `format: email` cannot say; the generator picks them.
_RESERVED_DOMAIN = "special-use or reserved name"


def refusal_reason(problem: dict[str, Any]) -> str | None:
    kind = str(problem.get("type", "")).removeprefix(PROBLEMS)
    errors = [e for e in problem.get("errors") or [] if isinstance(e, dict)]
    if errors and all(_RESERVED_DOMAIN in str(e.get("message")) for e in errors):
        return "an email address at a special-use domain (RFC 6761) is refused"
    if problem.get("detail") == _IDEMPOTENCY_DETAIL:
        return SEMANTIC_REFUSALS[("validation-error", "Idempotency-Key")]
    fields = {str(e.get("field")) for e in problem.get("errors") or [] if isinstance(e, dict)}
    if (kind, None) in SEMANTIC_REFUSALS:
        return SEMANTIC_REFUSALS[(kind, None)]
    # a field matches its own entry or its parent's: "types.account.welcome.email" → "types"
    reasons = [
        next(
            (why for (k, name), why in SEMANTIC_REFUSALS.items()
             if k == kind and name and (f == name or f.startswith(name + "."))),
            None,
        )
        for f in fields
    ]
    if fields and all(reasons):
        return reasons[0]
    return None


@schemathesis.hook
def filter_failure(
    context: schemathesis.HookContext, failure: Failure, case: Any, response: Any
) -> bool:
    """Keep every failure but a schema-valid request refused for a stated semantic rule, and
    a deactivated user that is still readable."""
    if isinstance(failure, RejectedPositiveData):
        return refusal_reason(_problem(response)) is None
    if isinstance(failure, UseAfterFree) and failure.free.startswith("DELETE /v1/users/"):
        # The contract: DELETE /v1/users/{userId} deactivates (status INACTIVE, tokens
        # revoked) and keeps the user's history, so the user stays readable as INACTIVE.
        return _problem(response).get("status") != "INACTIVE"
    return True


_SELF_HARM = {
    ("PATCH", "/v1/users/{userId}"),
    ("DELETE", "/v1/users/{userId}"),
    ("DELETE", "/v1/users/{userId}/sessions"),
}


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: Any, kwargs: dict[str, Any]) -> None:
    own = os.environ.get("PANTHERAHIVE_ST_USER_ID")
    own_session = os.environ.get("PANTHERAHIVE_ST_SESSION_ID")
    operation = case.operation
    endpoint = (operation.method.upper(), operation.path)
    path_parameters = case.path_parameters or {}
    if own and endpoint in _SELF_HARM and str(path_parameters.get("userId")) == own:
        case.path_parameters = {**path_parameters, "userId": str(uuid.uuid4())}
    if (
        own_session
        and endpoint == ("DELETE", "/v1/users/me/sessions/{sessionId}")
        and str(path_parameters.get("sessionId")) == own_session
    ):
        case.path_parameters = {**path_parameters, "sessionId": str(uuid.uuid4())}
    if endpoint == ("DELETE", "/v1/users/me/sessions"):
        case.query = {**(case.query or {}), "others": "true"}
