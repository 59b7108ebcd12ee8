"""TOTP two-factor authentication (RFC 6238): enrollment, removal, and a login's second
step.

- A login whose password is right gets a single-use challenge instead of tokens when the
  user has TOTP on (``verify``), or when the tenant requires 2FA and the user has none yet
  (``enroll``: the challenge lets them enroll, and confirming finishes the login).
- A code is accepted within one 30-second step either side of now, and never twice: the
  credential remembers the step of the last accepted code, and a code of that step or an
  earlier one is refused (the credential's row is locked while it is checked).
- Wrong codes, recovery codes and passwords spend the failed-login budget, counted per
  user: spent before the check, given back on an outage, reset by a right answer.
- TOTP secrets are sealed at rest (``infra.security.crypto``): the server must read them
  back to check codes. Recovery codes are 80-bit random strings stored as SHA-256
  hashes: hashing that much entropy cannot be reversed by guessing, so a slow password
  hash (argon2) would add nothing but a scan of ten hashes per attempt, while SHA-256
  lets the database find the code by its hash.
- Enrolling and removing TOTP end the user's other sessions (never the caller's).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal
from uuid import UUID, uuid4

import pyotp
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.clock import now
from pantherahive.core.errors import NotFound, RateLimited
from pantherahive.domains.identity import events
from pantherahive.domains.identity.errors import (
    GuessThrottled,
    InvalidMfaCode,
    NoPendingEnrollment,
    TotpAlreadyEnabled,
    WrongSecondFactor,
)
from pantherahive.domains.identity.repository import (
    IdentityRepository,
    MfaRepository,
    TenantDirectory,
)
from pantherahive.domains.identity.schemas import MfaLoginRequest, TotpDisable, UserStatus
from pantherahive.domains.identity.service import ClientInfo, IdentityService, IssuedTokens
from pantherahive.domains.identity.tables import MfaChallenge, RecoveryCode, TotpCredential, User
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.context import bind_principal
from pantherahive.infra.db.engine import set_tenant
from pantherahive.infra.ratelimit import RateLimits
from pantherahive.infra.security.crypto import SecretBox, UndecryptableSecret
from pantherahive.infra.security.principal import AuthContext
from pantherahive.infra.security.tokens import hash_token, new_opaque_token, parse_opaque_token

CHALLENGE_PREFIX = "phm"
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # base32: 5 bits a character
_RECOVERY_GROUPS = 4  # of 4 characters: 16 characters, 80 bits
ChallengePurpose = Literal["verify", "enroll"]


@dataclass(frozen=True, slots=True)
class MfaConfig:
    issuer: str
    challenge_ttl: timedelta


@dataclass(frozen=True, slots=True)
class IssuedChallenge:
    challenge: str
    expires_in: int
    enrollment_required: bool


@dataclass(frozen=True, slots=True)
class Enrollment:
    secret: str
    otpauth_uri: str


@dataclass(frozen=True, slots=True)
class _Replayed:
    """A right code of a step at or before the last accepted one."""


_REPLAYED = _Replayed()


class SecondFactor:
    def __init__(
        self,
        identity: IdentityService,
        limits: RateLimits,
        failure_limit: str,
        *,
        box: SecretBox,
        config: MfaConfig,
    ) -> None:
        self.identity = identity
        self.limits = limits
        self.failure_item = limits.parse(failure_limit)
        self.box = box
        self.config = config

    # ---- the login's second step ----------------------------------------------------------
    async def challenge_if_due(self, session: AsyncSession, user: User) -> IssuedChallenge | None:
        """After a right password: a challenge if a second factor is due, else None."""
        repo = MfaRepository(session, user.tenant_id)
        purpose: ChallengePurpose
        if await repo.has_confirmed_totp(user.id):
            purpose = "verify"
        elif await repo.tenant_requires_2fa():
            purpose = "enroll"
        else:
            return None
        token, token_hash = new_opaque_token(CHALLENGE_PREFIX, user.tenant_id)
        ttl = self.config.challenge_ttl
        await IdentityRepository(session, user.tenant_id).add(
            MfaChallenge(
                id=uuid4(), tenant_id=user.tenant_id, user_id=user.id, purpose=purpose,
                token_hash=token_hash, created_at=now(), expires_at=now() + ttl, used_at=None,
            )
        )
        enroll = purpose == "enroll"
        await emit(session, events.MfaChallenged(enrollment_required=enroll), subject_id=user.id)
        return IssuedChallenge(token, int(ttl.total_seconds()), enroll)

    async def complete_login(
        self, session: AsyncSession, *, body: MfaLoginRequest, client: ClientInfo
    ) -> IssuedTokens:
        challenge, user = await self._challenge(session, body.challenge, "verify")
        credential = await MfaRepository(session, user.tenant_id).totp(user.id, for_update=True)
        if credential is None or credential.confirmed_at is None:
            await _failed(session, user.id, "login", "bad_challenge")
            raise InvalidMfaCode()
        await self._spend_attempt(session, user, "login")
        repo = MfaRepository(session, user.tenant_id)
        if body.code is not None:
            step = self._accepted_step(credential, body.code)
            if not isinstance(step, int):
                await _failed(session, user.id, "login", _code_reason(step))
                raise InvalidMfaCode()
            credential.last_step = step
        elif not await repo.spend_recovery_code(
            user.id, _recovery_hash(body.recovery_code or ""), now()
        ):
            await _failed(session, user.id, "login", "bad_recovery_code")
            raise InvalidMfaCode()
        await self._forgive(user)
        challenge.used_at = now()
        tokens = await self.identity.issue_session(session, user, client=client)
        if body.code is not None:
            event: events.MfaSucceeded | events.RecoveryCodeUsed = events.MfaSucceeded(
                session_id=tokens.session_id
            )
        else:
            event = events.RecoveryCodeUsed(
                remaining=await repo.unused_recovery_codes(user.id),
                session_id=tokens.session_id,
            )
        await emit(session, event, subject_id=user.id)
        return tokens

    async def start_login_enrollment(self, session: AsyncSession, *, challenge: str) -> Enrollment:
        """A user whose tenant requires 2FA enrolls with the login's challenge (it stays
        valid until the enrollment is confirmed or it expires)."""
        _challenge, user = await self._challenge(session, challenge, "enroll")
        return await self._start(session, user)

    async def confirm_login_enrollment(
        self, session: AsyncSession, *, challenge: str, code: str, client: ClientInfo
    ) -> tuple[IssuedTokens, list[str]]:
        """Confirm the enrollment with a first code and finish the login: a new session;
        every older one of the user ends (they predate the second factor)."""
        row, user = await self._challenge(session, challenge, "enroll")
        codes = await self._confirm(session, user, code, "enroll")
        row.used_at = now()
        revoked = await IdentityRepository(session, user.tenant_id).revoke_user_sessions(
            user.id, now()
        )
        tokens = await self.identity.issue_session(session, user, client=client)
        await emit(session, events.MfaEnrolled(revoked_sessions=revoked), subject_id=user.id)
        return tokens, codes

    async def _challenge(
        self, session: AsyncSession, token: str, purpose: ChallengePurpose
    ) -> tuple[MfaChallenge, User]:
        """The live challenge of that purpose and its ACTIVE user, the tenant entered."""
        parsed = parse_opaque_token(CHALLENGE_PREFIX, token)
        if parsed is None:
            raise InvalidMfaCode()
        tenant_id, token_hash = parsed
        await set_tenant(session, tenant_id)
        row = await MfaRepository(session, tenant_id).challenge_by_hash(token_hash)
        if row is None:
            raise InvalidMfaCode()
        bind_principal(tenant_id, row.user_id)
        user = await IdentityRepository(session, tenant_id).get_user(row.user_id, for_update=True)
        if (
            row.used_at is not None
            or row.expires_at <= now()
            or row.purpose != purpose
            or user is None
            or user.status != UserStatus.ACTIVE
        ):
            await _failed(session, row.user_id, "login", "bad_challenge")
            raise InvalidMfaCode()
        return row, user

    # ---- a signed-in user's enrollment and removal ----------------------------------------
    async def start_enrollment(self, session: AsyncSession, auth: AuthContext) -> Enrollment:
        return await self._start(session, await _me(session, auth))

    async def confirm_enrollment(
        self, session: AsyncSession, auth: AuthContext, *, code: str
    ) -> list[str]:
        user = await _me(session, auth)
        codes = await self._confirm(session, user, code, "confirm")
        revoked = await IdentityRepository(session, auth.tenant_id).revoke_user_sessions(
            user.id, now(), keep=auth.session_id
        )
        await emit(session, events.MfaEnrolled(revoked_sessions=revoked), subject_id=user.id)
        return codes

    async def disable(self, session: AsyncSession, auth: AuthContext, *, body: TotpDisable) -> None:
        """Needs the password and a code (or a recovery code: the device may be lost)."""
        user = await _me(session, auth)
        repo = MfaRepository(session, auth.tenant_id)
        credential = await repo.totp(user.id, for_update=True)
        if credential is None or credential.confirmed_at is None:
            raise NotFound("Two-factor authentication is not on.")
        await self._spend_attempt(session, user, "disable")
        if not await self.identity.passwords.verify(user.password_hash, body.password):
            await _failed(session, user.id, "disable", "bad_password")
            raise WrongSecondFactor("password", "is not your password")
        if body.code is not None:
            step = self._accepted_step(credential, body.code)
            if not isinstance(step, int):
                await _failed(session, user.id, "disable", _code_reason(step))
                raise WrongSecondFactor("code", "is not a current code")
        elif not await repo.spend_recovery_code(
            user.id, _recovery_hash(body.recovery_code or ""), now()
        ):
            await _failed(session, user.id, "disable", "bad_recovery_code")
            raise WrongSecondFactor("recoveryCode", "is not an unused recovery code")
        await self._forgive(user)
        await repo.remove_second_factor(user.id)
        revoked = await IdentityRepository(session, auth.tenant_id).revoke_user_sessions(
            user.id, now(), keep=auth.session_id
        )
        await emit(session, events.MfaDisabled(revoked_sessions=revoked), subject_id=user.id)

    # ---- shared steps ---------------------------------------------------------------------
    async def _start(self, session: AsyncSession, user: User) -> Enrollment:
        """A new pending secret (replacing a pending one); refused while TOTP is on."""
        repo = MfaRepository(session, user.tenant_id)
        credential = await repo.totp(user.id, for_update=True)
        if credential is not None and credential.confirmed_at is not None:
            raise TotpAlreadyEnabled()
        secret = pyotp.random_base32()
        sealed = self.box.seal(secret.encode(), bound_to=_binding(user.id))
        if credential is None:
            await IdentityRepository(session, user.tenant_id).add(
                TotpCredential(
                    user_id=user.id, tenant_id=user.tenant_id, secret=sealed,
                    confirmed_at=None, last_step=None, created_at=now(),
                )
            )
        else:
            credential.secret = sealed
            credential.last_step = None
            credential.created_at = now()
        tenant = await TenantDirectory(session).get_tenant(user.tenant_id)
        account = f"{user.username}@{tenant.slug}" if tenant else user.username
        uri = pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=self.config.issuer)
        await emit(session, events.MfaEnrollmentStarted(), subject_id=user.id)
        return Enrollment(secret, uri)

    async def _confirm(self, session: AsyncSession, user: User, code: str, step: str) -> list[str]:
        """Turn the pending secret on with a first code; the new recovery codes."""
        repo = MfaRepository(session, user.tenant_id)
        credential = await repo.totp(user.id, for_update=True)
        if credential is None or credential.confirmed_at is not None:
            raise NoPendingEnrollment()
        await self._spend_attempt(session, user, step)
        accepted = self._accepted_step(credential, code)
        if not isinstance(accepted, int):
            await _failed(session, user.id, step, _code_reason(accepted))
            if step == "enroll":
                raise InvalidMfaCode()
            raise WrongSecondFactor("code", "is not the current code")
        await self._forgive(user)
        credential.confirmed_at = now()
        credential.last_step = accepted
        await repo.remove_recovery_codes(user.id)
        codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
        for text in codes:
            await IdentityRepository(session, user.tenant_id).add(
                RecoveryCode(
                    id=uuid4(), tenant_id=user.tenant_id, user_id=user.id,
                    code_hash=_recovery_hash(text), created_at=now(), used_at=None,
                )
            )
        return codes

    def _accepted_step(self, credential: TotpCredential, code: str) -> int | _Replayed | None:
        """The time step ``code`` is right for (one step of clock drift either way), or
        ``_REPLAYED`` if that step was already used, or None."""
        try:
            secret = self.box.open(credential.secret, bound_to=_binding(credential.user_id))
        except UndecryptableSecret:
            # The platform key changed since enrollment: no code can be checked; a
            # recovery code still signs the user in, to enroll again.
            return None
        totp = pyotp.TOTP(secret.decode())
        current = totp.timecode(now())
        for step in (current - 1, current, current + 1):
            if hmac.compare_digest(totp.generate_otp(step), code):
                if credential.last_step is not None and step <= credential.last_step:
                    return _REPLAYED
                return step
        return None

    def _throttle_key(self, user: User) -> tuple[str, str, str]:
        return ("mfa", str(user.tenant_id), str(user.id))

    async def _spend_attempt(self, session: AsyncSession, user: User, step: str) -> None:
        """Spend one unit of the user's guess budget before a check; a 429 (which keeps
        its auth.mfa_failed event) when it is spent."""
        try:
            await self.limits.consume(self.failure_item, *self._throttle_key(user))
        except RateLimited as refused:
            await _failed(session, user.id, step, "throttled")
            raise GuessThrottled.of(refused) from refused

    async def _forgive(self, user: User) -> None:
        await self.limits.clear(self.failure_item, *self._throttle_key(user))


# ---- the tenant's switch (GET/PUT /v1/tenant/sso carries it as `require2fa`) ---------------
async def requires_2fa(session: AsyncSession, tenant_id: UUID) -> bool:
    return await MfaRepository(session, tenant_id).tenant_requires_2fa()


async def set_require_2fa(session: AsyncSession, tenant_id: UUID, *, required: bool) -> bool:
    """Require (or stop requiring) 2FA of every user of the tenant at their next login;
    whether the setting changed. The caller checks that the principal is an ADMIN and
    emits the write's one audited event (with ``require2fa`` among its changes): this
    function emits nothing. Turning it on ends no session."""
    return await MfaRepository(session, tenant_id).set_tenant_requires_2fa(required)


# ---- helpers ---------------------------------------------------------------------------------
async def _me(session: AsyncSession, auth: AuthContext) -> User:
    user = await IdentityRepository(session, auth.tenant_id).get_user(auth.user_id, for_update=True)
    if user is None:
        raise NotFound("No such user.")
    return user


async def _failed(session: AsyncSession, user_id: UUID, step: str, reason: str) -> None:
    await emit(session, events.MfaFailed(step=step, reason=reason), subject_id=user_id)


def _code_reason(result: _Replayed | None) -> str:
    return "replayed_code" if result is _REPLAYED else "bad_code"


def _binding(user_id: UUID) -> bytes:
    return b"totp:" + user_id.bytes


def _new_recovery_code() -> str:
    chars = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(4 * _RECOVERY_GROUPS))
    return "-".join(chars[i : i + 4] for i in range(0, len(chars), 4))


def _recovery_hash(text: str) -> bytes:
    """Case, spaces and dashes do not matter: what a person retypes from paper."""
    normalized = "".join(c for c in text.lower() if c not in "- ")
    return hash_token("recovery:" + normalized)
