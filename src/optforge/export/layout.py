"""Text layout of the exported update functions: names, line wrapping, comments."""

from __future__ import annotations

import keyword
import textwrap
from dataclasses import dataclass, field

LINE = 100
INDENT = "    "
RESERVED = frozenset({
    "torch", "math", "numbers", "zip", "len", "float", "int", "sum", "abs", "max", "min",
    "range", "isinstance", "complex", "self", "super", "None", "True", "False",
})
"""Names the generated code uses itself; program names equal to one are renamed."""


class Namer:
    """Unique Python names (each bound once): a program name keeps its own at its first
    binding; temporaries avoid every program name."""

    def __init__(self, program_names: set[str]):
        self.used: set[str] = set(RESERVED)
        self.program = set(program_names)

    def claim(self, name: str) -> str:
        """``name`` if still free, else a fresh variant of it."""
        if name.isidentifier() and not keyword.iskeyword(name) and name not in self.used:
            self.used.add(name)
            return name
        return self.fresh(name)

    def fresh(self, base: str) -> str:
        """A name derived from ``base`` that is neither used nor a program name."""
        base = base if base.isidentifier() and not keyword.iskeyword(base) else "v"
        taken = self.used | self.program
        name, i = base, 2
        while name in taken:
            name, i = f"{base}_{i}", i + 1
        self.used.add(name)
        return name


@dataclass
class Emitter:
    """Python-float code (``scalar``) and tensor code (``kernel``, floats as Python floats).
    The program statement being lowered is written as a comment before its first line in
    each stream."""

    kernel: list[str] = field(default_factory=list)
    scalar: list[str] = field(default_factory=list)
    note: str | None = None
    noted: list[list[str]] = field(default_factory=list)

    def begin(self, text: str) -> None:
        self.note, self.noted = text, []

    def end(self) -> None:
        if self.note is not None and not self.noted:
            self._comment(self.kernel, self.note)
            self._comment(self.kernel, "(computed where it is used)")
        self.note = None

    def line(self, text: str) -> None:
        """A line of tensor code."""
        self._emit(self.kernel, text)

    def scalar_line(self, text: str) -> None:
        self._emit(self.scalar, text)

    def _emit(self, stream: list[str], text: str) -> None:
        if self.note is not None and not any(stream is s for s in self.noted):
            self._comment(stream, self.note)
            self.noted.append(stream)
        stream.extend(wrap_line(INDENT + text))

    @staticmethod
    def _comment(stream: list[str], text: str) -> None:
        for line in textwrap.wrap(text, LINE - len(INDENT) - 2, subsequent_indent="    "):
            stream.append(f"{INDENT}# {line}")


def wrap_line(line: str) -> list[str]:
    """Fit a line of code into LINE characters: break inside its longest bracket pair
    (one argument per line if they do not fit on one), recursively."""
    if len(line) <= LINE:
        return [line]
    indent = line[: len(line) - len(line.lstrip())]
    stack, best = [], None
    for i, ch in enumerate(line):
        if ch in "([{":
            stack.append(i)
        elif ch in ")]}" and stack:
            j = stack.pop()
            if i - j > 1 and (best is None or i - j > best[1] - best[0]):
                best = (j, i)
    if best is None:
        head, eq, rhs = line.partition(" = ")
        if eq and len(indent + INDENT + rhs) <= LINE:  # x = (\n    long expression\n)
            return [f"{head} = (", indent + INDENT + rhs, indent + ")"]
        return [line + "  # noqa: E501"]
    j, i = best
    head, body, tail = line[: j + 1], line[j + 1: i], line[i:]
    inner = indent + INDENT + body.strip()
    parts = _split_top(body)
    if len(inner) > LINE and len(parts) > 1:
        lines = [head]
        for part in parts:
            lines += wrap_line(f"{indent}{INDENT}{part},")
        return [*lines, indent + tail]
    if len(inner) >= len(line):  # no progress
        return [line + "  # noqa: E501"]
    return [head, *wrap_line(inner), indent + tail]


def _split_top(text: str) -> list[str]:
    parts, depth, last = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[last:i])
            last = i + 1
    parts.append(text[last:])
    return [p for p in (p.strip() for p in parts) if p]


def docstring(text: str) -> list[str]:
    """A function docstring, wrapped to the line length."""
    lines = textwrap.wrap(f'"""{text}', LINE - len(INDENT))
    if len(lines[-1]) + 3 + len(INDENT) <= LINE:
        lines[-1] += '"""'
    else:
        lines.append('"""')
    return [INDENT + line for line in lines]
