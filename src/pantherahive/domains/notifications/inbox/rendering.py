"""Jinja2 templates kept in the package: plain text + HTML for email, plain text for SMS."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).parent / "templates"
SMS_TEMPLATE = "notification.sms"


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@lru_cache(maxsize=1)
def _env() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
        undefined=StrictUndefined,
        keep_trailing_newline=False,
        auto_reload=False,
    )


def render_email(template: str, context: dict[str, Any]) -> RenderedEmail:
    env = _env()
    subject = env.get_template(f"{template}.subject.txt").render(context)
    return RenderedEmail(
        # A header line: newlines would let a title inject headers.
        subject=" ".join(subject.split()),
        text=env.get_template(f"{template}.txt").render(context),
        html=env.get_template(f"{template}.html").render(context),
    )


def render_sms(context: dict[str, Any]) -> str:
    text = _env().get_template(f"{SMS_TEMPLATE}.txt").render(context)
    return " ".join(text.split())[:1600]
