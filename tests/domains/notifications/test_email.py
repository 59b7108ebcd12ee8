"""Preferences, deliveries and email over SMTP against a real aiosmtpd server: the
password-reset email carries a token that really resets the password; failures retry with
backoff and end ``failed`` with the reason."""

from __future__ import annotations

import email
import email.policy
import logging
import re
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from pantherahive.domains.notifications.api import NotificationsRuntime
from pantherahive.domains.notifications.delivery.transports import LogTransport, SmtpTransport
from pantherahive.domains.notifications.delivery.worker import DeliveryWorker
from pantherahive.domains.projects.events import MemberAdded
from pantherahive.domains.tasks.events import TaskAssigned
from tests.conftest import PASSWORD, TenantHandle, add_user, create_tenant, running_app, unique
from tests.domains.notifications.conftest import (
    emit_event,
    notifications_of,
    platform,
    process_events,
    settings_for,
    task_created,
)
from tests.support.servers import free_port, owner_connection


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))  # type: ignore[arg-type]
        return "250 OK"


def _auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == b"mailer" and data.password == b"s3cret"
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp() -> Any:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(),
                            authenticator=_auth, auth_require_tls=False)
    controller.start()
    yield controller, inbox
    controller.stop()


def _worker(napp: httpx.AsyncClient, tmp: Path, **settings: Any) -> DeliveryWorker:
    values = settings_for(tmp, **settings)
    p = platform(napp)
    return DeliveryWorker(db=p.db, settings=values, transports={"email": SmtpTransport(values)},
                          service=p.notifications.service, webhooks=p.notifications.webhooks,
                          send_webhooks=False)


async def _deliveries(napp: httpx.AsyncClient, admin_headers: dict[str, str],
                      recipient: str, template: str | None = "account.password_reset",
                      ) -> list[dict[str, Any]]:
    response = await napp.get("/v1/notifications/deliveries?limit=200", headers=admin_headers)
    assert response.status_code == 200, response.text
    return [d for d in response.json()["items"] if d["recipient"] == recipient
            and (template is None or d["templateName"] == template)]


async def test_password_reset_email_over_smtp_with_auth(
    napp: httpx.AsyncClient, smtp: Any, tmp_path: Path
) -> None:
    controller, inbox = smtp
    tenant = await create_tenant(napp)
    member = await add_user(napp, tenant, "MEMBER")
    assert member.email is not None
    reset = await napp.post("/v1/auth/password-reset",
                            json={"tenant": tenant.slug, "email": member.email})
    assert reset.status_code == 202
    # the notification and its pending email exist as soon as the request committed
    pending = await _deliveries(napp, tenant.admin.headers, member.email)
    assert [(d["channel"], d["status"], d["templateName"]) for d in pending] == [
        ("email", "pending", "account.password_reset")]
    reset_notes = await notifications_of(napp, member.headers, "account.password_reset")
    assert len(reset_notes) == 1
    assert "token" not in str(reset_notes[0]["data"])

    worker = _worker(napp, tmp_path, smtp_host="127.0.0.1", smtp_port=controller.port,
                     smtp_starttls=False, smtp_username="mailer", smtp_password="s3cret",
                     smtp_from="PantheraHive <no-reply@ph.example>")
    try:
        await worker.run_once(tenant_id=uuid.UUID(tenant.id))
    finally:
        await worker.close()
    mine = [m for m in inbox.messages
            if member.email in m[1] and m[2]["Subject"] == "Reset your password"]
    assert len(mine) == 1
    mail_from, _, message = mine[0]
    assert mail_from == "no-reply@ph.example"
    assert message["To"] == member.email
    assert message["Subject"] == "Reset your password"
    assert message["Message-ID"]
    assert message["Date"]
    assert message["X-PantheraHive-Notification-Id"] == reset_notes[0]["id"]
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    token = re.search(r"(prt_\S+|\S{40,})", text.split("token:")[1]).group(1)  # type: ignore[union-attr]
    assert token in html
    assert "<a href=" in html
    # the emailed token really works
    confirm = await napp.post("/v1/auth/password-reset/confirm",
                              json={"token": token, "newPassword": "brand-new-pass-9"})
    assert confirm.status_code == 204, confirm.text
    sent = await _deliveries(napp, tenant.admin.headers, member.email)
    assert (sent[0]["status"], sent[0]["attempts"]) == ("sent", 1)
    assert sent[0]["sentAt"]
    assert sent[0]["lastError"] is None


