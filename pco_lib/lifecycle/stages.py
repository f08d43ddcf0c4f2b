"""Lifecycle stages now and the transitions between two dates.

**Lifecycle stages** (:class:`StageRules`, one stage per customer at ``as_of``, first rule that applies):

1. ``lapsed``: no order for more than ``lapsed_days`` (180) days. "No order since" counts from the last
   order, or from the conversion when there is none (or the conversion is later).
2. ``at_risk``: quiet for more than the customer's at-risk threshold: ``at_risk_days`` (90), or — for
   customers with at least two purchase days — ``at_risk_gap_multiple`` (1.5) × their typical gap if that
   is sooner, but never less than ``at_risk_min_days`` (30). Typical gap = mean days between purchase days
   = (last − first purchase day) / (purchase days − 1). So a monthly buyer is at risk after 45 quiet days,
   a one-time buyer after 90, everybody after 90 at the latest; a weekly buyer after 30.
3. ``new``: converted less than ``new_days`` (90) days ago (``as_of − conversion day < 90``) and fewer than
   ``repeat_orders`` (2) orders — no repeat yet.
4. ``vip``: among customers who bought in the ``vip_window_days`` (365) days up to ``as_of`` (order days in
   ``(as_of − 365, as_of]``), those with fewer than ``vip_share`` (10%) of these buyers spending more than
   them in that window (ties at the boundary all get in). With ``vip_min_orders`` set, VIP instead means at
   least that many orders in the window.
5. ``repeat``: at least ``repeat_orders`` (2) orders so far.
6. ``one_time``: the rest — at most one order, past the new window, not (yet) quiet for long.

Plus ``lead`` (when a leads table is given): a lead created on or before ``as_of`` whose customer does not
exist yet at ``as_of`` (no linked customer, or one converting later); with ``lead_max_age_days``, only
leads created less than that many days ago (older open leads are left out as stale).

Recency comes first on purpose: a VIP who has gone quiet is shown as at risk (the RFM view's "Can't lose
them" keeps their value visible). Where conversion = first purchase, a one-order customer is new for 90
days and then at risk, so ``one_time`` stays small; it matters where conversion is a signup.

$0 orders (revenue 0, allowed by the data model) are orders like any other for recency, order counts and
stages; they add nothing to the VIP window's spend, and a customer who spent nothing is never VIP. Customers
without orders are counted from their conversion (new, one_time, then at risk and lapsed).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import ibis
import numpy as np
import pandas as pd

from ..data.privacy import DEFAULT_MIN_CELL_SIZE, suppress_small_cells
from ..data.source import MISSING
from .common import (
    ALL,
    SegmentError,
    _customers,
    _date,
    _day,
    _days,
    _kept,
    _label,
    _min_cell,
    _purchase_days,
    _Result,
    _table,
)

STAGES = ("lead", "new", "one_time", "repeat", "vip", "at_risk", "lapsed")
NOT_YET = "(not yet)"
GONE = "(gone)"


@dataclass(frozen=True)
class StageRules:
    """The lifecycle rules (see the module docstring for how they combine). Days are calendar days."""

    new_days: int = 90
    repeat_orders: int = 2
    vip_share: float = 0.10
    vip_window_days: int = 365
    vip_min_orders: int | None = None
    at_risk_days: int = 90
    at_risk_gap_multiple: float | None = 1.5
    at_risk_min_days: int = 30
    lapsed_days: int = 180
    lead_max_age_days: int | None = None

    def __post_init__(self):
        for name in ("new_days", "repeat_orders", "vip_window_days", "at_risk_days", "at_risk_min_days",
                     "lapsed_days"):
            value = getattr(self, name)
            if not (isinstance(value, int | np.integer) and value >= 1):
                raise SegmentError(f"StageRules.{name} must be a whole number ≥ 1, not {value!r}")
        if not 0 < self.vip_share < 1:
            raise SegmentError(f"StageRules.vip_share must be between 0 and 1, not {self.vip_share!r}")
        if self.vip_min_orders is not None and self.vip_min_orders < 1:
            raise SegmentError("StageRules.vip_min_orders must be at least 1 (or None)")
        if self.at_risk_gap_multiple is not None and self.at_risk_gap_multiple <= 0:
            raise SegmentError("StageRules.at_risk_gap_multiple must be > 0 (or None)")
        if self.lead_max_age_days is not None and self.lead_max_age_days < 1:
            raise SegmentError("StageRules.lead_max_age_days must be at least 1 (or None)")
        if self.at_risk_days > self.lapsed_days:
            raise SegmentError("StageRules.at_risk_days must not exceed lapsed_days")


def stage_expr(customers, orders, as_of, rules: StageRules = StageRules(), *, leads=None,
               by: str | None = None, lead_by: str | None = None) -> ibis.Table:
    """One row per customer converted on or before ``as_of`` (and per open lead, with ``leads``).

    Columns: key (customer_id, or ``lead:<lead_id>`` for a lead without a customer id), customer_id (for a
    lead: the customer it becomes later, if any), stage, orders, revenue_window (revenue in the VIP window),
    days_since_conversion, days_quiet, typical_gap_days and, with ``by``, that column of customers (for
    leads: their column ``lead_by``, default ``by`` when the leads have it, else "(missing)"; e.g.
    ``by="channel", lead_by="source"``).
    """
    day = _day(as_of, "as_of")
    today = ibis.literal(day)
    c_all = _customers(customers, [by] if by else [])
    c = c_all.filter(c_all._conv <= today)
    p = _purchase_days(orders, day)
    start = ibis.literal(day - dt.timedelta(days=rules.vip_window_days))
    per = p.group_by("customer_id").aggregate(
        n_orders=p.orders.sum(), first_day=p.day.min(), last_day=p.day.max(), purchase_days=p.count(),
        orders_window=p.orders.sum(where=p.day > start),
        revenue_window=p.revenue.sum(where=p.day > start).cast("float64"))
    per = per.rename(cid="customer_id")
    j = c.left_join(per, c.customer_id == per.cid)
    n_orders = j.n_orders.fill_null(0).cast("int64")
    n_days = j.purchase_days.fill_null(0).cast("int64")
    revenue = j.revenue_window.fill_null(0.0)
    last_active = ibis.greatest(j._conv, j.last_day.fill_null(j._conv))
    gap = ibis.ifelse(n_days >= 2, _days(j.last_day, j.first_day).cast("float64") / (n_days - 1).cast("float64"),
                      ibis.null("float64"))
    j = j.mutate(_orders=n_orders, _revenue=revenue, _quiet=_days(today, last_active),
                 _since=_days(today, j._conv), _gap=gap, _orders_window=j.orders_window.fill_null(0))
    if rules.vip_min_orders is not None:
        vip = j._orders_window >= rules.vip_min_orders
    else:
        buyers = (j._revenue > 0).cast("int64").sum().over(ibis.window())
        ahead = ibis.rank().over(order_by=ibis.desc(j._revenue))  # customers spending strictly more
        j = j.mutate(_buyers=buyers, _ahead=ahead)
        vip = (j._revenue > 0) & (j._ahead.cast("float64") < rules.vip_share * j._buyers.cast("float64"))
    threshold = ibis.literal(float(rules.at_risk_days))
    if rules.at_risk_gap_multiple is not None:
        by_gap = ibis.greatest(j._gap * rules.at_risk_gap_multiple, float(rules.at_risk_min_days))
        threshold = ibis.ifelse(j._gap.notnull(), ibis.least(threshold, by_gap), threshold)
    stage = ibis.cases(
        (j._quiet > rules.lapsed_days, "lapsed"),
        (j._quiet.cast("float64") > threshold, "at_risk"),
        ((j._since < rules.new_days) & (j._orders < rules.repeat_orders), "new"),
        (vip, "vip"),
        (j._orders >= rules.repeat_orders, "repeat"),
        else_="one_time",
    )
    extra = {by: _label(j[by])} if by else {}
    rows = j.select(key=j.customer_id, customer_id=j.customer_id, stage=stage, orders=j._orders,
                    revenue_window=j._revenue, days_since_conversion=j._since, days_quiet=j._quiet,
                    typical_gap_days=j._gap, **extra)
    if leads is None:
        return rows
    lt = _lead_table(leads)
    lt = lt.filter(_open_lead(lt, day, rules))
    conv = c_all.select(_cid=c_all.customer_id, _conv_day=c_all._conv)
    lj = lt.left_join(conv, lt._lead_cid == conv._cid)
    lj = lj.filter(lj._conv_day.isnull() | (lj._conv_day > today))
    lead_col = lead_by or by
    lead_extra = {by: _label(lj[lead_col]) if lead_col in lt.columns else ibis.literal(MISSING)} if by else {}
    lead_rows = lj.select(
        key=ibis.coalesce(lj._lead_cid, ibis.literal("lead:") + lj.lead_id.cast("string")),
        customer_id=lj._lead_cid, stage=ibis.literal("lead"), orders=ibis.null("int64"),
        revenue_window=ibis.null("float64"), days_since_conversion=ibis.null("int64"),
        days_quiet=ibis.null("int64"), typical_gap_days=ibis.null("float64"), **lead_extra)
    return rows.union(lead_rows.cast(rows.schema()))


def _lead_table(leads) -> ibis.Table:
    lt = _table(leads, "leads", ["lead_id", "created_at", "customer_id"])
    return lt.mutate(_lead_cid=lt.customer_id.cast("string"), _created=_date(lt.created_at))


def _open_lead(lt: ibis.Table, day: dt.date, rules: StageRules) -> ibis.Value:
    """A lead of :func:`_lead_table` exists on ``day``: created on or before it and, with
    ``lead_max_age_days``, younger than that (whether its customer exists yet is checked apart)."""
    today = ibis.literal(day)
    exists = lt._created <= today
    if rules.lead_max_age_days is not None:
        exists &= _days(today, lt._created) < rules.lead_max_age_days
    return exists


def customer_stages(customers, orders, as_of, rules: StageRules = StageRules(), *, leads=None,
                    by: str | None = None) -> pd.DataFrame:
    """:func:`stage_expr` executed: one row per customer (and open lead), for internal use and CSV files —
    it holds ids, so it never goes into a report page."""
    return stage_expr(customers, orders, as_of, rules, leads=leads, by=by).order_by("key").to_pandas()


def stage_counts(customers, orders, as_of, rules: StageRules = StageRules(), *, leads=None,
                 by: str | None = None, lead_by: str | None = None,
                 min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> pd.DataFrame:
    """Customers per lifecycle stage at ``as_of`` (per value of ``by`` too): columns [by,] stage,
    customers, share (of the group), suppressed. Every stage is listed; cells under ``min_cell_size``
    are blanked. ``lead_by``: the leads column that stands for ``by`` (see :func:`stage_expr`)."""
    min_cell = _min_cell(min_cell_size)
    got = _stage_count_rows(customers, orders, as_of, rules, leads, by, lead_by)
    return _stage_table(got, by, leads is not None, min_cell)


def stage_counts_by(customers, orders, as_of, by: str, rules: StageRules = StageRules(), *, leads=None,
                    min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``stage_counts(leads=leads)`` and ``stage_counts(by=by)`` (customers only) from one pass over the
    customers: the overall counts are the sums over the groups of ``by``, plus the open leads."""
    min_cell = _min_cell(min_cell_size)
    got = _stage_count_rows(customers, orders, as_of, rules, leads, by, None)
    overall = got.groupby("stage", as_index=False)["customers"].sum()
    return (_stage_table(overall, None, leads is not None, min_cell),
            _stage_table(got[got.stage != "lead"], by, False, min_cell))


