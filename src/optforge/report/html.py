"""HTML pieces of the report: one self-contained page, inline CSS, no script.

Every text that comes from a run (program source, diffs, formulas, task and file
names, error messages) goes through :func:`esc`; figures are ``<img>`` elements
with ``data:image/png;base64`` URIs, so the page needs no network and no other file.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Sequence

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 0 auto; max-width: 1100px; padding: 0 1.2em 3em; color: #1d1d1f;
       line-height: 1.45; }
h1 { margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.8em; }
h3 { margin-bottom: 0.3em; }
h4 { margin: 0.4em 0 0.2em; }
.muted { color: #666; }
.banner { padding: 0.7em 1em; border-radius: 6px; margin: 1em 0; }
.banner.warn { background: #fff4e5; border: 1px solid #f0b45b; }
.banner.ok { background: #ecf8ef; border: 1px solid #7cc48d; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left;
         vertical-align: top; }
th { background: #f5f5f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
pre { background: #f6f8fa; border: 1px solid #e1e4e8; border-radius: 4px;
      padding: 0.6em 0.8em; overflow-x: auto; font-size: 0.85em; margin: 0.3em 0; }
pre.formula { background: #fbfbf4; }
td pre { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
td { max-width: 640px; }
.diff .add { color: #116329; background: #e6ffec; display: block; }
.diff .del { color: #82071e; background: #ffebe9; display: block; }
.diff .hunk { color: #0550ae; display: block; }
.diff .file { color: #57606a; display: block; }
figure { margin: 0.8em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
details > summary { cursor: pointer; color: #0550ae; }
.step { border-left: 3px solid #d0d7de; padding-left: 0.8em; margin: 0.8em 0; }
code { background: #f2f2f2; padding: 0 0.25em; border-radius: 3px; }
"""


def esc(text: object) -> str:
    """HTML-escaped text (quotes too)."""
    return html.escape(str(text), quote=True)


def num(x: float | None, fmt: str = "+.4f") -> str:
    if x is None:
        return "-"
    if isinstance(x, str):  # result.json keeps non-finite numbers as strings
        return esc(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "-inf" if x < 0 else "inf"
    return format(x, fmt)


def pre(text: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<pre{attr}>{esc(text.rstrip())}</pre>"


def diff(text: str) -> str:
    """A unified diff with added, removed and hunk lines marked."""
    lines = []
    for line in text.rstrip("\n").split("\n"):
        if line.startswith(("+++", "---")):
            cls = "file"
        elif line.startswith("@@"):
            cls = "hunk"
        elif line.startswith("+"):
            cls = "add"
        elif line.startswith("-"):
            cls = "del"
        else:
            lines.append(esc(line))
            continue
        lines.append(f'<span class="{cls}">{esc(line)}</span>')
    # spans of display: block carry their own line break
    out = ""
    for line in lines:
        out += line if line.startswith("<span") else line + "\n"
    return f'<pre class="diff">{out}</pre>'


def figure(png: bytes, alt: str, caption: str, file: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt)}">'
            f"<figcaption>{esc(caption)} (<code>{esc(file)}</code>)</figcaption></figure>")


def table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()
          ) -> str:
    """Cells are HTML already (escape text with :func:`esc` first)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                        for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<link rel=\"icon\" href=\"data:,\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n"
            "</body>\n</html>\n")
