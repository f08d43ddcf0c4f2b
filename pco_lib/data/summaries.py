"""Engine summaries that several reports share, computed where the data lives (Ibis) and returned small.

- :func:`activity_table`: orders, events or subscriptions as one activity stream (cohorts, churn).
- :func:`contractual_lifetimes` and :func:`noncontractual_lifetimes`: lifetimes aggregated to distinct
  (days, churned, groups) rows with a count ``n`` (churn, experiments, feedback):

  - contractual: a subscription ends. Lifetime = (ended_at − started_at) in days, rounded to whole days (at
    least 1); a subscription still running is censored at the end of the data.
  - non-contractual: no order (or activity) for ``inactivity_days``. Lifetime = days from conversion to the
    last activity, counting the conversion day as day 1 (⌊Δ⌋ + 1). A customer whose last activity is less
    than ``inactivity_days`` before the end of the data is censored there, not churned.
- :func:`table_overview` and :func:`observed_period`: rows and date ranges per table (validation, the data
  overview report and the header of every report); :func:`one_row`: several one-row aggregates in one query.
"""

from __future__ import annotations

import ibis
import pandas as pd

from ..stats.survival import SurvivalError, check_columns
from .model import TABLES, TIMESTAMP
from .source import MISSING, DataError, DataSource, latest_timestamp

ACTIVITIES = {"order": ("orders", "ordered_at"), "event": ("events", "occurred_at"),
              "subscription": ("subscriptions", "started_at")}
DAY_SECONDS = 86_400


def activity_table(source: DataSource, activity: str = "order") -> ibis.Table:
    """Activity rows as (customer_id, at, revenue): orders carry revenue, events count as 0.

    ``subscription``: rows (customer_id, at = started_at, until = ended_at, revenue = 0); a customer is
    active in a period when a subscription is live at any moment of it.
    """
    if activity not in ACTIVITIES:
        raise ValueError(f"activity must be one of {', '.join(ACTIVITIES)}, not {activity!r}")
    name, column = ACTIVITIES[activity]
    if not source.has(name):
        raise DataError(f"activity {activity!r} needs the {name} table, which is not in the data")
    t = source.table(name)
    if activity == "subscription":
        return t.select(customer_id=t.customer_id, at=t.started_at, until=t.ended_at,
                        revenue=ibis.literal(0.0))
    revenue = t.revenue if "revenue" in t.columns else ibis.literal(0.0)
    return t.select(customer_id=t.customer_id, at=t[column], revenue=revenue.cast("float64"))


def _memtable(frame):
    return ibis.memtable(frame) if isinstance(frame, pd.DataFrame) else frame




def _label(column) -> ibis.Value:
    """Group columns as text with missing values named; numeric columns (e.g. mrr) stay numeric."""
    return column if column.type().is_numeric() else column.cast("string").fill_null(MISSING)


def _timestamp_max(*columns) -> pd.Timestamp:
    return latest_timestamp(*columns, error=SurvivalError)


def _finish(rows: ibis.Table, columns: list[str], per_customer: bool) -> pd.DataFrame:
    if per_customer:
        return rows.order_by(["customer_id"]).to_pandas()
    keys = ["days", "churned", *columns]
    out = rows.group_by(keys).aggregate(n=rows.count()).order_by(keys).to_pandas()
    out["n"] = out["n"].astype("int64")
    return out


def contractual_lifetimes(subscriptions, customers=None, columns: list[str] | tuple = (),
                          observed_until=None, per_customer: bool = False) -> pd.DataFrame:
    """Subscription lifetimes: columns days, churned (0/1), the chosen ``columns`` (from the subscription,
    else the customer) and n (distinct rows with counts), or one row per subscription with customer_id.

    Lifetime = (ended_at or observed_until) − started_at in whole days (rounded, at least 1). Raises when a
    subscription ends on or before its start (lifetime ≤ 0).
    """
    s = _memtable(subscriptions)
    columns = list(columns)
    c = _memtable(customers) if customers is not None else None
    extra = [col for col in columns if col not in s.columns]
    if extra:
        if c is None:
            check_columns(columns, list(s.columns), "subscriptions")
        check_columns(extra, [x for x in c.columns if x != "customer_id"], "subscriptions or customers")
        s = s.join(c.select("customer_id", *extra), "customer_id")
    until = pd.Timestamp(observed_until) if observed_until is not None else _timestamp_max(s.started_at,
                                                                                           s.ended_at)
    end = s.ended_at.fill_null(ibis.literal(until.to_pydatetime()))
    s = s.mutate(_seconds=end.epoch_seconds() - s.started_at.epoch_seconds())
    bad = s.filter(s.ended_at.notnull() & (s._seconds <= 0)).count().to_pandas()
    if bad:
        raise SurvivalError(f"{bad:,} subscription(s) end on or before their start (lifetime ≤ 0 days); "
                            "fix ended_at or drop them (`pco data check` lists examples)")
    s = s.filter(s._seconds > 0)  # started at the very end of the data: nothing observed yet
    days = ibis.greatest((s._seconds / DAY_SECONDS).round().cast("int64"), 1)
    rows = s.select(customer_id=s.customer_id, days=days,
                    churned=s.ended_at.notnull().cast("int64"), **{col: _label(s[col]) for col in columns})
    return _finish(rows, columns, per_customer)