async def test_smtp_down_retries_then_failed_with_reason(
    napp: httpx.AsyncClient, tmp_path: Path
) -> None:
    tenant = await create_tenant(napp)
    member = await add_user(napp, tenant, "MEMBER")
    assert member.email is not None
    await napp.post("/v1/auth/password-reset", json={"tenant": tenant.slug, "email": member.email})
    worker = _worker(napp, tmp_path, smtp_host="127.0.0.1", smtp_port=free_port(),
                     smtp_starttls=False, smtp_timeout_seconds=2.0)
    try:
        statuses = []
        for _ in range(3):  # delivery_max_attempts = 3, backoff 0 in these tests
            await worker.run_once(tenant_id=uuid.UUID(tenant.id))
            statuses.append((await _deliveries(napp, tenant.admin.headers, member.email))[0])
    finally:
        await worker.close()
    assert [s["status"] for s in statuses] == ["pending", "pending", "failed"]
    assert [s["attempts"] for s in statuses] == [1, 2, 3]
    assert "SMTP" in statuses[-1]["lastError"]
    assert worker.delay(1).total_seconds() == 0.0
    # exponential with jitter: the third retry waits at most 4 times the base
    spaced = _worker(napp, tmp_path, delivery_backoff_seconds=2.0, smtp_host="x")
    assert spaced.backoff.cap(3) == 8.0
    assert all(0.0 <= spaced.delay(3).total_seconds() <= 8.0 for _ in range(50))
    await spaced.close()


async def _team(napp: httpx.AsyncClient) -> TenantHandle:
    tenant = await create_tenant(napp)
    tenant.users["MANAGER"] = await add_user(napp, tenant, "MANAGER")
    tenant.users["MEMBER"] = await add_user(napp, tenant, "MEMBER")
    return tenant


async def test_preferences_defaults_locked_types_and_effect(napp: httpx.AsyncClient) -> None:
    tenant = await _team(napp)
    manager, member = tenant.users["MANAGER"], tenant.users["MEMBER"]
    prefs = (await napp.get("/v1/notifications/preferences", headers=member.headers)).json()
    assert prefs["phone"] is None
    assert prefs["types"]["task.assigned"] == {"inApp": True, "email": True, "sms": False,
                                               "locked": False}
    assert prefs["types"]["account.password_reset"]["locked"] is True

    refused = await napp.put("/v1/notifications/preferences", headers=member.headers,
                             json={"types": {"account.password_reset": {"email": False}}})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "types.account.password_reset.email"
    unknown = await napp.put("/v1/notifications/preferences", headers=member.headers,
                             json={"types": {"nope.never": {"email": False}}})
    assert unknown.status_code == 422
    extra = await napp.put("/v1/notifications/preferences", headers=member.headers,
                           json={"types": {}, "colour": "red"})
    assert extra.status_code == 422
    # every problem of the body in one answer, each field named
    both = await napp.put("/v1/notifications/preferences", headers=member.headers, json={
        "types": {"nope.never": {"email": False},
                  "account.verify_email": {"inApp": False, "email": False}}})
    assert both.status_code == 422
    assert both.json()["type"].endswith("/validation-error")
    assert sorted(e["field"] for e in both.json()["errors"]) == [
        "types.account.verify_email.email", "types.account.verify_email.inApp",
        "types.nope.never"]
    unchanged = (await napp.get("/v1/notifications/preferences", headers=member.headers)).json()
    assert unchanged == prefs

    saved = await napp.put("/v1/notifications/preferences", headers=member.headers, json={
        "types": {"task.assigned": {"email": False}, "project.member_added": {"inApp": False}}})
    assert saved.status_code == 200
    assert saved.json()["types"]["task.assigned"]["email"] is False
    assert saved.json()["types"]["task.assigned"]["inApp"] is True
    again = (await napp.get("/v1/notifications/preferences", headers=member.headers)).json()
    assert again == saved.json()

    task_id = "9f0e0a52-0000-4000-8000-000000000001"
    project_id = uuid.UUID("9f0e0a52-0000-4000-8000-000000000002")
    await emit_event(napp, tenant.id, task_created(project_id, title="Prefs",
                                                   reporter=manager.id),
                     subject_id=task_id, actor_id=manager.id)
    await emit_event(napp, tenant.id, TaskAssigned(project_id=project_id, assignee_id=member.id,
                                                   previous_assignee_id=None),
                     subject_id=task_id, actor_id=manager.id)
    await emit_event(napp, tenant.id, MemberAdded(user_id=member.id, role="VIEWER",
                                                  project_name="Quiet"),
                     subject_id=project_id, actor_id=manager.id)
    await process_events(napp)
    assert len(await notifications_of(napp, member.headers, "task.assigned")) == 1
    # in-app off: not listed; email still on by default: one email delivery
    assert await notifications_of(napp, member.headers, "project.member_added") == []
    assert member.email is not None
    deliveries = await _deliveries(napp, tenant.admin.headers, member.email, None)
    templates = sorted(d["templateName"] for d in deliveries)
    assert templates == ["account.welcome", "notification"]  # no email for task.assigned


