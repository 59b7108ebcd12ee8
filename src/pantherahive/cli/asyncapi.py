"""``pantherahive asyncapi``: the AsyncAPI 3.0 document of every event the platform
publishes (committed as ``docs/asyncapi.yaml``, served at ``/asyncapi.json``)."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml


class Format(enum.StrEnum):
    JSON = "json"
    YAML = "yaml"


def register(app: typer.Typer) -> None:
    app.command()(asyncapi)


def render(document: dict[str, Any], fmt: Format) -> str:
    if fmt is Format.YAML:
        text: str = yaml.safe_dump(document, sort_keys=True, allow_unicode=True, width=100)
        return text
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def asyncapi(
    output: Annotated[
        Path | None, typer.Option(help="Write the document here instead of printing it.")
    ] = None,
    fmt: Annotated[
        Format | None,
        typer.Option("--format", help="Default: yaml for a .yaml/.yml output, else json."),
    ] = None,
) -> None:
    """Print the AsyncAPI 3.0 document of the platform's events (generated from the
    services' event classes); `--output docs/asyncapi.yaml` refreshes the committed one."""
    from pantherahive.consumers import asyncapi as document

    if fmt is None:
        is_yaml = output is not None and output.suffix in {".yaml", ".yml"}
        fmt = Format.YAML if is_yaml else Format.JSON
    text = render(document(), fmt)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.secho(f"Wrote {output}", err=True, fg=typer.colors.GREEN)
