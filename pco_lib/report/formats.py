"""One formatting layer for the tables and cards of a stakeholder page: human column labels (no snake_case
on the page), p-values as people read them ("< 0.001", never 1.02e-08), "–" for a missing value.

``styled(frame, formats)`` is the one call a notebook makes for a table::

    styled(readout.effects[columns], {"control_mean": "{:,.3f}", "relative": "{:+.1%}"})

Formats are keyed by the column names in the code; the page shows :data:`LABELS`. Columns whose name ends in
``p_value`` or ``p_value_adjusted`` get :func:`p_value` unless a format is given.
"""

from __future__ import annotations

import html
import math
from typing import Any

LABELS = {
    "metric": "Metric", "variant": "Arm", "segment": "Segment", "n": "Customers",
    "control_mean": "Control", "treatment_mean": "Treatment",
    "effect": "Change", "ci_low": "Change, low", "ci_high": "Change, high",
    "p_value": "p-value", "p_value_adjusted": "p-value (adjusted)",
    "relative": "Relative lift", "relative_ci_low": "Lift, low", "relative_ci_high": "Lift, high",
    "relative_p_value": "Lift p-value", "relative_p_value_adjusted": "Lift p-value (adjusted)",
    "seq_ci_low": "Always-valid low", "seq_ci_high": "Always-valid high",
    "variance_reduction": "Variance reduction (CUPED)",
    "chance_to_beat_control": "Chance to beat control", "expected_loss": "Expected loss",
    "guardrail_margin": "Guardrail margin", "guardrail_p_value": "Guardrail p-value", "guardrail": "Guardrail",
    "srm_p_value": "Sample ratio p-value", "mde": "Smallest detectable change",
}


def label(column: str) -> str:
    """The page's name for a column: :data:`LABELS`, else the name with spaces, first letter capital."""
    return LABELS.get(column, column.replace("_", " ")[:1].upper() + column.replace("_", " ")[1:])


def p_value(value: Any) -> str:
    """A p-value as a stakeholder reads it: "< 0.001" below 0.001, else three decimals; "–" when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _is_p_value(column: str) -> bool:
    return column.endswith(("p_value", "p_value_adjusted"))


def styled(frame, formats: dict[str, Any] | None = None, na_rep: str = "–", styles: dict | None = None):
    """``frame`` as a pandas Styler with human labels, the given formats (by code column name), p-values by
    :func:`p_value`, ``styles`` (column → function giving a cell's CSS) and no index."""
    formats = dict(formats or {})
    for column in frame.columns:
        if _is_p_value(column):
            formats.setdefault(column, lambda v: html.escape(p_value(v)))  # escape= leaves a function's text
    shown = frame.rename(columns=label)
    style = shown.style.format({label(c): f for c, f in formats.items() if c in frame.columns}, na_rep=na_rep,
                               escape="html")  # a segment named <b> in the data is text
    for column, css in (styles or {}).items():
        if column in frame.columns:
            style = style.map(css, subset=[label(column)])
    return style.hide(axis="index")