async def test_deliveries_are_admin_only(napp: httpx.AsyncClient) -> None:
    tenant = await _team(napp)
    forbidden = await napp.get("/v1/notifications/deliveries",
                               headers=tenant.users["MEMBER"].headers)
    assert forbidden.status_code == 403
    assert (await napp.get("/v1/notifications/deliveries")).status_code == 401
    other = await create_tenant(napp)
    await add_user(napp, other, "MEMBER")
    await process_events(napp)  # the welcome emails of both tenants exist now
    mine = (await napp.get("/v1/notifications/deliveries?limit=200",
                           headers=other.admin.headers)).json()["items"]
    assert len(mine) == 2, mine  # the other tenant's ADMIN and MEMBER welcomes, nothing else
    assert all(d["recipient"].endswith(f"@{other.slug}.example") for d in mine)
    theirs = (await napp.get("/v1/notifications/deliveries?limit=200",
                             headers=tenant.admin.headers)).json()
    assert theirs["items"]
    assert not any(d["recipient"].endswith(f"@{other.slug}.example") for d in theirs["items"])
    login = await napp.post("/v1/auth/login", json={"tenant": tenant.slug, "login": "admin",
                                                    "password": PASSWORD})
    assert login.status_code == 200


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "smtp.pem", tmp / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class TlsInbox(Inbox):
    def __init__(self) -> None:
        super().__init__()
        self.encrypted: list[bool] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.encrypted.append(session.ssl is not None)
        return await super().handle_DATA(server, session, envelope)


async def test_starttls_required_by_the_server(napp: httpx.AsyncClient, tmp_path: Path) -> None:
    import ssl

    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = TlsInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), tls_context=context,
                            require_starttls=True, authenticator=_auth, auth_require_tls=True)
    controller.start()
    try:
        tenant = await create_tenant(napp)
        member = await add_user(napp, tenant, "MEMBER")
        assert member.email is not None
        await napp.post("/v1/auth/password-reset",
                        json={"tenant": tenant.slug, "email": member.email})
        worker = _worker(napp, tmp_path, smtp_host="127.0.0.1", smtp_port=controller.port,
                         smtp_starttls=True, smtp_ca_file=str(cert), smtp_username="mailer",
                         smtp_password="s3cret")
        try:
            await worker.run_once(tenant_id=uuid.UUID(tenant.id))
        finally:
            await worker.close()
    finally:
        controller.stop()
    mine = [m for m in inbox.messages
            if member.email in m[1] and m[2]["Subject"] == "Reset your password"]
    assert len(mine) == 1
    assert all(inbox.encrypted)
    sent = await _deliveries(napp, tenant.admin.headers, member.email)
    assert sent[0]["status"] == "sent"


def _log_worker(napp: httpx.AsyncClient, *, reveal_content: bool) -> DeliveryWorker:
    # A logger of its own at INFO: the platform's are configured (and cached) at WARNING
    # in tests, which would hide exactly the lines this is about.
    logger = logging.getLogger(f"test.log_transport.{reveal_content}")
    logger.setLevel(logging.INFO)
    transport = LogTransport(
        "email", reveal_content=reveal_content,
        logger=structlog.wrap_logger(logger, wrapper_class=structlog.stdlib.BoundLogger,
                                     processors=[structlog.processors.JSONRenderer()]))
    p = platform(napp)
    return DeliveryWorker(
        db=p.db, settings=p.settings, transports={"email": transport},
        service=p.notifications.service, webhooks=p.notifications.webhooks, send_webhooks=False)


async def _reset_without_smtp(
    napp: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, *, reveal_content: bool
) -> tuple[TenantHandle, str, list[str]]:
    tenant = await create_tenant(napp)
    member = await add_user(napp, tenant, "MEMBER")
    assert member.email is not None
    await napp.post("/v1/auth/password-reset", json={"tenant": tenant.slug, "email": member.email})
    worker = _log_worker(napp, reveal_content=reveal_content)
    try:
        with caplog.at_level(logging.INFO):
            await worker.run_once(tenant_id=uuid.UUID(tenant.id))
    finally:
        await worker.close()
    return tenant, member.email, [r.getMessage() for r in caplog.records]


