"""The one way the commands report bad input: ``error: MESSAGE`` on one logical line."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape


def print_error(console: Console, err: BaseException | str) -> None:
    """Print ``error: MESSAGE``; the message is markup-escaped (a path like ``[/x]`` is text)
    and never wrapped (paths stay whole to copy)."""
    # a KeyError's str() is its key's repr ('"no zoo optimizer ..."'): print the message itself
    text = err.args[0] if isinstance(err, KeyError) and err.args else err
    console.print(f"[red]error:[/red] {escape(str(text))}", highlight=False, soft_wrap=True)
