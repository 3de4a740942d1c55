"""``python -m optforge.cli``: the ``optforge`` command."""

from .main import app

app()
