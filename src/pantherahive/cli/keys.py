"""``pantherahive keys``: the access-token signing keys, and rotating them without logging
anyone out (docs/identity.md, "Signing keys")."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import typer

from pantherahive.cli.common import fail
from pantherahive.core import clock
from pantherahive.infra.security.signing_keys import (
    RELOAD_INTERVAL_SECONDS,
    KeyRing,
    SigningKeyError,
)
from pantherahive.infra.security.tokens import LEEWAY_SECONDS
from pantherahive.settings import get_settings

app = typer.Typer(
    help=(
        "Access-token signing keys (PANTHERAHIVE_SIGNING_KEYS_DIR): list, add, activate, "
        "retire, prune. Running processes pick changes up within a second."
    ),
    no_args_is_help=True,
)
Kid = Annotated[str, typer.Argument(help="The key's id, as `keys list` shows it.")]


def _ring() -> KeyRing:
    return KeyRing(get_settings().signing_keys_path)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


@app.command("list")
def list_keys() -> None:
    """Every key with its state: active (signs), published (verifies, ready to activate),
    retired (verifies until the time shown), expired (to be pruned)."""
    ring = _ring()
    try:
        manifest = ring.manifest()
    except ValueError as exc:
        fail(f"Cannot read the keys in {ring.directory}: {exc}")
    typer.echo(f"Signing keys in {ring.directory}")
    if manifest is None or not manifest.keys:
        typer.echo("  none yet: run `pantherahive keys add --activate`")
        return
    moment = clock.now()
    typer.echo(f"  {'KID':<20} {'STATE':<10} {'CREATED':<24} VERIFIES UNTIL")
    for entry in manifest.keys:
        state = manifest.status(entry, moment)
        typer.echo(
            f"  {entry.kid:<20} {state:<10} {_when(entry.created_at):<24} "
            f"{_when(entry.verify_until) if entry.verify_until else 'while published'}"
        )


@app.command()
def add(
    activate: Annotated[
        bool,
        typer.Option(
            "--activate",
            help="Sign new tokens with it at once (a first key; or when no other service "
            "caches /.well-known/jwks.json).",
        ),
    ] = False,
) -> None:
    """Create a new Ed25519 key. Every process verifies with it (and publishes it) at once;
    without --activate it signs nothing until `keys activate`."""
    ring = _ring()
    try:
        entry = ring.add(activate=activate)
    except (OSError, ValueError, SigningKeyError) as exc:
        fail(f"Could not add a key in {ring.directory}: {exc}")
    typer.secho(f"Added key {entry.kid} in {ring.directory}.", fg=typer.colors.GREEN)
    if activate:
        typer.echo(f"  {entry.kid} now signs new access tokens.")
    else:
        typer.echo(
            f"  Published; make it the signer with `pantherahive keys activate {entry.kid}`."
        )


@app.command()
def activate(kid: Kid) -> None:
    """Sign new tokens with KID. Tokens signed by the previous key keep verifying."""
    ring = _ring()
    try:
        previous = ring.activate(kid)
    except (OSError, ValueError, SigningKeyError) as exc:
        fail(f"Could not activate {kid}: {exc}")
    if previous == kid:
        typer.echo(f"Key {kid} already signs new access tokens; nothing changed.")
        return
    typer.secho(f"Key {kid} now signs new access tokens.", fg=typer.colors.GREEN)
    if previous is not None:
        typer.echo(
            f"  {previous} no longer signs but still verifies; retire it with "
            f"`pantherahive keys retire {previous}`."
        )


@app.command()
def retire(kid: Kid) -> None:
    """Stop publishing KID once every token it signed has expired (the access-token
    lifetime from now); refused for the key that signs."""
    settings = get_settings()
    # the lifetime of the last token it signed, the clock skew allowed, and the moment a
    # running process may take to notice that another key signs now
    grace = timedelta(
        seconds=settings.access_token_ttl_seconds + LEEWAY_SECONDS + RELOAD_INTERVAL_SECONDS
    )
    ring = _ring()
    try:
        entry = ring.retire(kid, grace=grace)
    except (OSError, ValueError, SigningKeyError) as exc:
        fail(f"Could not retire {kid}: {exc}")
    typer.secho(
        f"Key {kid} is retired: it verifies until {_when(entry.verify_until)}, then "
        "`pantherahive keys prune` deletes it.",
        fg=typer.colors.GREEN,
    )


@app.command()
def prune() -> None:
    """Delete the retired keys whose tokens have all expired."""
    ring = _ring()
    try:
        gone = ring.prune()
    except (OSError, ValueError, SigningKeyError) as exc:
        fail(f"Could not prune the keys in {ring.directory}: {exc}")
    if not gone:
        typer.echo("No retired key has expired; nothing deleted.")
        return
    for entry in gone:
        typer.secho(
            f"Deleted key {entry.kid} (retired {_when(entry.retired_at)}).", fg=typer.colors.GREEN
        )
