"""The one way the commands report bad input: ``error: MESSAGE`` on one logical line."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape


def print_error(console: Console, err: BaseException | str) -> None:
    """Print ``error: MESSAGE``; the message is markup-escaped (a path like ``[/x]`` is text)
    and never wrapped (paths stay whole to copy)."""
    # a KeyError's str() is its key's repr ('"no zoo optimizer ..."'): print the message itself
    text = err.args[0] if isinstance(err, KeyError) and err.args else err
    console.print(f"[red]error:[/red] {escape(str(text))}", highlight=False, soft_wrap=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that the run stops the same way."""


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (the command then says how to
    resume, instead of dying silently); the previous handler is restored after it."""
    def handler(signum, frame):
        raise Terminated("terminated (SIGTERM)")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted(err: KeyboardInterrupt) -> str:
    return "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"


def exit_code(err: KeyboardInterrupt) -> int:
    """128 + the signal's number, as a shell reports a death by that signal."""
    return 128 + (signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT)
