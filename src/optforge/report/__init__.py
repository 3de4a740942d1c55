"""``optforge report``: a search run directory as one self-contained HTML page.

:func:`make_report` reads the run store (:mod:`.data`), draws the figures
(:mod:`.figures`, matplotlib Agg, also written as PNG files), and writes the page
(:mod:`.build`, :mod:`.html`): no network is needed to view it. See docs/REPORT.md.
"""

from __future__ import annotations

from .build import Report, make_report
from .data import RunData, load_run

__all__ = ["Report", "RunData", "load_run", "make_report"]