async def test_without_smtp_development_logs_the_link(
    napp: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    tenant, address, lines = await _reset_without_smtp(napp, caplog, reveal_content=True)
    logged = [line for line in lines if "notification_message" in line and address in line]
    # the reset token, which is what the developer came for (a welcome may be there too)
    assert len([line for line in logged if "php_" in line]) == 1
    (delivery,) = await _deliveries(napp, tenant.admin.headers, address)
    assert delivery["status"] == "sent"


async def test_without_smtp_production_never_logs_the_token(
    napp: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    tenant, address, lines = await _reset_without_smtp(napp, caplog, reveal_content=False)
    assert not [line for line in lines if "notification_message" in line]
    assert not [line for line in lines if "php_" in line]  # no reset token, in any line
    said = [line for line in lines if "notification_not_sent" in line and address in line]
    assert len([line for line in said if "account.password_reset" in line]) == 1
    (delivery,) = await _deliveries(napp, tenant.admin.headers, address)
    assert delivery["status"] == "failed"  # not "sent": nothing was
    assert "SMTP" in delivery["lastError"]
    # and that is what a production platform without SMTP is built with
    production_settings = settings_for(
        tmp_path, env="production", webhook_allow_private_addresses=False,
        jwt_secret="a3f9c2e7b1d84f06e5c9a27b3d1f8e40c6b2a9d7e3f1c5b8",
        signing_keys_dir=tmp_path / "keys",
    )
    production = NotificationsRuntime(production_settings, platform(napp).db,
                                      key_material="k" * 40)
    email_transport = production.transports["email"]
    assert isinstance(email_transport, LogTransport)
    assert not email_transport.reveal_content


async def test_verify_email_notification_email_and_token(
    database_url: str, smtp: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With require_email_verification on, identity's request writes the notification and
    its email in its own transaction; the email (real SMTP) carries a token that verifies
    the address. A user without an address gets nothing — there is nowhere to send it."""
    controller, inbox = smtp
    settings = settings_for(tmp_path, require_email_verification=True)
    async with running_app(database_url, settings) as vapp:
        slug = unique("verify")
        address = f"root@{slug}.example"
        created = await vapp.post("/v1/tenants", json={"name": slug, "slug": slug, "admin": {
            "username": "root", "password": PASSWORD, "email": address}})
        assert created.status_code == 201, created.text
        assert created.json()["user"]["status"] == "PENDING_VERIFICATION"
        root_id = created.json()["user"]["id"]
        owner = await owner_connection(database_url)
        try:
            # (the session app's consumers may have added the welcome meanwhile: not this)
            notes = await owner.fetch(
                "SELECT id, type, in_app, document FROM notifications.notifications "
                "WHERE user_id = $1 AND type = 'account.verify_email'", uuid.UUID(root_id))
            assert [(n["type"], n["in_app"]) for n in notes] == [("account.verify_email", True)]
            pending = await owner.fetch(
                "SELECT channel, template_name, recipient, status FROM notifications.deliveries "
                "WHERE notification_id = $1", notes[0]["id"])
            assert [tuple(d) for d in pending] == [
                ("email", "account.verify_email", address, "pending")]
        finally:
            await owner.close()
        assert "phv_" not in str(notes[0]["document"])  # the token is in the email only

        worker = _worker(vapp, tmp_path, smtp_host="127.0.0.1", smtp_port=controller.port,
                         smtp_starttls=False, smtp_username="mailer", smtp_password="s3cret")
        try:
            await worker.run_once(tenant_id=uuid.UUID(created.json()["tenant"]["id"]))
        finally:
            await worker.close()
        mine = [m for m in inbox.messages  # (a welcome may come too, once it is ACTIVE)
                if address in m[1] and m[2]["Subject"] == "Verify your email address"]
        assert len(mine) == 1
        message = mine[0][2]
        assert message["X-PantheraHive-Notification-Id"] == str(notes[0]["id"])
        text = message.get_body(preferencelist=("plain",)).get_content()
        token = re.search(r"(phv_\S+)", text).group(1)  # type: ignore[union-attr]
        assert token in message.get_body(preferencelist=("html",)).get_content()

        verified = await vapp.post("/v1/auth/verify-email", json={"token": token})
        assert verified.status_code == 204, verified.text
        login = await vapp.post("/v1/auth/login", json={
            "tenant": slug, "login": "root", "password": PASSWORD})
        assert login.status_code == 200, login.text
        root = {"Authorization": f"Bearer {login.json()['accessToken']}"}
        listed = await notifications_of(vapp, root, "account.verify_email")
        assert [n["id"] for n in listed] == [str(notes[0]["id"])]

        # no address, nowhere to send the token: such a user cannot be created meanwhile
        bare = await vapp.post("/v1/users", headers=root, json={
            "username": "bare", "password": PASSWORD, "role": "MEMBER"})
        assert bare.status_code == 422, bare.text
        assert [e["field"] for e in bare.json()["errors"]] == ["email"]
