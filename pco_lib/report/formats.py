"""One formatting layer for the tables and cards of a stakeholder page: human column labels (no snake_case
on the page), p-values as people read them ("< 0.001", never 1.02e-08), counts as integers, money in the
report's currency, "–" for a missing value.

``styled(frame, formats)`` is the one call a notebook makes for a table::

    styled(readout.effects[columns], {"control_mean": "{:,.3f}", "relative": "{:+.1%}"})

Formats are keyed by the column names in the code; the page shows :data:`LABELS`. A format starting with "$" is
money in the report's currency (``"$,.2f"`` → "€12.50", :func:`pco_lib.data.currencies.money`). Columns whose name
ends in ``p_value`` or ``p_value_adjusted`` get :func:`p_value` unless a format is given.
"""

from __future__ import annotations

import html
import math
import re
from typing import Any

LABELS = {
    "metric": "Metric", "variant": "Arm", "segment": "Segment", "n": "Customers",
    "control_mean": "Control", "treatment_mean": "Treatment",
    "effect": "Change", "ci_low": "Interval low", "ci_high": "Interval high",
    "p_value": "p-value", "p_value_adjusted": "p-value (adjusted)",
    "relative": "Relative lift", "relative_ci_low": "Lift, low", "relative_ci_high": "Lift, high",
    "relative_p_value": "Lift p-value", "relative_p_value_adjusted": "Lift p-value (adjusted)",
    "seq_ci_low": "Always-valid low", "seq_ci_high": "Always-valid high",
    "variance_reduction": "Variance reduction (CUPED)",
    "chance_to_beat_control": "Chance to beat control", "expected_loss": "Expected loss",
    "guardrail_margin": "Guardrail margin", "guardrail_p_value": "Guardrail p-value", "guardrail": "Guardrail",
    "srm_p_value": "Sample ratio p-value", "mde": "Smallest detectable change",
    "logrank_p_value": "Log-rank p-value", "df": "Degrees of freedom", "coef": "Estimate", "aov": "Average order value",
    "nps": "NPS", "csat": "CSAT", "nps_ci_low": "NPS, low", "nps_ci_high": "NPS, high", "rmst": "RMST",
    "vip": "VIP", "auc": "AUC", "cohens_d": "Cohen's d", "se": "Standard error", "t": "t", "z": "z",
    "odds_ratio_ci_low": "Odds ratio, low", "odds_ratio_ci_high": "Odds ratio, high",
    "q1_days": "Lower quartile (days)", "q3_days": "Upper quartile (days)", "median_days": "Median (days)",
    "mean_days": "Mean (days)",
}


def label(column: str) -> str:
    """The page's name for a column: :data:`LABELS`, else the name in words, first letter capital
    ("orders_per_year" → "Orders per year", "converted_by_30d_ci_low" → "Converted by 30 days, low")."""
    if column in LABELS:
        return LABELS[column]
    for end, bound in (("_ci_low", "low"), ("_ci_high", "high")):
        if column.endswith(end) and len(column) > len(end):
            return f"{label(column[:-len(end)])}, {bound}"
    words = re.sub(r"(?<=_)(\d+)d(?=_|$)", r"\1 days", column).replace("_", " ")
    return words[:1].upper() + words[1:]


def p_value(value: Any) -> str:
    """A p-value as a stakeholder reads it: "< 0.001" below 0.001, else three decimals; "–" when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _is_p_value(column: str) -> bool:
    return column.endswith(("p_value", "p_value_adjusted"))


def _money_format(spec: str):
    from pco_lib.data.currencies import money

    return lambda v: html.escape(money(v, spec[1:] or ",.0f"))


def number(value: Any) -> str:
    """A number without a format of its own: whole numbers with thousands separators, from 100 on no
    decimals, below that three significant digits ("2,339", "2,655", "24.7", "0.72")."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value == round(value) or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _default_format(column: str, values) -> Any:
    """The format of a column the notebook gave none: p-values, shares as percent, whole-number columns as
    integers (counts stored as floats), other numbers by :func:`number`; text as it is."""
    if _is_p_value(column):
        return lambda v: html.escape(p_value(v))  # escape= leaves a function's text alone
    if values.dtype == bool or values.dtype.kind not in "iuf":
        return None
    if "share" in column or column.endswith("_rate"):
        return "{:.1%}"
    known = values.dropna()
    if values.dtype.kind in "iu" or (len(known) and (known == known.round()).all()):
        return "{:,.0f}"
    return number


