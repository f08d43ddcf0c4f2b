"""Summaries for the data overview report, computed in the engine (Ibis) and returned as small frames.

$0 orders (revenue 0) are orders: they count in orders, ordering customers and the repeat share, and lower
revenue per order (revenue / all orders). Customers without orders count as customers.
"""

from __future__ import annotations

import pandas as pd

from .data.currencies import money
from .data.privacy import DEFAULT_MIN_CELL_SIZE, suppress_small_cells
from .data.source import MISSING, DataError, DataSource


def _segment_column(t, by: str | None, table: str) -> str | None:
    if by is None or by == "":
        return None
    if by not in t.columns:
        raise DataError(f"{table} has no column {by!r} to split by; its columns are {', '.join(t.columns)}")
    return by


def monthly_conversions(source: DataSource, by: str | None = "channel",
                        min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> pd.DataFrame:
    """New customers per conversion month, optionally split by a customer column (small cells hidden).

    Columns: month, segment, customers, suppressed.
    """
    t = source.table("customers")
    seg = _segment_column(t, by, "customers")
    month = t.converted_at.truncate("M").name("month")
    segment = (t[seg].cast("string").fill_null(MISSING) if seg else t.customer_id.isnull().ifelse("", "all"))
    counts = (t.group_by([month, segment.name("segment")]).aggregate(customers=t.count())
              .order_by(["month", "segment"]).to_pandas())
    return suppress_small_cells(counts, "customers", min_cell_size)


def monthly_revenue(source: DataSource) -> pd.DataFrame:
    """Orders, revenue and ordering customers per calendar month; revenue per order."""
    o = source.table("orders")
    month = o.ordered_at.truncate("M").name("month")
    frame = (o.group_by(month).aggregate(orders=o.count(), revenue=o.revenue.sum(),
                                         customers=o.customer_id.nunique())
             .order_by("month").to_pandas())
    frame["revenue_per_order"] = frame["revenue"] / frame["orders"]
    last = o.ordered_at.max().to_pandas()
    frame["complete"] = (frame["month"] + pd.offsets.MonthBegin(1)) <= pd.Timestamp(last).ceil("D")
    return frame


def recent_months(frame: pd.DataFrame, months: int, column: str = "month") -> pd.DataFrame:
    """Rows of the last ``months`` calendar months present in ``frame``."""
    if months <= 0:
        raise ValueError("months must be positive")
    keep = sorted(frame[column].dropna().unique())[-months:]
    return frame[frame[column].isin(keep)].reset_index(drop=True)


def summary_points(tables: pd.DataFrame, revenue: pd.DataFrame, stages: pd.DataFrame,
                   n_warnings: int) -> list[str]:
    """Plain-language bullet points for the top of the overview report."""
    present = tables[tables.present]
    counts = dict(zip(present.table, present.rows))
    first = pd.Timestamp(present["first"].min())
    last = pd.Timestamp(present["last"].max())
    points = [
        f"The data covers **{first:%d %b %Y} to {last:%d %b %Y}**: {counts.get('customers', 0):,} customers "
        f"and {counts.get('orders', 0):,} orders, in {len(present)} of {len(tables)} tables."
    ]
    complete = revenue[revenue.complete]
    if len(complete) >= 2:
        now, before = complete.iloc[-1], complete.iloc[-2]
        change = now.revenue / before.revenue - 1 if before.revenue else float("nan")
        direction = "up" if change > 0 else "down"
        points.append(
            f"Revenue in {now.month:%B %Y} (the last complete month) was **{money(now.revenue)}**, "
            f"{direction} {abs(change):.0%} on the month before."
        )
    step = dict(zip(stages.stage, stages.share_of_previous))
    if "leads" in step and pd.notna(step.get("customers")):
        points.append(f"**{step['customers']:.0%}** of leads became customers.")
    if pd.notna(step.get("repeat customers")):
        points.append(f"**{step['repeat customers']:.0%}** of customers have ordered more than once.")
    points.append("The data passed every validation check." if n_warnings == 0 else
                  f"The data passed validation with **{n_warnings} warning(s)** listed at the end.")
    return points


def funnel(source: DataSource) -> pd.DataFrame:
    """Leads → customers → repeat customers (two or more orders), with the share kept at each step.

    Columns: stage, count, share_of_previous. The leads stage is left out when there is no leads table.
    """
    c = source.table("customers")
    o = source.table("orders")
    customers = int(c.count().to_pandas())
    per_customer = o.group_by("customer_id").aggregate(n=o.count())
    known = per_customer.join(c.select("customer_id"), "customer_id")
    repeat = int(known.filter(known.n >= 2).count().to_pandas())
    stages = []
    if source.has("leads"):
        stages.append(("leads", int(source.table("leads").count().to_pandas())))
    stages += [("customers", customers), ("repeat customers", repeat)]
    frame = pd.DataFrame(stages, columns=["stage", "count"])
    frame["share_of_previous"] = frame["count"] / frame["count"].shift(1)
    return frame


def headlines(stages: pd.DataFrame, revenue: pd.DataFrame, n_warnings: int) -> list[tuple]:
    """The report's headline numbers as ``(results.json key, value, label[, format])``."""
    counts = dict(zip(stages.stage, stages["count"]))
    items = [
        ("customers", int(counts["customers"]), "Customers"),
        ("orders", int(revenue.orders.sum()), "Orders"),
        ("revenue", round(float(revenue.revenue.sum()), 2), "Revenue", "$,.0f"),
        ("repeat_customer_share", counts["repeat customers"] / counts["customers"], "Repeat customers", ".1%"),
    ]
    if "leads" in counts:
        items.append(("lead_conversion_rate", counts["customers"] / counts["leads"], "Leads converted", ".1%"))
    items.append(("validation_warnings", n_warnings, "Validation warnings"))
    return items
