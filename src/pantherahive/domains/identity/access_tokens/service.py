"""Personal access tokens: made and revoked by their user, listed and revoked by the
tenant's ADMINs, and turned into a principal on every request that presents one.

A token never exceeds its user's role: its scopes only narrow what the *live* role allows
(read on every request, so a demotion or deactivation applies at once), and the scopes
that only an ADMIN could use cannot be put on a non-ADMIN's token.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.clock import now
from pantherahive.core.errors import FieldError, NotFound, Unauthenticated, ValidationFailed
from pantherahive.core.pagination import cut_time_id_page, decode_time_id_cursor
from pantherahive.domains.identity import events
from pantherahive.domains.identity.access_tokens import repository
from pantherahive.domains.identity.access_tokens.repository import AccessTokenRepository
from pantherahive.domains.identity.access_tokens.schemas import AccessTokenCreate
from pantherahive.domains.identity.access_tokens.tables import AccessToken
from pantherahive.domains.identity.schemas import UserStatus
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.context import bind_principal
from pantherahive.infra.security.authz import deny
from pantherahive.infra.security.principal import AuthContext, Role
from pantherahive.infra.security.scopes import grantable
from pantherahive.infra.security.tokens import new_personal_token, parse_personal_token

# lastUsedAt is kept to the minute: one write per token a minute, not one per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenAction(StrEnum):
    GRANT_SCOPES = "token.grant_scopes"
    LIST_TENANT = "token.list_tenant"
    REVOKE_ANY = "token.revoke_any"


async def authenticate(session: AsyncSession, token: str) -> AuthContext:
    """The live principal of a personal access token, narrowed to its scopes."""
    parsed = parse_personal_token(token)
    if parsed is None:
        raise Unauthenticated("The access token is not valid.")
    tenant_id, token_hash = parsed
    current = now()
    row = await repository.authenticate(
        session, tenant_id, token_hash, now=current,
        touch_before=current - LAST_USED_RESOLUTION,
    )
    if row is None:
        raise Unauthenticated("The access token is not valid.")
    expires_at = row["expires_at"]
    if (
        row["revoked_at"] is not None
        or (expires_at is not None and expires_at <= current)
        or row["status"] != UserStatus.ACTIVE
    ):
        raise Unauthenticated("The access token has expired or been revoked.")
    bind_principal(tenant_id, row["user_id"], token_id=row["id"])
    return AuthContext(
        tenant_id=tenant_id,
        user_id=row["user_id"],
        role=Role(row["role"]),
        scopes=frozenset(row["scopes"]),
        token_id=row["id"],
    )


async def create_token(
    session: AsyncSession, auth: AuthContext, *, body: AccessTokenCreate
) -> tuple[AccessToken, str]:
    """A new token of the caller's, and the token itself (shown once, stored hashed)."""
    scopes = sorted(set(body.scopes))
    beyond = [scope.value for scope in scopes if scope not in grantable(auth.role)]
    if beyond:
        raise await deny(
            session, auth, TokenAction.GRANT_SCOPES.value, subject_type="user",
            subject_id=auth.user_id,
            detail=f"Your role may not grant the scope {beyond[0]}: it needs the ADMIN role.",
            data={"scopes": beyond},
        )
    current = now()
    if body.expires_at is not None and body.expires_at <= current:
        raise ValidationFailed(
            "expiresAt must be in the future.",
            errors=[FieldError("expiresAt", "must be in the future")],
        )
    issued = new_personal_token(auth.tenant_id)
    token = AccessToken(
        id=uuid4(),
        tenant_id=auth.tenant_id,
        user_id=auth.user_id,
        name=body.name,
        scopes=[scope.value for scope in scopes],
        prefix=issued.prefix,
        token_hash=issued.token_hash,
        created_at=current,
        expires_at=body.expires_at,
        last_used_at=None,
        revoked_at=None,
    )
    await AccessTokenRepository(session, auth.tenant_id).add(token)
    await emit(
        session,
        events.AccessTokenCreated(
            token_id=token.id, name=token.name, scopes=token.scopes,
            expires_at=token.expires_at,
        ),
        subject_id=auth.user_id,
    )
    return token, issued.token


async def list_tokens(
    session: AsyncSession,
    auth: AuthContext,
    *,
    mine: bool,
    user_id: UUID | None = None,
    cursor: str | None,
    limit: int,
) -> tuple[list[AccessToken], str | None]:
    """The caller's live tokens (``mine``), or the tenant's (ADMIN; ``user_id`` filters)."""
    if not mine and not auth.is_admin:
        raise await deny(
            session, auth, TokenAction.LIST_TENANT.value, subject_type="tenant",
            subject_id=auth.tenant_id,
        )
    rows = await AccessTokenRepository(session, auth.tenant_id).list_live(
        user_id=auth.user_id if mine else user_id,
        after=decode_time_id_cursor(cursor),
        limit=limit + 1,
    )
    return cut_time_id_page(rows, limit, lambda token: (token.created_at, token.id))


async def revoke_token(
    session: AsyncSession, auth: AuthContext, token_id: UUID, *, mine: bool
) -> None:
    """Revoke one of the caller's tokens (``mine``), or any of the tenant's (ADMIN). It
    stops working at once: every request reads the token's row."""
    if not mine and not auth.is_admin:
        raise await deny(
            session, auth, TokenAction.REVOKE_ANY.value, subject_type="access_token",
            subject_id=token_id,
        )
    repo = AccessTokenRepository(session, auth.tenant_id)
    token = await repo.live(token_id, user_id=auth.user_id if mine else None)
    if token is None:
        raise NotFound("No such token.")
    token.revoked_at = now()
    await session.flush()
    await emit(
        session,
        events.AccessTokenRevoked(token_id=token.id, name=token.name),
        subject_id=token.user_id,
    )
