"""The docs that list things must list all of them."""

from __future__ import annotations

from pathlib import Path

from pantherahive.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def env_names(name: str, field: object) -> list[str]:
    alias = getattr(field, "validation_alias", None)
    if alias is not None:
        return [str(choice) for choice in alias.choices]
    return [f"PANTHERAHIVE_{name.upper()}"]


def test_every_setting_is_in_the_configuration_table() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [
        env_names(name, field)[0]
        for name, field in Settings.model_fields.items()
        if not any(f"`{env}`" in text for env in env_names(name, field))
    ]
    assert not missing, f"undocumented settings: {missing}"


def test_readme_shows_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make run" in readme
    assert "make test" in readme
