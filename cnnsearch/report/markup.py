"""Small HTML pieces every report section uses: paragraphs, images, badges, tables, numbers for display."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd

#: A failure reason longer than this is cut in the table; the full text is on hover (title) and in a cell's details.
REASON_CHARS = 60


@dataclass
class Section:
    """A titled part of the report: HTML body, or a statement of why it is missing."""

    title: str
    body: str
    anchor: str = ""


def p(text: str, cls: str = "") -> str:
    """A paragraph of plain text (escaped)."""
    c = f' class="{cls}"' if cls else ""
    return f"<p{c}>{html.escape(text)}</p>"


def img(uri: str, alt: str, cls: str = "") -> str:
    """An inline figure; ``alt`` says what it shows (read aloud, and shown when the image cannot be)."""
    c = f' class="{cls}"' if cls else ""
    return f'<img src="{uri}" alt="{html.escape(alt)}"{c}>'


def pp(v: float | None) -> str:
    """A difference of accuracies (fractions) in percentage points: ``+0.24 pp``."""
    return "n/a" if v is None else f"{100 * v:+.2f} pp"


def interval(ci: Sequence[float] | None) -> str:
    """A 95% interval of a difference in pp: ``[+0.18, +0.31]`` (empty when there is none)."""
    if not ci or ci[0] is None or ci[1] is None:
        return ""
    return f"[{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]"


def badge(word: str) -> str:
    """A verdict word as a coloured badge: better, worse, inconclusive."""
    return f"<strong class='verdict {html.escape(word)}'>{html.escape(word)}</strong>"


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 trial``, ``2 trials``, ``1,000 trials``."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def tidy(v: Any) -> Any:
    """A value for display: 0.15000000000000002 (a float step's rounding) as 0.15, 4.0 as 4."""
    if isinstance(v, float) and math.isfinite(v):
        r = round(v, 6)
        return int(r) if r.is_integer() and abs(r) < 1e15 else r
    return v


def table(rows: list[dict[str, Any]], *, cls: str = "trials", ident: str = "", row_cls: Sequence[str] = (),
          raw: Sequence[str] = ()) -> str:
    """An HTML table of already formatted cells (escaped, except the columns named in ``raw``)."""
    if not rows:
        return ""
    heads = list(rows[0])
    out = [f"<table class='{cls}'" + (f" id='{ident}'" if ident else "") + "><thead><tr>"
           + "".join(f"<th>{html.escape(h)}</th>" for h in heads) + "</tr></thead><tbody>"]
    for i, r in enumerate(rows):
        c = row_cls[i] if i < len(row_cls) else ""
        cells = "".join(f"<td>{r[h] if h in raw else html.escape(str(r[h]))}</td>" for h in heads)
        out.append(f"<tr class=\"{c}\">{cells}</tr>" if c else f"<tr>{cells}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def frame(df: pd.DataFrame, **kwargs: Any) -> str:
    """A pandas frame of formatted cells as an HTML table (see :func:`table`)."""
    return table(df.fillna("").to_dict("records"), **kwargs)


def reason_cell(text: str) -> str:
    """A failure reason: short ones whole; long ones cut, with the full text on hover (title)."""
    if len(text) <= REASON_CHARS:
        return html.escape(text)
    return (f"<span class='reason' title=\"{html.escape(text)}\">{html.escape(text[:REASON_CHARS].rstrip())}"
            "…</span>")


__all__ = ["REASON_CHARS", "Section", "badge", "frame", "img", "interval", "p", "plural", "pp", "reason_cell",
           "table", "tidy"]