def _stage_count_rows(customers, orders, as_of, rules, leads, by, lead_by) -> pd.DataFrame:
    e = stage_expr(customers, orders, as_of, rules, leads=leads, by=by, lead_by=lead_by)
    keys = [by, "stage"] if by else ["stage"]
    return e.group_by(keys).aggregate(customers=e.count()).to_pandas()


def _stage_table(got: pd.DataFrame, by: str | None, with_leads: bool, min_cell: int) -> pd.DataFrame:
    stages = list(STAGES if with_leads else STAGES[1:])
    groups = sorted(got[by].unique()) if by else [ALL]
    if not by:
        got = got.assign(_group=ALL)
    grid = pd.MultiIndex.from_product([groups, stages], names=["_group", "stage"])
    out = got.rename(columns={by: "_group"} if by else {}).set_index(["_group", "stage"])["customers"]
    out = out.reindex(grid, fill_value=0).astype("int64").reset_index()
    out["share"] = out["customers"] / out.groupby("_group")["customers"].transform("sum").replace(0, np.nan)
    out = out.rename(columns={"_group": by}) if by else out.drop(columns="_group")
    return suppress_small_cells(out, "customers", min_cell, ["share"]).reset_index(drop=True)


@dataclass(frozen=True, repr=False)
class Transitions(_Result):
    """Stage at ``start`` (rows) × stage at ``end`` (columns). ``counts`` has a ``total`` column; a row
    "(not yet)" holds customers and leads that appeared after ``start``. ``shares`` are row shares
    (each row of the known stages sums to 1). Cells under ``min_cell_size`` are NaN in both."""

    start: dt.date
    end: dt.date
    counts: pd.DataFrame
    shares: pd.DataFrame
    min_cell_size: int

    def to_frame(self) -> pd.DataFrame:
        """Long form: stage_from, stage_to, customers, share, suppressed."""
        c = self.counts.drop(columns="total").stack(future_stack=True).rename("customers")
        s = self.shares.stack(future_stack=True).rename("share")
        out = pd.concat([c, s], axis=1).reset_index()
        out.columns = ["stage_from", "stage_to", "customers", "share"]
        out["suppressed"] = out["customers"].isna()
        return out

    def __repr__(self) -> str:
        return f"<Transitions {self.start} → {self.end}: {len(self.counts)} × {len(self.shares.columns)} stages>"