def styled(frame, formats: dict[str, Any] | None = None, na_rep: str = "–", styles: dict | None = None):
    """``frame`` as a pandas Styler with human labels, the given formats (by code column name), the others
    by :func:`_default_format`, ``styles`` (column → function giving a cell's CSS) and no index."""
    formats = {c: _money_format(f) if isinstance(f, str) and f.startswith("$") else f
               for c, f in (formats or {}).items()}
    for column in frame.columns:
        if column not in formats and isinstance(column, str):
            default = _default_format(column, frame[column])
            if default is not None:
                formats[column] = default
    # "suppressed" keeps its name: humanize_tables drops the column and puts its footnote under the table
    shown = frame.rename(columns=lambda c: label(c) if isinstance(c, str) and c != "suppressed" else c)
    style = shown.style.format({label(c): f for c, f in formats.items() if c in frame.columns}, na_rep=na_rep,
                               escape="html")  # a segment named <b> in the data is text
    for column, css in (styles or {}).items():
        if column in frame.columns:
            style = style.map(css, subset=[label(column)])
    return style.hide(axis="index")


_TABLE = re.compile(r"<table\b.*?</table>", re.S)
_HEADING = re.compile(r'(<th\b[^>]*class="col_heading level0 col(\d+)"[^>]*>)([a-z][a-z0-9_]*)(</th>)')
_ANY_HEADING = re.compile(r'<th\b[^>]*class="col_heading level0 col(\d+)"[^>]*>([^<]*)</th>')
SUPPRESSED_NOTE = ("– marks a number left out because it describes too few customers (the report's "
                   "min_cell_size).")


def _cells(column: int) -> re.Pattern:
    return re.compile(rf'<t([hd])\b[^>]*class="[^"]*\bcol{column}\b[^"]*"[^>]*>(.*?)</t\1>', re.S)


def humanize_table(table: str) -> str:
    """One exported table as a stakeholder reads it, whatever the notebook did: column names in words
    (:data:`LABELS`, else "orders_per_year" → "Orders per year"), p-values as :func:`p_value`, and no
    ``suppressed`` column — its cells already show "–", and a note under the table says why."""
    note = ""
    for m in list(_HEADING.finditer(table)):
        if m.group(3) == "suppressed":
            cells = _cells(int(m.group(2)))
            if any(text.strip() == "True" for kind, text in cells.findall(table) if kind == "d"):
                note = f'<p class="pco-footnote">{SUPPRESSED_NOTE}</p>'
            table = cells.sub("", table)
    for m in list(_ANY_HEADING.finditer(table)):  # p_value, or a heading a domain already wrote as "p-value"
        if _is_p_value(m.group(2)) or "p-value" in m.group(2):
            def shown(cell: re.Match) -> str:
                try:
                    text = html.escape(p_value(float(cell.group(2))))
                    return cell.group(0).replace(f">{cell.group(2)}<", f">{text}<")
                except ValueError:
                    return cell.group(0)
            table = _cells(int(m.group(1))).sub(lambda c: shown(c) if c.group(1) == "d" else c.group(0), table)
    table = _HEADING.sub(lambda m: f"{m.group(1)}{html.escape(label(m.group(3)))}{m.group(4)}", table)
    return table + note


def humanize_tables(page: str) -> str:
    """:func:`humanize_table` on every pandas table of an exported page (the one formatting layer)."""
    return _TABLE.sub(lambda m: humanize_table(m.group(0)), page)
