"""``python -m pantherahive.cli``: the same as the ``pantherahive`` command."""

from pantherahive.cli.main import app

app()
