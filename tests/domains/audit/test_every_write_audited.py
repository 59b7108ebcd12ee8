"""Acceptance: every write endpoint produces exactly one audit event carrying the actor, the
request's X-Request-ID and (for updates) the changes.

The test walks ``app.openapi()``: every POST/PUT/PATCH/DELETE operation must have a request
builder in ``BUILDERS`` (a new endpoint without one fails the test), each builder makes one
valid request (after setting up whatever it needs with requests of their own), and after
every consumer has run — derived events and consumers' follow-ups included — the audit
trail holds exactly one event with that request's id.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pyotp
import pytest

from pantherahive.consumers import all_consumers
from pantherahive.domains.identity.delivery import RecordingSender
from pantherahive.domains.identity.mfa import set_require_2fa
from pantherahive.domains.identity.repository import IdentityRepository
from pantherahive.domains.identity.service import VERIFY_PREFIX
from pantherahive.infra.bus.embedded import drain
from pantherahive.infra.db.engine import Database, set_tenant
from tests.conftest import (
    PASSWORD,
    Actor,
    TenantHandle,
    add_user,
    create_tenant,
    make_settings,
    running_app,
    unique,
)
from tests.support.servers import owner_connection

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class Req:
    method: str
    path: str
    actor: Actor | None  # who sends it (None: anonymous)
    json: Any = None
    expected_actor: str | None = None  # default: actor.id; set for anonymous routes
    anonymous_actor: bool = False  # the audit event legitimately has no actor (system)
    changes: tuple[str, ...] = ()  # keys that must be in the audit event's changes
    derived: tuple[str, ...] = ()  # outbox events of the same request the trail must skip


@dataclass
class World:
    client: httpx.AsyncClient
    sender: RecordingSender
    tenant: TenantHandle
    project_id: str = ""
    editor: Actor | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def admin(self) -> Actor:
        return self.tenant.admin

    @property
    def db(self) -> Database:
        db: Database = self.client.app.state.platform.db  # type: ignore[attr-defined]
        return db

    async def call(self, method: str, path: str, actor: Actor | None = None,
                   json: Any = None) -> Any:
        headers = actor.headers if actor else {}
        response = await self.client.request(method, path, headers=headers, json=json)
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        return response.json() if response.content else None

    async def user(self, role: str = "MEMBER") -> Actor:
        return await add_user(self.client, self.tenant, role)

    async def project(self, **fields: Any) -> str:
        body = {"name": unique("walk"), **fields}
        return str((await self.call("POST", "/v1/projects", self.admin, body))["id"])

    async def task(self, **fields: Any) -> str:
        body = {"title": unique("task"), **fields}
        created = await self.call("POST", f"/v1/projects/{self.project_id}/tasks", self.admin,
                                  body)
        return str(created["id"])

    async def settle(self) -> None:
        """Every consumer (follow-ups included) and the audit trail catch up."""
        await drain(self.db, all_consumers())


Builder = Callable[[World], Awaitable[Req]]
BUILDERS: dict[tuple[str, str], Builder] = {}


def builds(method: str, path: str) -> Callable[[Builder], Builder]:
    def register(builder: Builder) -> Builder:
        BUILDERS[(method, path)] = builder
        return builder
    return register


# ---- identity -----------------------------------------------------------------------------
@builds("POST", "/v1/tenants")
async def _tenant(w: World) -> Req:
    slug = unique("walk")
    return Req("POST", "/v1/tenants", None, json={
        "name": slug, "slug": slug,
        "admin": {"username": "root", "password": PASSWORD, "email": f"root@{slug}.example"},
    })


@builds("POST", "/v1/auth/login")
async def _login(w: World) -> Req:
    user = await w.user()
    return Req("POST", "/v1/auth/login", None, expected_actor=user.id,
               json={"tenant": w.tenant.slug, "login": user.username, "password": PASSWORD})


@builds("POST", "/v1/auth/refresh")
async def _refresh(w: World) -> Req:
    user = await w.user()
    return Req("POST", "/v1/auth/refresh", None, expected_actor=user.id,
               json={"refreshToken": user.refresh_token})


@builds("POST", "/v1/auth/logout")
async def _logout(w: World) -> Req:
    user = await w.user()
    return Req("POST", "/v1/auth/logout", None, expected_actor=user.id,
               json={"refreshToken": user.refresh_token})


@builds("POST", "/v1/auth/verify-email")
async def _verify_email(w: World) -> Req:
    user = await w.user()
    identity = w.client.app.state.platform.identity  # type: ignore[attr-defined]
    async with w.db.sessions() as session, session.begin():
        await set_tenant(session, w.tenant.id)
        row = await IdentityRepository(session, uuid.UUID(w.tenant.id)).get_user(uuid.UUID(user.id))
        assert row is not None
        token = await identity.issue_action_token(
            session, row, "verify_email", identity.config.email_token_ttl, VERIFY_PREFIX
        )
    return Req("POST", "/v1/auth/verify-email", None, expected_actor=user.id,
               json={"token": token})


@builds("POST", "/v1/auth/password-reset")
async def _password_reset(w: World) -> Req:
    user = await w.user()
    # Anyone may ask for a reset: the request has no actor, the event none either.
    return Req("POST", "/v1/auth/password-reset", None, anonymous_actor=True,
               json={"tenant": w.tenant.slug, "email": user.email})


@builds("POST", "/v1/auth/password-reset/confirm")
async def _password_reset_confirm(w: World) -> Req:
    user = await w.user()
    await w.call("POST", "/v1/auth/password-reset",
                 json={"tenant": w.tenant.slug, "email": user.email})
    kind, user_id, token = w.sender.sent[-1]
    assert (kind, str(user_id)) == ("password_reset", user.id)
    return Req("POST", "/v1/auth/password-reset/confirm", None, expected_actor=user.id,
               json={"token": token, "newPassword": "another-horse-2"})


@builds("POST", "/v1/users/me/password")
async def _change_password(w: World) -> Req:
    user = await w.user()
    return Req("POST", "/v1/users/me/password", user,
               json={"currentPassword": PASSWORD, "newPassword": "another-horse-2"})


@builds("POST", "/v1/users")
async def _create_user(w: World) -> Req:
    return Req("POST", "/v1/users", w.admin,
               json={"username": unique("new"), "password": PASSWORD, "role": "MEMBER"})


@builds("PATCH", "/v1/users/{userId}")
async def _patch_user(w: World) -> Req:
    user = await w.user()
    return Req("PATCH", f"/v1/users/{user.id}", w.admin,
               json={"firstName": "Walker", "role": "MANAGER"}, changes=("firstName", "role"))


@builds("DELETE", "/v1/users/{userId}")
async def _delete_user(w: World) -> Req:
    user = await w.user()
    # A member of a project with a task assigned: its deactivation has follow-ups in
    # projects (membership dropped) and tasks (unassigned), derived from the one event.
    project = await w.project()
    await w.call("PUT", f"/v1/projects/{project}/members/{user.id}", w.admin,
                 {"role": "EDITOR"})
    await w.call("POST", f"/v1/projects/{project}/tasks", w.admin,
                 {"title": unique("t"), "assigneeId": user.id})
    return Req("DELETE", f"/v1/users/{user.id}", w.admin)


@builds("POST", "/v1/users/me/tokens")
async def _create_token(w: World) -> Req:
    user = await w.user()
    return Req("POST", "/v1/users/me/tokens", user,
               json={"name": unique("pat"), "scopes": ["tasks:read"]})


async def _token(w: World, owner: Actor) -> str:
    created = await w.call("POST", "/v1/users/me/tokens", owner,
                           {"name": unique("pat"), "scopes": ["tasks:read"]})
    return str(created["id"])


@builds("DELETE", "/v1/users/me/tokens/{tokenId}")
async def _revoke_my_token(w: World) -> Req:
    user = await w.user()
    return Req("DELETE", f"/v1/users/me/tokens/{await _token(w, user)}", user)


@builds("DELETE", "/v1/tokens/{tokenId}")
async def _revoke_any_token(w: World) -> Req:
    user = await w.user()
    return Req("DELETE", f"/v1/tokens/{await _token(w, user)}", w.admin)


@builds("PUT", "/v1/tenant/sso")
async def _sso_settings(w: World) -> Req:
    return Req("PUT", "/v1/tenant/sso", w.admin, json={
        "issuer": "https://idp.example.com", "clientId": "walk", "clientSecret": "walk-secret",
        "enabled": True, "jitProvisioning": True, "require2fa": False,
    }, changes=("issuer", "clientId", "enabled"))


# ---- two-factor authentication and sessions -----------------------------------------------
async def _totp_user(w: World) -> tuple[Actor, pyotp.TOTP]:
    user = await w.user()
    totp = pyotp.TOTP((await w.call("POST", "/v1/users/me/2fa/totp", user))["secret"])
    await w.call("POST", "/v1/users/me/2fa/totp/confirm", user, {"code": totp.now()})
    return user, totp


def _next_code(totp: pyotp.TOTP) -> str:
    """The next time step's code: accepted (one step of drift), and never the step the
    confirmation used."""
    return totp.at(time.time() + 30)


async def _enrollment_challenge(w: World) -> tuple[Actor, str]:
    """A user of a tenant that requires 2FA, with the challenge of a login that must
    enroll first."""
    tenant = await create_tenant(w.client)
    user = await add_user(w.client, tenant, "MEMBER")
    async with w.db.sessions() as session, session.begin():
        await set_tenant(session, tenant.id)
        await set_require_2fa(session, uuid.UUID(tenant.id), required=True)
    answer = await w.call("POST", "/v1/auth/login", None,
                          {"tenant": tenant.slug, "login": user.username, "password": PASSWORD})
    assert answer["enrollmentRequired"] is True
    return user, str(answer["challenge"])


@builds("POST", "/v1/users/me/2fa/totp")
async def _start_totp(w: World) -> Req:
    return Req("POST", "/v1/users/me/2fa/totp", await w.user())


@builds("POST", "/v1/users/me/2fa/totp/confirm")
async def _confirm_totp(w: World) -> Req:
    user = await w.user()
    secret = (await w.call("POST", "/v1/users/me/2fa/totp", user))["secret"]
    return Req("POST", "/v1/users/me/2fa/totp/confirm", user,
               json={"code": pyotp.TOTP(secret).now()})


@builds("DELETE", "/v1/users/me/2fa/totp")
async def _disable_totp(w: World) -> Req:
    user, totp = await _totp_user(w)
    return Req("DELETE", "/v1/users/me/2fa/totp", user,
               json={"password": PASSWORD, "code": _next_code(totp)})


@builds("POST", "/v1/auth/login/2fa")
async def _login_second_factor(w: World) -> Req:
    user, totp = await _totp_user(w)
    answer = await w.call("POST", "/v1/auth/login", None,
                          {"tenant": w.tenant.slug, "login": user.username, "password": PASSWORD})
    return Req("POST", "/v1/auth/login/2fa", None, expected_actor=user.id,
               json={"challenge": answer["challenge"], "code": _next_code(totp)})


@builds("POST", "/v1/auth/login/2fa/enrollment")
async def _login_enrollment(w: World) -> Req:
    user, challenge = await _enrollment_challenge(w)
    return Req("POST", "/v1/auth/login/2fa/enrollment", None, expected_actor=user.id,
               json={"challenge": challenge})


@builds("POST", "/v1/auth/login/2fa/enrollment/confirm")
async def _login_enrollment_confirm(w: World) -> Req:
    user, challenge = await _enrollment_challenge(w)
    started = await w.call("POST", "/v1/auth/login/2fa/enrollment", None,
                           {"challenge": challenge})
    return Req("POST", "/v1/auth/login/2fa/enrollment/confirm", None, expected_actor=user.id,
               json={"challenge": challenge, "code": pyotp.TOTP(started["secret"]).now()})


@builds("DELETE", "/v1/users/me/sessions/{sessionId}")
async def _end_session(w: World) -> Req:
    user = await w.user()
    await w.call("POST", "/v1/auth/login", None,
                 {"tenant": w.tenant.slug, "login": user.username, "password": PASSWORD})
    sessions = (await w.call("GET", "/v1/users/me/sessions", user))["items"]
    other = next(item["id"] for item in sessions if not item["current"])
    return Req("DELETE", f"/v1/users/me/sessions/{other}", user)


@builds("DELETE", "/v1/users/me/sessions")
async def _end_other_sessions(w: World) -> Req:
    return Req("DELETE", "/v1/users/me/sessions?others=true", await w.user())


@builds("DELETE", "/v1/users/{userId}/sessions")
async def _end_user_sessions(w: World) -> Req:
    user = await w.user()
    return Req("DELETE", f"/v1/users/{user.id}/sessions", w.admin)


# ---- projects -----------------------------------------------------------------------------
@builds("POST", "/v1/projects")
async def _create_project(w: World) -> Req:
    return Req("POST", "/v1/projects", w.admin, json={"name": unique("p")})


@builds("PATCH", "/v1/projects/{projectId}")
async def _patch_project(w: World) -> Req:
    project = await w.project()
    manager = w.tenant.users["MANAGER"]
    return Req("PATCH", f"/v1/projects/{project}", w.admin,
               json={"ownerId": manager.id, "name": unique("renamed")},
               changes=("ownerId", "name"),
               derived=("project.member_added", "project.member_updated"))


@builds("DELETE", "/v1/projects/{projectId}")
async def _delete_project(w: World) -> Req:
    project = await w.project()
    await w.call("POST", f"/v1/projects/{project}/tasks", w.admin, {"title": unique("t")})
    return Req("DELETE", f"/v1/projects/{project}", w.admin)


@builds("PUT", "/v1/projects/{projectId}/members/{userId}")
async def _put_member(w: World) -> Req:
    user = await w.user()
    return Req("PUT", f"/v1/projects/{w.project_id}/members/{user.id}", w.admin,
               json={"role": "VIEWER"})


@builds("DELETE", "/v1/projects/{projectId}/members/{userId}")
async def _remove_member(w: World) -> Req:
    user = await w.user()
    await w.call("PUT", f"/v1/projects/{w.project_id}/members/{user.id}", w.admin,
                 {"role": "EDITOR"})
    await w.task(assigneeId=user.id)
    return Req("DELETE", f"/v1/projects/{w.project_id}/members/{user.id}", w.admin)


# ---- tasks --------------------------------------------------------------------------------
@builds("POST", "/v1/projects/{projectId}/tasks")
async def _create_task(w: World) -> Req:
    assert w.editor is not None
    return Req("POST", f"/v1/projects/{w.project_id}/tasks", w.admin,
               json={"title": unique("t"), "assigneeId": w.editor.id},
               derived=("task.assigned",))


@builds("PATCH", "/v1/tasks/{taskId}")
async def _patch_task(w: World) -> Req:
    assert w.editor is not None
    task = await w.task()
    return Req("PATCH", f"/v1/tasks/{task}", w.admin,
               json={"status": "IN_PROGRESS", "assigneeId": w.editor.id, "priority": "HIGH"},
               changes=("status", "assigneeId", "priority"),
               derived=("task.assigned", "task.status_changed"))


@builds("DELETE", "/v1/tasks/{taskId}")
async def _delete_task(w: World) -> Req:
    return Req("DELETE", f"/v1/tasks/{await w.task()}", w.admin)


@builds("PUT", "/v1/tasks/{taskId}/dependencies/{dependsOnId}")
async def _add_dependency(w: World) -> Req:
    first, second = await w.task(), await w.task()
    return Req("PUT", f"/v1/tasks/{second}/dependencies/{first}", w.admin)


@builds("DELETE", "/v1/tasks/{taskId}/dependencies/{dependsOnId}")
async def _remove_dependency(w: World) -> Req:
    first, second = await w.task(), await w.task()
    await w.call("PUT", f"/v1/tasks/{second}/dependencies/{first}", w.admin)
    return Req("DELETE", f"/v1/tasks/{second}/dependencies/{first}", w.admin)


# ---- notifications and webhooks -----------------------------------------------------------
@builds("POST", "/v1/notifications/read-all")
async def _read_all(w: World) -> Req:
    assert w.editor is not None
    return Req("POST", "/v1/notifications/read-all", w.editor)


@builds("POST", "/v1/notifications/stream-ticket")
async def _stream_ticket(w: World) -> Req:
    return Req("POST", "/v1/notifications/stream-ticket", w.admin)


@builds("PUT", "/v1/notifications/preferences")
async def _preferences(w: World) -> Req:
    return Req("PUT", "/v1/notifications/preferences", w.admin,
               json={"phone": "+15551234567", "types": {"task.assigned": {"email": False}}},
               changes=("channels", "phone"))


@builds("POST", "/v1/notifications/{id}/read")
async def _read_one(w: World) -> Req:
    assert w.editor is not None
    return Req("POST", f"/v1/notifications/{w.extra['notification']}/read", w.editor)


async def _webhook(w: World) -> str:
    created = await w.call("POST", "/v1/webhooks", w.admin,
                           {"url": "http://127.0.0.1:9/hook", "events": ["*"]})
    return str(created["id"])


@builds("POST", "/v1/webhooks")
async def _create_webhook(w: World) -> Req:
    return Req("POST", "/v1/webhooks", w.admin,
               json={"url": "http://127.0.0.1:9/created", "events": ["task.created"]})


@builds("PATCH", "/v1/webhooks/{id}")
async def _patch_webhook(w: World) -> Req:
    return Req("PATCH", f"/v1/webhooks/{await _webhook(w)}", w.admin,
               json={"events": ["task.deleted"], "enabled": False},
               changes=("events", "enabled"))


@builds("DELETE", "/v1/webhooks/{id}")
async def _delete_webhook(w: World) -> Req:
    return Req("DELETE", f"/v1/webhooks/{await _webhook(w)}", w.admin)


@builds("POST", "/v1/webhooks/{id}/rotate-secret")
async def _rotate(w: World) -> Req:
    return Req("POST", f"/v1/webhooks/{await _webhook(w)}/rotate-secret", w.admin)


@builds("POST", "/v1/webhooks/{id}/deliveries/{deliveryId}/redeliver")
async def _redeliver(w: World) -> Req:
    hook, delivery = w.extra["webhook"], w.extra["delivery"]
    return Req("POST", f"/v1/webhooks/{hook}/deliveries/{delivery}/redeliver", w.admin)


# ---- the walk -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
async def walk_app(database_url: str, tmp_path_factory: pytest.TempPathFactory
                   ) -> AsyncIterator[tuple[httpx.AsyncClient, RecordingSender]]:
    """Consumers are driven by the test (``drain``); webhook targets may be loopback."""
    settings = make_settings(
        tmp_path_factory.mktemp("walk"), bus_run_consumers=False,
        notifications_worker_enabled=False, webhook_allow_private_addresses=True,
    )
    sender = RecordingSender()
    async with running_app(database_url, settings, sender) as app_client:
        yield app_client, sender


async def build_world(client: httpx.AsyncClient, sender: RecordingSender) -> World:
    handle = await create_tenant(client)
    handle.users["ADMIN"] = handle.admin
    w = World(client, sender, handle)
    handle.users["MANAGER"] = await w.user("MANAGER")
    w.editor = await w.user("MEMBER")
    w.project_id = await w.project()
    await w.call("PUT", f"/v1/projects/{w.project_id}/members/{w.editor.id}", w.admin,
                 {"role": "EDITOR"})
    w.extra["webhook"] = await _webhook(w)
    await w.task(assigneeId=w.editor.id)  # notifies the editor; a delivery for the webhook
    await w.settle()
    mine = await w.call("GET", "/v1/notifications", w.editor)
    w.extra["notification"] = mine["items"][0]["id"]
    deliveries = await w.call("GET", f"/v1/webhooks/{w.extra['webhook']}/deliveries", w.admin)
    w.extra["delivery"] = deliveries["items"][0]["id"]
    return w


def write_operations(app: Any) -> list[tuple[str, str]]:
    return sorted(
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        for method in item
        if method.upper() in WRITE_METHODS
    )


async def test_every_write_operation_has_a_request_builder(
    walk_app: tuple[httpx.AsyncClient, RecordingSender],
) -> None:
    client, _ = walk_app
    operations = write_operations(client.app)  # type: ignore[attr-defined]
    missing = [op for op in operations if op not in BUILDERS]
    assert not missing, f"add a request builder for these write endpoints: {missing}"
    stale = [op for op in BUILDERS if op not in operations]
    assert not stale, f"builders for endpoints that no longer exist: {stale}"


async def test_every_write_endpoint_leaves_exactly_one_audit_event(
    walk_app: tuple[httpx.AsyncClient, RecordingSender], database_url: str,
) -> None:
    client, sender = walk_app
    w = await build_world(client, sender)
    sent: dict[str, tuple[tuple[str, str], Req, httpx.Response]] = {}
    for operation in write_operations(client.app):  # type: ignore[attr-defined]
        req = await BUILDERS[operation](w)
        request_id = f"walk-{uuid.uuid4().hex}"
        headers = {"X-Request-ID": request_id, **(req.actor.headers if req.actor else {})}
        response = await client.request(req.method, req.path, json=req.json, headers=headers)
        assert response.status_code < 300, (operation, response.status_code, response.text)
        sent[request_id] = (operation, req, response)
    await w.settle()

    conn = await owner_connection(database_url)
    try:
        audit = await conn.fetch(
            "SELECT request_id, action, actor_id, actor_type, changes FROM audit.audit_events "
            "WHERE request_id = ANY($1::text[])", list(sent))
        outbox = await conn.fetch(
            "SELECT request_id, type, audited FROM bus.outbox WHERE request_id = ANY($1::text[])",
            list(sent))
    finally:
        await conn.close()
    by_request: dict[str, list[Any]] = {}
    for row in audit:
        by_request.setdefault(row["request_id"], []).append(row)
    problems = []
    for request_id, (operation, req, response) in sent.items():
        rows = by_request.get(request_id, [])
        if len(rows) != 1:
            problems.append(f"{operation}: {len(rows)} audit events {[r['action'] for r in rows]}")
            continue
        [row] = rows
        expected = req.expected_actor or (req.actor.id if req.actor else None)
        if operation == ("POST", "/v1/tenants"):
            expected = response.json()["user"]["id"]
        actor = str(row["actor_id"]) if row["actor_id"] else None
        if req.anonymous_actor:
            if (actor, row["actor_type"]) != (None, "system"):
                problems.append(f"{operation}: actor {actor}, expected none (system)")
        elif actor is None or actor != expected:
            problems.append(f"{operation}: actor {actor}, expected {expected}")
        changes = _json(row["changes"])
        if req.method in ("PATCH", "PUT") and req.changes and not set(req.changes) <= set(changes):
            problems.append(f"{operation}: changes {sorted(changes)} lack {req.changes}")
        derived = {r["type"] for r in outbox if r["request_id"] == request_id and not r["audited"]}
        if not set(req.derived) <= derived:
            problems.append(f"{operation}: derived events {sorted(derived)} lack {req.derived}")
    assert not problems, "\n".join(problems)


def _json(value: Any) -> dict[str, Any]:
    parsed = json.loads(value) if isinstance(value, str) else value
    assert isinstance(parsed, dict)
    return parsed


async def test_derived_events_still_reach_every_other_consumer(
    walk_app: tuple[httpx.AsyncClient, RecordingSender],
) -> None:
    """``audited=False`` hides an event from the audit trail only: the assignee of a new task
    is still notified through task.assigned."""
    client, sender = walk_app
    w = await build_world(client, sender)
    assert w.editor is not None
    before = len((await w.call("GET", "/v1/notifications", w.editor))["items"])
    await w.task(assigneeId=w.editor.id)
    await w.settle()
    after = (await w.call("GET", "/v1/notifications", w.editor))["items"]
    assert len(after) == before + 1
    assert after[0]["type"] == "task.assigned"