def noncontractual_lifetimes(customers, activity, inactivity_days: int = 90, columns: list[str] | tuple = (),
                             observed_until=None, per_customer: bool = False) -> pd.DataFrame:
    """Lifetimes of customers who churn by going quiet: columns days, churned, ``columns`` and n.

    ``activity`` has rows (customer_id, at) — orders or events (see :func:`pco_lib.cohorts.activity_table`).
    The conversion counts as activity. Churned when the last activity is at least ``inactivity_days``
    before ``observed_until`` (default: the latest timestamp in the data); lifetime = ⌊last − converted⌋ + 1
    days if churned, else ⌊observed_until − converted⌋ + 1 (censored).
    """
    if inactivity_days < 1:
        raise SurvivalError("inactivity_days must be at least 1")
    c = _memtable(customers)
    a = _memtable(activity)
    columns = list(columns)
    check_columns(columns, [x for x in c.columns if x != "customer_id"], "customers")
    last = a.group_by("customer_id").aggregate(last_at=a.at.max())
    if observed_until is not None:
        until_lit = ibis.literal(pd.Timestamp(observed_until).to_pydatetime())
    else:  # in the same query: max(last_at) = max(at), so the activity is read once (a query of its own read
        # it twice: 1.9× the SQL floor at 1M customers)
        until_lit = ibis.greatest(c.converted_at.max().as_scalar(), last.last_at.max().as_scalar())
    j = c.left_join(last, c.customer_id == last.customer_id)
    last_at = ibis.greatest(j.converted_at, j.last_at.fill_null(j.converted_at))
    quiet = (until_lit.epoch_seconds() - last_at.epoch_seconds()) >= inactivity_days * DAY_SECONDS
    end = ibis.ifelse(quiet, last_at, until_lit)
    days = ((end.epoch_seconds() - j.converted_at.epoch_seconds()) / DAY_SECONDS).floor().cast("int64") + 1
    rows = j.filter(j.converted_at <= until_lit).select(
        customer_id=j.customer_id, days=days, churned=quiet.cast("int64"),
        **{col: _label(j[col]) for col in columns})
    return _finish(rows, columns, per_customer)


def one_row(aggregates: list[ibis.Table]) -> pd.Series:
    """The single row of each one-row aggregate in ``aggregates`` (of any tables, with distinct column names),
    fetched in one query, their cross join: a query costs the engine milliseconds on small data, and the
    aggregates of one validation or overview are dozens."""
    first, *rest = aggregates
    return (first.cross_join(*rest) if rest else first).to_pandas().iloc[0]


def table_overview(source: DataSource, only: list[str] | None = None) -> pd.DataFrame:
    """One row per table of the data model: present or not, rows, first and last main timestamp (one query).

    ``only``: the tables to count (others are listed as not present), e.g. those that passed validation.
    """
    counted = [name for name in TABLES if source.has(name) and (only is None or name in only)]
    aggregates, main = [], {}
    for name in counted:
        t = source.table(name)
        main[name] = next((c.name for c in TABLES[name].columns if c.kind == TIMESTAMP and c.name in t.columns),
                          None)
        aggs = {f"{name}__rows": t.count()}
        if main[name]:
            aggs |= {f"{name}__first": t[main[name]].min(), f"{name}__last": t[main[name]].max()}
        aggregates.append(t.aggregate(**aggs))
    stats = one_row(aggregates) if aggregates else pd.Series(dtype=object)
    rows = [{"table": name, "present": True, "rows": int(stats[f"{name}__rows"]),
             "first": stats.get(f"{name}__first"), "last": stats.get(f"{name}__last")} if name in main else
            {"table": name, "present": False, "rows": None, "first": None, "last": None} for name in TABLES]
    return pd.DataFrame(rows).astype({"rows": "Int64"})  # whole numbers even beside an absent table's NA


def observed_period(source: DataSource) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First conversion and last order: the window the data covers."""
    c = source.table("customers")
    o = source.table("orders")
    first = c.converted_at.min().to_pandas()
    last = o.ordered_at.max().to_pandas()
    return pd.Timestamp(first), pd.Timestamp(last)
