"""How a rendered message leaves the platform: SMTP, a Twilio-compatible SMS API, or (with
neither configured, in development) the log."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any, Protocol

import aiosmtplib
import httpx
import structlog

from pantherahive.infra.logging import get_logger
from pantherahive.settings import Settings

log = get_logger("pantherahive.notifications.transports")


class DeliveryError(Exception):
    """A failed attempt. ``permanent`` ones (a refused recipient, a 4xx) are not retried."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason[:1000]
        self.permanent = permanent


class Transport(Protocol):
    channel: str

    async def send(self, recipient: str, payload: dict[str, Any]) -> None: ...


class SmtpTransport:
    channel = "email"

    def __init__(self, settings: Settings) -> None:
        if settings.smtp_host is None:
            raise ValueError("SMTP is not configured")
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.username = settings.smtp_username
        password = settings.smtp_password
        self.password = password.get_secret_value() if password else None
        self.tls = settings.smtp_tls
        self.starttls = settings.smtp_starttls and not settings.smtp_tls
        self.sender = settings.smtp_from
        self.timeout = settings.smtp_timeout_seconds
        self.ca_file = settings.smtp_ca_file
        domain = parseaddr(self.sender)[1].rpartition("@")[2]
        self.domain = domain or "pantherahive.local"

    def message(self, recipient: str, payload: dict[str, Any]) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = recipient
        msg["Subject"] = payload["subject"]
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = make_msgid(domain=self.domain)
        if payload.get("notificationId"):
            msg["X-PantheraHive-Notification-Id"] = payload["notificationId"]
        msg.set_content(payload["text"])
        msg.add_alternative(payload["html"], subtype="html")
        return msg

    async def send(self, recipient: str, payload: dict[str, Any]) -> None:
        try:
            await aiosmtplib.send(
                self.message(recipient, payload),
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.tls,
                start_tls=self.starttls,
                timeout=self.timeout,
                cert_bundle=self.ca_file,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"SMTP refused the recipient: {exc}", permanent=True) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(f"SMTP {exc.code}: {exc.message}",
                                permanent=500 <= exc.code < 600) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"SMTP: {type(exc).__name__}: {exc}") from exc


class TwilioSmsTransport:
    """``POST {url}/2010-04-01/Accounts/{sid}/Messages.json`` with form fields To, From,
    Body and HTTP basic auth (sid, token): the shape Twilio and its look-alikes accept."""

    channel = "sms"

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        if settings.sms_provider_url is None:
            raise ValueError("SMS is not configured")
        sid = settings.sms_account_sid or ""
        base = settings.sms_provider_url.rstrip("/")
        self.url = f"{base}/2010-04-01/Accounts/{sid}/Messages.json"
        token = settings.sms_auth_token.get_secret_value() if settings.sms_auth_token else ""
        self.auth = (sid, token)
        self.sender = settings.sms_from or ""
        self.client = client or httpx.AsyncClient(timeout=settings.sms_timeout_seconds)

    async def send(self, recipient: str, payload: dict[str, Any]) -> None:
        try:
            response = await self.client.post(
                self.url,
                data={"To": recipient, "From": self.sender, "Body": payload["text"]},
                auth=self.auth,
            )
        except httpx.TimeoutException as exc:
            raise DeliveryError(f"SMS provider timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise DeliveryError(f"SMS provider unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 300:
            retryable = response.status_code >= 500 or response.status_code == 429
            raise DeliveryError(
                f"SMS provider answered {response.status_code}: {response.text[:300]}",
                permanent=not retryable,
            )

    async def close(self) -> None:
        await self.client.aclose()


class LogTransport:
    """Stand-in when no SMTP relay / SMS provider is configured.

    In development the whole message goes to the log: that is how a developer running
    ``make run`` gets a verification or password-reset link. In production a log is no
    place for a single-use token (logs are shipped, kept and read by many): only the fact
    that the message could not be sent is logged — recipient and template — and the
    delivery fails with that reason instead of pretending it was sent.
    """

    def __init__(self, channel: str, *, reveal_content: bool = True,
                 logger: structlog.stdlib.BoundLogger | None = None) -> None:
        self.channel = channel
        self.reveal_content = reveal_content
        self.log = logger or log

    async def send(self, recipient: str, payload: dict[str, Any]) -> None:
        if not self.reveal_content:
            self.log.warning("notification_not_sent", channel=self.channel, to=recipient,
                             template=payload.get("template"), reason="not configured")
            what = "SMTP relay (PANTHERAHIVE_SMTP_HOST)" if self.channel == "email" else (
                "SMS provider (PANTHERAHIVE_SMS_PROVIDER_URL)")
            raise DeliveryError(f"no {what} is configured", permanent=True)
        self.log.info("notification_message", channel=self.channel, to=recipient,
                      subject=payload.get("subject"), text=payload.get("text"))
