"""What a report notebook calls to show its results: :func:`record` and :func:`record_headlines` show a
headline number and mark it for results.json, :func:`summary_box` shows the plain-language summary,
:func:`note` says what was left out, :func:`callout` makes a remark beside a chart or table.

The runner collects the marks from the executed notebook (:func:`collect_results`; no side channel, so it
works the same in JupyterLab). Numbers are rounded to ``RESULT_DIGITS`` significant digits, so the same data
and parameters give a byte-identical results.json.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import re
from typing import Any

RESULT_MIME = "application/vnd.pco.result+json"
RESULT_DIGITS = 10  # significant digits of the numbers in results.json


def _jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars to Python, NaN/inf to None, tuples to lists, floats to
    ``RESULT_DIGITS`` significant digits — the engine sums in parallel, so the last bits of a float can differ
    between runs; rounded, the same data and parameters give the same results.json."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float):
        return float(f"{value:.{RESULT_DIGITS}g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    return value


P_VALUE = "p"  # the format of a p-value on a card: "< 0.001" below that, else three decimals
POINTS = "pts"  # a difference of two shares in percentage points: 0.061 → "+6.1 pts"
MONEY = "$"  # a format starting with it is money in the report's currency: "$,.0f" → "€1,234" (data.currencies)


def _format(value: Any, fmt: str | None) -> str:
    if value is None:
        return "–"
    if fmt == P_VALUE:
        from .formats import p_value

        return p_value(value)
    if fmt == POINTS:
        return f"{value * 100:+.1f} pts"
    if fmt and fmt.startswith(MONEY):
        from pco_lib.data.currencies import money

        return money(value, fmt[len(MONEY):] or ",.0f")
    if fmt:
        return format(value, fmt)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _card(label: str, shown: str) -> str:
    return ('<div class="pco-headline" style="display:inline-block;margin:4px 8px 4px 0;padding:8px 14px;'
            'border:1px solid #d0d7de;border-radius:6px;background:#f6f8fa">'
            f'<div style="font-size:0.8em;color:#57606a">{html.escape(label)}</div>'
            f'<div style="font-size:1.4em;font-weight:600">{html.escape(shown)}</div></div>')


def record(key: str, value: Any, label: str | None = None, fmt: str | None = None, show: bool = True) -> Any:
    """Show a headline number and store it under ``key`` in the run's results.json.

    ``key`` is a stable, documented name (``snake_case``, dots allowed for nesting); ``fmt`` is a Python
    format spec for display only (``",.0f"``, ``".1%"``; ``"p"`` for a p-value: "< 0.001"). Returns
    ``value`` so it can be used inline.
    """
    from IPython.display import display

    clean = _jsonable(value)
    text = f"{label or key}: {_format(clean, fmt) if not isinstance(clean, (dict, list)) else clean}"
    bundle = {RESULT_MIME: {"key": key, "value": clean}, "text/plain": text if show else ""}
    if show and not isinstance(clean, (dict, list)):
        bundle["text/html"] = _card(label or key, _format(clean, fmt))
    display(bundle, raw=True)
    return value


def record_headlines(items: list[tuple], hidden: dict[str, Any] | None = None) -> None:
    """Record several headline numbers and show them as one row of cards.

    ``items``: tuples ``(key, value, label[, fmt[, (low, high)]])`` as for :func:`record`, with the value's
    interval where there is one; ``hidden``: more results.json values (key → value) recorded without a card.
    The cards also go to results.json ``headlines`` (key, label, value, shown, low/high), which the index
    shows and compares with the previous good run (:mod:`.changes`).
    """
    from IPython.display import HTML, display

    for key, value in (hidden or {}).items():
        record(key, value, show=False)
    cards, headlines = [], []
    for key, value, label, *more in items:
        fmt = more[0] if more else None
        record(key, value, label, fmt, show=False)
        clean = _jsonable(value)
        shown = _format(clean, fmt)
        cards.append(_card(label, shown))
        headline = {"key": key, "label": label, "value": clean, "shown": shown}
        if len(more) > 1 and more[1] is not None:
            low, high = (_jsonable(v) for v in more[1])
            if low is not None and high is not None:
                headline |= {"low": low, "high": high, "low_shown": _format(low, fmt),
                             "high_shown": _format(high, fmt)}
        headlines.append(headline)
    record("headlines", headlines, show=False)
    display(HTML(f"<div class='pco-headlines'>{''.join(cards)}</div>"))


def _no_math(markdown: str) -> str:
    """Markdown whose dollar signs are money, not LaTeX: two "$" in a line would become a formula (and
    "**+$7.40**" stars on the page)."""
    return re.sub(r"(?<!\\)\$", r"\\$", markdown)


def summary_box(points: list[str], title: str | None = None) -> None:
    """The plain-language summary at the top of a report, as a highlighted box (Markdown allowed)."""
    from IPython.display import Markdown, display

    body = "\n".join(f"- {_no_math(p)}" for p in points)
    heading = f"**{title}**\n\n" if title else ""
    display(Markdown(f"<div class='pco-summary' style='border-left:4px solid #0969da;background:#f1f8ff;"
                     f"padding:8px 16px;margin:8px 0'>\n\n{heading}{body}\n\n</div>"))


_TONES = {  # text colour, background, icon (inline SVG: no emoji, which render as boxes without an emoji font)
    "positive": ("#1a7f37", "#dafbe1", '<path d="M3 8.5l3 3 7-7"/>'),
    "mixed": ("#9a6700", "#fff8c5", '<path d="M8 2v12M5 14h6M2 5h12M2 5l-1.5 4h3zM14 5l-1.5 4h3z"/>'),
    "waiting": ("#0969da", "#ddf4ff", '<circle cx="8" cy="8" r="6"/><path d="M8 4.5V8l2.5 1.5"/>'),
    "neutral": ("#57606a", "#f6f8fa", '<rect x="4" y="4" width="8" height="8"/>'),
    "negative": ("#cf222e", "#ffebe9", '<path d="M4 4l8 8M12 4l-8 8"/>'),
    "warning": ("#bc4c00", "#fff1e5", '<path d="M8 1.8l6.7 12H1.3z"/><path d="M8 6.5v3.2M8 11.6v.4"/>'),
}


def details(table, summary: str = "Details for analysts") -> None:
    """Show ``table`` (a pandas Styler) collapsed under ``summary`` (HTML ``<details>``): model internals
    stay on the page for analysts without standing between a stakeholder and the result."""
    from IPython.display import HTML, display

    display(HTML(f"<details class='pco-details'><summary>{html.escape(summary)}</summary>{table.to_html()}"
                 "</details>"))


def verdict_banner(tone: str, title: str, text: str = "") -> None:
    """The decision at the top of a report, styled by its outcome: ``tone`` is one of positive, mixed,
    waiting, neutral, negative or warning (e.g. ship, trade-off, keep running, stop, do not ship, do not trust)."""
    from IPython.display import HTML, display

    colour, background, icon = _TONES[tone]
    svg = (f'<svg width="22" height="22" viewBox="0 0 16 16" fill="none" stroke="{colour}" stroke-width="1.8" '
           f'stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" style="flex:none">{icon}</svg>')
    display(HTML(
        f'<div class="pco-verdict pco-verdict-{tone}" role="status" style="display:flex;gap:12px;'
        f'align-items:flex-start;border:2px solid {colour};background:{background};border-radius:8px;'
        f'padding:10px 16px;margin:8px 0">'
        f'{svg}<div><div style="font-size:1.25em;font-weight:700;color:{colour}">{html.escape(title)}</div>'
        f'<div style="margin-top:2px">{html.escape(text)}</div></div></div>'))


def callout(text: str) -> None:
    """A short remark on the page beside a chart or table ("Holdout AUC 0.71 on 5,183 customers"), in the
    page's style instead of a monospace ``print`` line; ``**bold**`` is allowed."""
    from IPython.display import HTML, display

    body = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text))
    display(HTML(f"<p class='pco-callout'>{body}</p>"))


