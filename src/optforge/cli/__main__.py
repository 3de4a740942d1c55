"""``python -m optforge.cli``: the ``optforge`` command."""

from .app import app

app()