def stage_transitions(customers, orders, start, end, rules: StageRules = StageRules(), *, leads=None,
                      min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> Transitions:
    """Where did the customers of each stage at ``start`` go by ``end`` (e.g. last quarter's new
    customers)? Customers are matched by id; a lead that became a customer is matched through the lead's
    customer_id (so "lead → new" is a conversion)."""
    min_cell = _min_cell(min_cell_size)
    d1, d2 = _day(start, "start"), _day(end, "end")
    if d2 <= d1:
        raise SegmentError(f"end ({d2}) must be after start ({d1})")
    # Rows with a customer id are matched by it. An open lead without one (key "lead:<lead_id>") can only match
    # itself, so those leads are counted from the leads table alone: joining them by a text key was the cost
    # of the report at 10M customers (137M leads) and ran out of engine memory at a 2 GB limit.
    # The stages of each day are stored first and then joined: in one query (two stage computations and the
    # join at once) the engine ran out of memory at 10M customers even with 3 GB.
    a = stage_expr(customers, orders, d1, rules, leads=leads)
    b = stage_expr(customers, orders, d2, rules, leads=leads)
    with (_kept(a.filter(a.customer_id.notnull()).select(_k1=a.customer_id, stage_from=a.stage)) as a,
          _kept(b.filter(b.customer_id.notnull()).select(_k2=b.customer_id, stage_to=b.stage)) as b):
        j = a.outer_join(b, a._k1 == b._k2)
        f = j.select(stage_from=j.stage_from.fill_null(NOT_YET), stage_to=j.stage_to.fill_null(GONE))
        got = f.group_by(["stage_from", "stage_to"]).aggregate(customers=f.count()).to_pandas()
    if leads is not None:
        got = pd.concat([got, _anonymous_lead_moves(leads, d1, d2, rules)], ignore_index=True)
        got = got.groupby(["stage_from", "stage_to"], as_index=False)["customers"].sum()
    stages = list(STAGES if leads is not None else STAGES[1:])
    rows = stages + [NOT_YET]
    cols = stages + ([GONE] if (got.stage_to == GONE).any() else [])
    counts = got.pivot(index="stage_from", columns="stage_to", values="customers").reindex(index=rows, columns=cols)
    counts = counts.fillna(0).astype("int64")
    counts.index.name, counts.columns.name = "stage_from", "stage_to"
    total = counts.sum(axis=1)
    shares = counts.div(total.replace(0, np.nan), axis=0)
    small = counts < min_cell
    counts = counts.astype("float64").mask(small)
    shares = shares.mask(small)
    counts["total"] = total.astype("float64").mask(total < min_cell)
    return Transitions(d1, d2, counts, shares, min_cell)


def _anonymous_lead_moves(leads, d1: dt.date, d2: dt.date, rules: StageRules) -> pd.DataFrame:
    """Transitions of the open leads without a customer id: lead → lead (open on both days), lead → (gone)
    (too old by ``d2``) and (not yet) → lead (created after ``d1``); rows with no lead left out."""
    lt = _lead_table(leads)
    lt = lt.filter(lt._lead_cid.isnull())
    first, second = _open_lead(lt, d1, rules), _open_lead(lt, d2, rules)
    n = lt.aggregate(on_d1=first.cast("int64").sum(), on_d2=second.cast("int64").sum(),
                     both=(first & second).cast("int64").sum()).to_pandas().fillna(0).astype("int64").iloc[0]
    rows = [("lead", "lead", n.both), ("lead", GONE, n.on_d1 - n.both), (NOT_YET, "lead", n.on_d2 - n.both)]
    return pd.DataFrame([r for r in rows if r[2] > 0], columns=["stage_from", "stage_to", "customers"])
