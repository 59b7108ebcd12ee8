"""The events identity publishes: its public contract with the rest of the platform."""

from __future__ import annotations

TENANT_CREATED = "tenant.created"
USER_CREATED = "user.created"
USER_UPDATED = "user.updated"
USER_ROLE_CHANGED = "user.role_changed"
USER_STATUS_CHANGED = "user.status_changed"
USER_DEACTIVATED = "user.deactivated"
USER_PASSWORD_CHANGED = "user.password_changed"
USER_EMAIL_VERIFIED = "user.email_verified"
LOGIN_SUCCEEDED = "auth.login_succeeded"
LOGIN_FAILED = "auth.login_failed"
LOGGED_OUT = "auth.logged_out"
REFRESH_REUSED = "auth.refresh_reused"
PASSWORD_RESET_REQUESTED = "auth.password_reset_requested"
VERIFICATION_REQUESTED = "auth.email_verification_requested"
AUTHZ_DENIED = "authz.denied"