def note(text: str) -> None:
    """Say on the page what the report left out or changed, and add it to the ``notes`` list of results.json
    (e.g. "There is no subscriptions table, so …")."""
    from IPython.display import display

    bundle = {RESULT_MIME: {"key": "notes", "append": text}, "text/plain": text,
              "text/html": f"<div class='pco-note'>{html.escape(text)}</div>"}
    display(bundle, raw=True)


def write_csv(frame, path) -> None:
    """Write a customer-level table beside the report (``path`` relative to the run folder): the same CSV as
    ``frame.to_csv(path, index=False)`` (header, no index, empty for missing, numbers that read back to the
    same float; booleans as true/false), written by DuckDB: 1.4 s instead of 16 s for clv's million customers."""
    import duckdb

    with duckdb.connect() as con:
        con.from_df(frame.reset_index(drop=True)).write_csv(str(path))


def collect_results(nb) -> dict[str, Any]:
    """The values recorded with :func:`record` (and :func:`note`) in an executed notebook, as a (nested)
    dict."""
    results: dict[str, Any] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            payload = out.get("data", {}).get(RESULT_MIME)
            if payload is None:
                continue
            if isinstance(payload, str):
                payload = json.loads(payload)
            if "append" in payload:  # note()
                results.setdefault(payload["key"], []).append(payload["append"])
                continue
            if payload["key"] == "notes" and isinstance(payload["value"], list):  # a readout's notes, recorded
                results.setdefault("notes", []).extend(payload["value"])
                continue
            target = results
            *parents, leaf = payload["key"].split(".")
            for part in parents:
                target = target.setdefault(part, {})
            target[leaf] = payload["value"]
    return results
