"""The notification types, their default channels, and which cannot be switched off.

One table the service, the preferences API and the tests all read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Channel(StrEnum):
    IN_APP = "inApp"
    EMAIL = "email"
    SMS = "sms"


@dataclass(frozen=True, slots=True)
class TypeSpec:
    in_app: bool
    email: bool
    sms: bool
    # Account-security messages: the user cannot switch their email/in-app copy off.
    locked: bool = False
    # Which email template renders it (templates/<name>.{subject.txt,txt,html}).
    template: str = "notification"

    def default(self, channel: Channel) -> bool:
        return {Channel.IN_APP: self.in_app, Channel.EMAIL: self.email,
                Channel.SMS: self.sms}[channel]


TASK_ASSIGNED = "task.assigned"
TASK_STATUS_CHANGED = "task.status_changed"
TASK_UNBLOCKED = "task.unblocked"
PROJECT_MEMBER_ADDED = "project.member_added"
ACCOUNT_WELCOME = "account.welcome"
ACCOUNT_VERIFY_EMAIL = "account.verify_email"
ACCOUNT_PASSWORD_RESET = "account.password_reset"  # noqa: S105 (a type name)
WEBHOOK_DISABLED = "webhook.disabled"

TYPES: dict[str, TypeSpec] = {
    TASK_ASSIGNED: TypeSpec(in_app=True, email=True, sms=False),
    TASK_STATUS_CHANGED: TypeSpec(in_app=True, email=False, sms=False),
    TASK_UNBLOCKED: TypeSpec(in_app=True, email=True, sms=False),
    PROJECT_MEMBER_ADDED: TypeSpec(in_app=True, email=True, sms=False),
    ACCOUNT_WELCOME: TypeSpec(in_app=True, email=True, sms=False, template="account.welcome"),
    ACCOUNT_VERIFY_EMAIL: TypeSpec(
        in_app=True, email=True, sms=False, locked=True, template="account.verify_email"
    ),
    ACCOUNT_PASSWORD_RESET: TypeSpec(
        in_app=True, email=True, sms=False, locked=True, template="account.password_reset"
    ),
    WEBHOOK_DISABLED: TypeSpec(in_app=True, email=True, sms=False),
}

# Channels of a locked type that must stay on (SMS stays opt-in: it needs a phone number).
LOCKED_CHANNELS = frozenset({Channel.IN_APP, Channel.EMAIL})
