"""The ``optforge`` command: every Typer/Rich command, a thin shell over the Python API.

The only package that imports typer or rich (tested): the core packages return values and
raise precise errors; the commands here print them.

main.py     the ``optforge`` Typer app (the entry point ``optforge.cli:app``)
search.py   ``optforge search`` (options generated from SearchConfig); display.py its
            live display
bench.py    ``optforge bench``; tables.py the benchmark's tables on a terminal
export.py   ``optforge export``;  report.py ``optforge report``
runs.py     ``optforge runs list|show``;  zoo.py ``optforge zoo list|show``
demo.py     ``optforge demo``: search, bench, export and report in one run
errors.py   ``error: MESSAGE`` and SIGTERM as an interrupt;  output.py output off a terminal
tblog.py    ``--tensorboard DIR``: TensorBoard logs of search and bench
"""

from .main import app

__all__ = ["app"]
