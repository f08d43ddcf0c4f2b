"""Lifecycle segments, RFM, lookalike scoring, re-engagement timing and lead conversion.

Every per-customer quantity is an Ibis expression (``*_expr``), so the heavy work runs where the data lives;
the functions without ``_expr`` execute it and return small pandas frames or result objects. Inputs are Ibis
tables (``source.table("orders")``) or pandas frames (wrapped with ``ibis.memtable``).

**Days.** ``as_of`` is a calendar day (UTC): everything on or before that day counts, nothing after it.
Days between two moments are whole calendar days (``as_of − date``), so an order placed on ``as_of`` is 0
days old. Orders of one customer on the same calendar day form one *purchase day* (as in
:mod:`pco_lib.clv`) for gaps between purchases; counts of orders count rows. Lead time to convert is the
exception: it is elapsed time, ``⌊Δ / 1 day⌋ + 1`` (day 1 = the first 24 hours), as
:func:`pco_lib.survival.check_lifetimes` wants durations ≥ 1.

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

**RFM** (:func:`rfm_expr`): recency = days since the last order, frequency = orders, monetary = revenue up
to ``as_of``, for customers with at least one order. Scores 1–5 by rank: score = ⌊5·k/n⌋ + 1 where k is
the number of customers strictly worse (0-based minimum rank; recency reversed, so the most recent get 5);
tied customers share a score. Named segments follow the de-facto standard R×F grid: the segment names of
Putler's guide "RFM Analysis For Successful Customer Segmentation" (putler.com/rfm-analysis), laid out on
recency and frequency scores as in the ``seg_map`` of regular expressions over "RF" score strings that most
RFM tutorials and notebooks use (``[1-2][1-2]`` Hibernating, ``[1-2][3-4]`` At risk, ``[1-2]5`` Can't lose
them, ``3[1-2]`` About to sleep, ``33`` Need attention, ``[3-4][4-5]`` Loyal, ``41`` Promising, ``51`` New
customers, ``[4-5][2-3]`` Potential loyalists, ``5[4-5]`` Champions): see :data:`RFM_GRID`. One deviation:
R = F = 1 is split out of Hibernating as Lost, the eleventh name of Putler's list. Monetary is scored but,
as in that map, does not enter the segment name.

**Lookalikes**: a logistic regression (statsmodels GLM, binomial) of "in a top RFM segment at ``as_of``"
on the first ``days`` after conversion (orders, revenue, events, channel and device dummies); trained on
the older customers, judged on the newer ones (AUC by the Mann–Whitney formula, a calibration table),
then applied to the recent customers whose label is not knowable yet.

**Re-engagement timing**: gaps between consecutive purchase days (a lag over each customer's purchase
days in the engine) per segment, their median and quartiles; recommended contact day = median gap − a
lead time (14 days), at least 1; customers inside their contact window now: days since their last order
between the contact day and ``window_multiple`` (2) × the median gap, inclusive.

**Lead conversion**: leads → customers by source with Wilson intervals, and time to convert by
Kaplan–Meier (:func:`pco_lib.survival.kaplan_meier`) with open leads censored at the end of the data.

Group tables hide cells describing fewer than ``min_cell_size`` customers (NaN and ``suppressed`` = True).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import ibis
import numpy as np
import pandas as pd
from scipy import stats

from .data import MISSING, calendar_day
from .experiments import Moments, welch, wilson_interval
from .privacy import DEFAULT_MIN_CELL_SIZE, check_min_cell_size, suppress_small_cells

STAGES = ("lead", "new", "one_time", "repeat", "vip", "at_risk", "lapsed")
NOT_YET = "(not yet)"
GONE = "(gone)"
ALL = "all"
DAY_SECONDS = 86_400

#: The R×F segment map: (recency scores, frequency scores, name); the first match wins.
RFM_GRID = (
    ((1,), (1,), "Lost"),
    ((1, 2), (1, 2), "Hibernating"),
    ((1, 2), (3, 4), "At risk"),
    ((1, 2), (5,), "Can't lose them"),
    ((3,), (1, 2), "About to sleep"),
    ((3,), (3,), "Need attention"),
    ((3, 4), (4, 5), "Loyal"),
    ((4,), (1,), "Promising"),
    ((5,), (1,), "New customers"),
    ((4, 5), (2, 3), "Potential loyalists"),
    ((5,), (4, 5), "Champions"),
)
RFM_SEGMENTS = ("Champions", "Loyal", "Potential loyalists", "New customers", "Promising", "Need attention",
                "About to sleep", "At risk", "Can't lose them", "Hibernating", "Lost")


class SegmentError(ValueError):
    """Segments cannot be computed (missing column, bad rule, too little data); the message says why."""


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _table(value, name: str, required: Sequence[str]) -> ibis.Table:
    t = ibis.memtable(value) if isinstance(value, pd.DataFrame) else value
    missing = [c for c in required if c not in t.columns]
    if missing:
        raise SegmentError(f"{name} needs the column(s) {', '.join(missing)}; it has {', '.join(t.columns)}")
    return t


def _day(value, name: str) -> dt.date:
    return calendar_day(value, name, SegmentError)


def _timestamp(value, name: str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts is pd.NaT:
        raise SegmentError(f"{name} must be a timestamp, not {value!r}")
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _date(column) -> ibis.Value:
    return column if column.type().is_date() else column.date()


def _label(column) -> ibis.Value:
    return column.cast("string").fill_null(MISSING)


def _days(later, earlier) -> ibis.Value:
    """Whole calendar days from ``earlier`` to ``later`` (dates)."""
    return later.delta(earlier, unit="day").cast("int64")


def _min_cell(value) -> int:
    return check_min_cell_size(value, SegmentError)


def _customers(customers, by: Sequence[str] = ()) -> ibis.Table:
    c = _table(customers, "customers", ["customer_id", "converted_at", *by])
    return c.mutate(customer_id=c.customer_id.cast("string"), _conv=_date(c.converted_at))


def _purchase_days(orders, as_of: dt.date) -> ibis.Table:
    """Distinct (customer_id, day) with the day's orders and revenue, on or before ``as_of``."""
    o = _table(orders, "orders", ["customer_id", "ordered_at", "revenue"])
    o = o.select(customer_id=o.customer_id.cast("string"), day=_date(o.ordered_at),
                 revenue=o.revenue.cast("float64"))
    o = o.filter(o.day <= ibis.literal(as_of))
    return o.group_by(["customer_id", "day"]).aggregate(orders=o.count(), revenue=o.revenue.sum())


def _complete(e: ibis.Table, day: dt.date, days: int) -> ibis.Value:
    """The first ``days`` (conversion day = day 0 … day ``days − 1``) are all on or before ``day``."""
    return _days(ibis.literal(day), e.converted) >= days - 1


class _Result:
    """Result objects: ``to_frame()`` is the headline table, the HTML repr shows it."""

    def to_frame(self) -> pd.DataFrame:  # pragma: no cover - overridden
        raise NotImplementedError

    def _repr_html_(self) -> str:
        return f"<p><b>{type(self).__name__}</b></p>" + self.to_frame().to_html(float_format="%.4g")


# --------------------------------------------------------------------------------------------------
# Small statistics
# --------------------------------------------------------------------------------------------------


def cohens_d(n1: float, mean1: float, var1: float, n2: float, mean2: float, var2: float) -> float:
    """Standardized difference (mean1 − mean2) / pooled SD, pooled variance
    ((n1 − 1)·var1 + (n2 − 1)·var2) / (n1 + n2 − 2); sample variances in."""
    if n1 + n2 <= 2:
        return math.nan
    pooled = ((n1 - 1) * var1 + (n2 - 1) * var2) / (n1 + n2 - 2)
    return (mean1 - mean2) / math.sqrt(pooled) if pooled > 0 else math.nan


def welch_test(n1: float, mean1: float, var1: float, n2: float, mean2: float,
               var2: float) -> tuple[float, float, float]:
    """Welch's t-test of mean1 − mean2 from group moments: (t, Welch–Satterthwaite df, two-sided p); NaN when a
    group has fewer than two members or there is no variance (see :func:`pco_lib.experiments.welch`)."""
    if n1 < 2 or n2 < 2 or var1 / n1 + var2 / n2 <= 0:
        return math.nan, math.nan, math.nan
    e = welch(Moments(int(n2), mean2, var2), Moments(int(n1), mean1, var1))
    return e.effect / e.se, e.df, e.p_value


def auc(scores, labels) -> float:
    """Area under the ROC curve by the Mann–Whitney formula: (R₊ − n₊(n₊ + 1)/2) / (n₊ n₋), R₊ the sum of
    the positives' ranks among all scores (ties get average ranks, i.e. count one half). NaN without both
    classes."""
    s = np.asarray(scores, float)
    y = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = stats.rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def weighted_quantile(values, counts, q: float) -> float:
    """Quantile ``q`` of ``values`` repeated ``counts`` times, with linear interpolation (numpy's default,
    Hyndman–Fan type 7), without expanding the rows."""
    v = np.asarray(values, float)
    w = np.asarray(counts, np.int64)
    keep = w > 0
    v, w = v[keep], w[keep]
    if len(v) == 0:
        return math.nan
    order = np.argsort(v, kind="stable")
    v, cum = v[order], np.cumsum(w[order])
    h = (cum[-1] - 1) * q
    lo, hi = math.floor(h), math.ceil(h)
    v_lo = v[np.searchsorted(cum, lo, side="right")]
    v_hi = v[np.searchsorted(cum, hi, side="right")]
    return float(v_lo + (h - lo) * (v_hi - v_lo))


def rfm_segment(r: int, f: int) -> str:
    """The named segment of recency score ``r`` and frequency score ``f`` (both 1–5) on :data:`RFM_GRID`."""
    for rs, fs, name in RFM_GRID:
        if r in rs and f in fs:
            return name
    raise SegmentError(f"RFM scores must be 1–5, not R={r!r}, F={f!r}")


# --------------------------------------------------------------------------------------------------
# 1. Lifecycle stages
# --------------------------------------------------------------------------------------------------


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
        orders_window=p.orders.sum(where=p.day > start), revenue_window=p.revenue.sum(where=p.day > start))
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
    lt = _table(leads, "leads", ["lead_id", "created_at", "customer_id"])
    lt = lt.mutate(_lead_cid=lt.customer_id.cast("string"), _created=_date(lt.created_at))
    lt = lt.filter(lt._created <= today)
    if rules.lead_max_age_days is not None:
        lt = lt.filter(_days(today, lt._created) < rules.lead_max_age_days)
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
    e = stage_expr(customers, orders, as_of, rules, leads=leads, by=by, lead_by=lead_by)
    keys = [by, "stage"] if by else ["stage"]
    got = e.group_by(keys).aggregate(customers=e.count()).to_pandas()
    stages = list(STAGES if leads is not None else STAGES[1:])
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
    a = stage_expr(customers, orders, d1, rules, leads=leads)
    b = stage_expr(customers, orders, d2, rules, leads=leads)
    a = a.select(_k1=a.key, stage_from=a.stage)
    b = b.select(_k2=b.key, stage_to=b.stage)
    j = a.outer_join(b, a._k1 == b._k2)
    f = j.select(stage_from=j.stage_from.fill_null(NOT_YET), stage_to=j.stage_to.fill_null(GONE))
    got = f.group_by(["stage_from", "stage_to"]).aggregate(customers=f.count()).to_pandas()
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


# --------------------------------------------------------------------------------------------------
# 2. RFM
# --------------------------------------------------------------------------------------------------


def _score(rank, n) -> ibis.Value:
    return ((rank.cast("float64") * 5) / n.cast("float64")).floor().cast("int64") + 1


def rfm_expr(orders, as_of) -> ibis.Table:
    """Per customer with an order on or before ``as_of``: customer_id, recency_days, frequency (orders),
    monetary (revenue), r_score, f_score, m_score (1–5; see the module docstring) and segment."""
    day = _day(as_of, "as_of")
    p = _purchase_days(orders, day)
    per = p.group_by("customer_id").aggregate(last_day=p.day.max(), frequency=p.orders.sum(),
                                              monetary=p.revenue.sum())
    per = per.mutate(recency_days=_days(ibis.literal(day), per.last_day), frequency=per.frequency.cast("int64"))
    n = per.customer_id.count().over(ibis.window())
    per = per.mutate(
        r_score=_score(ibis.rank().over(order_by=ibis.desc(per.recency_days)), n),
        f_score=_score(ibis.rank().over(order_by=per.frequency), n),
        m_score=_score(ibis.rank().over(order_by=per.monetary), n),
    )
    segment = ibis.cases(*[(per.r_score.isin(rs) & per.f_score.isin(fs), name) for rs, fs, name in RFM_GRID],
                         else_=ibis.null("string"))
    return per.select("customer_id", "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score",
                      segment=segment)


def rfm_table(orders, as_of) -> pd.DataFrame:
    """:func:`rfm_expr` executed, one row per customer (ids: CSV material, not for a report page)."""
    return rfm_expr(orders, as_of).order_by("customer_id").to_pandas()


def rfm_segments(orders, as_of, min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> pd.DataFrame:
    """Customers per RFM segment with their mean recency, frequency and monetary value and share of
    customers and revenue; segments under ``min_cell_size`` customers are blanked."""
    min_cell = _min_cell(min_cell_size)
    e = rfm_expr(orders, as_of)
    got = e.group_by("segment").aggregate(
        customers=e.count(), recency_days=e.recency_days.mean(), frequency=e.frequency.mean(),
        monetary=e.monetary.mean(), revenue=e.monetary.sum()).to_pandas().set_index("segment")
    out = got.reindex(list(RFM_SEGMENTS)).rename_axis("segment").reset_index()
    out["customers"] = out["customers"].fillna(0).astype("int64")
    out["share_of_customers"] = out["customers"] / max(out["customers"].sum(), 1)
    out["share_of_revenue"] = out["revenue"].fillna(0) / max(out["revenue"].sum(), 1e-300)
    out = out.drop(columns="revenue")
    return suppress_small_cells(out, "customers", min_cell)


def rfm_grid(orders, as_of) -> pd.DataFrame:
    """Customers per recency score (rows, 5 = most recent) × frequency score (columns)."""
    e = rfm_expr(orders, as_of)
    got = e.group_by(["r_score", "f_score"]).aggregate(customers=e.count()).to_pandas()
    grid = got.pivot(index="r_score", columns="f_score", values="customers")
    return grid.reindex(index=[5, 4, 3, 2, 1], columns=[1, 2, 3, 4, 5]).fillna(0).astype("int64")


def early_behaviour_expr(customers, orders, *, events=None, days: int = 30,
                         columns: Sequence[str] = ()) -> ibis.Table:
    """Per customer: customer_id, converted (conversion day), ``orders_{days}d``, ``revenue_{days}d``
    (and ``events_{days}d`` with ``events``) — counted on the conversion day and the ``days − 1`` days
    after it (the first order included, as conversion = first purchase) — plus ``columns`` of customers."""
    if days < 1:
        raise SegmentError("days must be at least 1")
    c = _customers(customers, columns)
    o = _table(orders, "orders", ["customer_id", "ordered_at", "revenue"])
    o = o.select(_oid=o.customer_id.cast("string"), _day=_date(o.ordered_at), _rev=o.revenue.cast("float64"))
    conv = c.select(_cid=c.customer_id, _c0=c._conv)
    j = o.join(conv, o._oid == conv._cid)
    j = j.filter((j._day >= j._c0) & (_days(j._day, j._c0) < days))
    agg = {f"orders_{days}d": j.count(), f"revenue_{days}d": j._rev.sum()}
    first = j.group_by(j._oid).aggregate(**agg)
    out = c.left_join(first, c.customer_id == first._oid)
    values = {k: out[k].fill_null(0) for k in agg}
    if events is not None:
        ev = _table(events, "events", ["customer_id", "occurred_at"])
        ev = ev.select(_eid=ev.customer_id.cast("string"), _day=_date(ev.occurred_at))
        ej = ev.join(conv, ev._eid == conv._cid)
        ej = ej.filter((ej._day >= ej._c0) & (_days(ej._day, ej._c0) < days))
        ecount = ej.group_by(ej._eid).aggregate(**{f"events_{days}d": ej.count()})
        out = out.left_join(ecount, out.customer_id == ecount._eid)
        values[f"events_{days}d"] = out[f"events_{days}d"].fill_null(0)
    return out.select(customer_id=out.customer_id, converted=out._conv, **values,
                      **{col: out[col] for col in columns})


@dataclass(frozen=True, repr=False)
class SegmentProfile(_Result):
    """How the top RFM segment(s) differ from the rest.

    ``categories``: per column and category the customers and share of each group, the difference in
    shares (top − rest) and ``suppressed``. ``chi_square``: per column the χ² test of independence of group
    and category (statistic, df, p_value; on all counts, no continuity correction). ``measures``: per early
    behaviour the customers and mean in each group, difference, Cohen's d (pooled SD) and Welch's t-test
    (t, df, p_value).
    """

    top: tuple[str, ...]
    categories: pd.DataFrame
    chi_square: pd.DataFrame
    measures: pd.DataFrame
    top_customers: int
    rest_customers: int
    min_cell_size: int

    def to_frame(self) -> pd.DataFrame:
        return self.measures.copy()

    def _repr_html_(self) -> str:
        return (f"<p><b>Profile of {', '.join(self.top)}</b> ({self.top_customers:,} customers) vs the rest "
                f"({self.rest_customers:,})</p>"
                + "".join(t.to_html(index=False, float_format="%.4g")
                          for t in (self.measures, self.categories, self.chi_square) if len(t)))


def summarize_profile(customers, orders, as_of, *, top: Sequence[str] = ("Champions",),
                      categories: Sequence[str] = ("channel", "device"), events=None,
                      days: int = 30) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sufficient statistics of :func:`segment_profile`, from the engine: category counts (column,
    category, group "top"/"rest", customers) and moments of the early behaviours (measure, group, n, mean,
    var). Customers with an order by ``as_of`` whose first ``days`` are complete by then take part."""
    top = _top(top)
    day = _day(as_of, "as_of")
    r = rfm_expr(orders, day)
    r = r.select(_rid=r.customer_id, _group=ibis.ifelse(r.segment.isin(list(top)), "top", "rest"))
    e = early_behaviour_expr(customers, orders, events=events, days=days, columns=categories)
    e = e.filter(_complete(e, day, days))
    j = e.join(r, e.customer_id == r._rid)
    parts = []
    for col in categories:
        g = j.group_by([j._group, _label(j[col]).name("category")]).aggregate(customers=j.count())
        parts.append(g.to_pandas().assign(column=col))
    cats = (pd.concat(parts, ignore_index=True) if parts
            else pd.DataFrame(columns=["_group", "category", "customers", "column"]))
    cats = cats.rename(columns={"_group": "group"})[["column", "category", "group", "customers"]]
    measures = [c for c in e.columns if c.endswith(f"_{days}d")]
    agg = {}
    for m in measures:
        x = j[m].cast("float64")
        agg |= {f"{m}__n": x.count(), f"{m}__mean": x.mean(), f"{m}__var": x.var()}
    wide = j.group_by(j._group.name("group")).aggregate(**agg).to_pandas()
    rows = [{"measure": m, "group": w["group"], "n": int(w[f"{m}__n"]), "mean": float(w[f"{m}__mean"]),
             "var": float(w[f"{m}__var"]) if pd.notna(w[f"{m}__var"]) else math.nan}
            for m in measures for _, w in wide.iterrows()]
    return cats, pd.DataFrame(rows, columns=["measure", "group", "n", "mean", "var"])


def _top(top) -> tuple[str, ...]:
    top = (top,) if isinstance(top, str) else tuple(top)
    unknown = [t for t in top if t not in RFM_SEGMENTS]
    if not top or unknown:
        raise SegmentError(f"top must name RFM segments ({', '.join(RFM_SEGMENTS)}), not {top!r}")
    return top


def segment_profile(category_counts: pd.DataFrame, moments: pd.DataFrame, top: Sequence[str] = ("Champions",),
                    min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> SegmentProfile:
    """Top vs rest from :func:`summarize_profile`'s counts and moments (see :class:`SegmentProfile`)."""
    min_cell = _min_cell(min_cell_size)
    counts = category_counts
    sizes = {}
    if len(moments):
        first = moments[moments.measure == moments.measure.iloc[0]]
        sizes = dict(zip(first.group, first.n))
    elif len(counts):
        first = counts[counts.column == counts.column.iloc[0]]
        sizes = first.groupby("group").customers.sum().to_dict()
    n_top, n_rest = int(sizes.get("top", 0)), int(sizes.get("rest", 0))

    cat_rows, tests = [], []
    for col, part in counts.groupby("column", sort=False):
        table = part.pivot_table(index="category", columns="group", values="customers", aggfunc="sum",
                                 fill_value=0).reindex(columns=["top", "rest"], fill_value=0)
        totals = table.sum()
        for cat, row in table.iterrows():
            out = {"column": col, "category": cat}
            for g in ("top", "rest"):
                small = row[g] < min_cell or totals[g] < min_cell
                out[f"{g}_customers"] = np.nan if small else float(row[g])
                out[f"{g}_share"] = np.nan if small else row[g] / totals[g]
            out["difference"] = out["top_share"] - out["rest_share"]
            out["suppressed"] = bool(np.isnan(out["top_customers"]) or np.isnan(out["rest_customers"]))
            cat_rows.append(out)
        observed = table.loc[table.sum(axis=1) > 0]
        if len(observed) >= 2 and (totals > 0).all():
            chi2, p, dof, _ = stats.chi2_contingency(observed.to_numpy(), correction=False)
            tests.append({"column": col, "statistic": float(chi2), "df": int(dof), "p_value": float(p)})
        else:
            tests.append({"column": col, "statistic": math.nan, "df": 0, "p_value": math.nan})
    cats = pd.DataFrame(cat_rows, columns=["column", "category", "top_customers", "top_share", "rest_customers",
                                           "rest_share", "difference", "suppressed"])
    meas_rows = []
    for m, part in moments.groupby("measure", sort=False):
        g = part.set_index("group")
        get = {k: (float(g.loc[k, "n"]), float(g.loc[k, "mean"]), float(g.loc[k, "var"])) if k in g.index
               else (0.0, math.nan, math.nan) for k in ("top", "rest")}
        (n1, m1, v1), (n2, m2, v2) = get["top"], get["rest"]
        t, df, p = welch_test(n1, m1, v1, n2, m2, v2)
        small = n1 < min_cell or n2 < min_cell
        meas_rows.append({"measure": m, "top_customers": n1, "top_mean": m1, "rest_customers": n2, "rest_mean": m2,
                          "difference": m1 - m2, "cohens_d": cohens_d(n1, m1, v1, n2, m2, v2), "t": t, "df": df,
                          "p_value": p, "suppressed": small})
    meas = pd.DataFrame(meas_rows, columns=["measure", "top_customers", "top_mean", "rest_customers", "rest_mean",
                                            "difference", "cohens_d", "t", "df", "p_value", "suppressed"])
    if len(meas):
        blank = meas.suppressed.to_numpy()
        meas.loc[blank, ["top_customers", "top_mean", "rest_customers", "rest_mean", "difference", "cohens_d",
                         "t", "df", "p_value"]] = np.nan
    return SegmentProfile(_top(top), cats, pd.DataFrame(tests, columns=["column", "statistic", "df", "p_value"]),
                          meas, n_top, n_rest, min_cell)


def profile_top_segment(customers, orders, as_of, *, top: Sequence[str] = ("Champions",),
                        categories: Sequence[str] = ("channel", "device"), events=None, days: int = 30,
                        min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> SegmentProfile:
    """The top RFM segment(s) at ``as_of`` vs every other customer: category shares with χ² tests and the
    first ``days`` after conversion (orders, revenue, events) with Cohen's d and Welch p-values."""
    cats, moments = summarize_profile(customers, orders, as_of, top=top, categories=categories, events=events,
                                      days=days)
    return segment_profile(cats, moments, top, min_cell_size)


# --------------------------------------------------------------------------------------------------
# 3. Lookalike scoring
# --------------------------------------------------------------------------------------------------


def lookalike_frame(customers, orders, as_of, *, events=None, days: int = 30, top: Sequence[str] = ("Champions",),
                    columns: Sequence[str] = ("channel", "device")) -> pd.DataFrame:
    """One row per customer whose first ``days`` are complete at ``as_of``: customer_id, converted (day),
    the early behaviours of :func:`early_behaviour_expr`, ``columns`` and label (1 = in a ``top`` RFM
    segment at ``as_of``)."""
    top = _top(top)
    day = _day(as_of, "as_of")
    e = early_behaviour_expr(customers, orders, events=events, days=days, columns=columns)
    e = e.filter(_complete(e, day, days))
    r = rfm_expr(orders, day)
    r = r.select(_rid=r.customer_id, _top=r.segment.isin(list(top)))
    j = e.left_join(r, e.customer_id == r._rid)
    out = j.select(*e.columns, label=j._top.fill_null(False).cast("int64")).order_by("customer_id").to_pandas()
    out["converted"] = pd.to_datetime(out["converted"]).dt.date
    return out


@dataclass(frozen=True, repr=False)
class Lookalike(_Result):
    """A fitted lookalike model and how well it ranks newer customers.

    ``coefficients``: term, coef, se, z, p_value, odds_ratio with its interval. ``auc``: holdout AUC
    (``auc_train`` in sample). ``calibration``: holdout deciles of the predicted probability (1 = lowest) with
    customers, mean_predicted, observed_rate, suppressed. ``scores``: recent customers (customer_id,
    converted, score) — ids, so for a CSV file, never a report page.
    """

    coefficients: pd.DataFrame
    auc: float
    auc_train: float
    calibration: pd.DataFrame
    scores: pd.DataFrame
    train_customers: int
    train_positive_rate: float
    holdout_customers: int
    holdout_positive_rate: float
    train_until: dt.date
    holdout_until: dt.date
    numeric: tuple[str, ...]
    levels: dict = field(default_factory=dict)  # categorical column -> non-reference levels
    params: pd.Series | None = None

    def to_frame(self) -> pd.DataFrame:
        return self.coefficients.copy()

    def __repr__(self) -> str:
        return (f"<Lookalike: holdout AUC {self.auc:.3f} on {self.holdout_customers:,} customers; "
                f"{len(self.scores):,} recent customers scored>")

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predicted probability of reaching the top segment for rows with the model's columns."""
        return _predict(self.params, frame, self.numeric, self.levels)


def _predict(params: pd.Series, frame: pd.DataFrame, numeric: Sequence[str], levels: dict) -> np.ndarray:
    if len(frame) == 0:
        return np.array([], dtype=float)
    x = _design(frame, numeric, levels)
    return 1 / (1 + np.exp(-(x.to_numpy(float) @ params.reindex(x.columns).to_numpy(float))))


def _design(frame: pd.DataFrame, numeric: Sequence[str], levels: dict) -> pd.DataFrame:
    x = pd.DataFrame({"const": 1.0}, index=frame.index)
    for col in numeric:
        x[col] = frame[col].astype(float)
    for col, values in levels.items():
        labels = frame[col].astype("object").where(frame[col].notna(), MISSING).astype(str)
        for v in values:
            x[f"{col}={v}"] = (labels == v).astype(float)
    return x


def fit_lookalike(frame: pd.DataFrame, as_of, *, recent_days: int = 90, train_share: float = 0.7,
                  numeric: Sequence[str] | None = None, categorical: Sequence[str] = ("channel", "device"),
                  alpha: float = 0.05, min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> Lookalike:
    """Logistic regression (statsmodels GLM, binomial) of ``label`` on the early behaviours of
    :func:`lookalike_frame` and dummies of ``categorical`` (reference = the most common level in training).

    Customers converted at least ``recent_days`` before ``as_of`` have had time to reach the top segment:
    the oldest ``train_share`` of them (by conversion day) train the model, the newer ones are the holdout.
    Customers converted within the last ``recent_days`` are scored.
    """
    import statsmodels.api as sm

    min_cell = _min_cell(min_cell_size)
    if not 0 < train_share < 1:
        raise SegmentError("train_share must be between 0 and 1")
    day = _day(as_of, "as_of")
    numeric = tuple(numeric) if numeric is not None else tuple(
        c for c in frame.columns if c.split("_")[0] in ("orders", "revenue", "events") and c.endswith("d"))
    missing = [c for c in ("customer_id", "converted", "label", *numeric, *categorical) if c not in frame.columns]
    if missing:
        raise SegmentError(f"the lookalike frame needs the column(s) {', '.join(missing)}")
    converted = pd.to_datetime(frame["converted"])
    cutoff = pd.Timestamp(day - dt.timedelta(days=recent_days))
    mature = frame[converted <= cutoff].assign(_c=converted[converted <= cutoff]).sort_values(["_c", "customer_id"])
    recent = frame[converted > cutoff]
    n_train = int(round(train_share * len(mature)))
    train, holdout = mature.iloc[:n_train], mature.iloc[n_train:]
    if n_train < 2 or train["label"].nunique() < 2:
        raise SegmentError(f"cannot train the lookalike model: {n_train} training customers with "
                           f"{int(train['label'].sum()) if n_train else 0} in the top segment; use an earlier "
                           "recent_days cut, a larger top segment or more data")
    levels = {}
    for col in categorical:
        labels = train[col].astype("object").where(train[col].notna(), MISSING).astype(str)
        sizes = labels.value_counts()
        levels[col] = sorted(v for v in sizes.index if v != sizes.index[0])
    x = _design(train, numeric, levels)
    x = x.loc[:, (x != 0).any() | (x.columns == "const")]
    try:
        fit = sm.GLM(train["label"].astype(float), x, family=sm.families.Binomial()).fit()
    except Exception as exc:  # perfect separation, singular design: say so plainly
        raise SegmentError(f"the lookalike model could not be fitted ({exc})") from None
    ci = fit.conf_int(alpha)
    coefs = pd.DataFrame({"term": x.columns, "coef": fit.params.to_numpy(), "se": fit.bse.to_numpy(),
                          "z": fit.tvalues.to_numpy(), "p_value": fit.pvalues.to_numpy(),
                          "odds_ratio": np.exp(fit.params.to_numpy()), "odds_ratio_ci_low": np.exp(ci[0].to_numpy()),
                          "odds_ratio_ci_high": np.exp(ci[1].to_numpy())})
    levels = {col: [v for v in vals if f"{col}={v}" in x.columns] for col, vals in levels.items()}
    p_train = _predict(fit.params, train, numeric, levels)
    p_hold = _predict(fit.params, holdout, numeric, levels)
    calibration = calibration_table(p_hold, holdout["label"].to_numpy(), min_cell_size=min_cell)
    scores = pd.DataFrame({"customer_id": recent["customer_id"].to_numpy(), "converted": recent["converted"].to_numpy(),
                           "score": _predict(fit.params, recent, numeric, levels)})
    scores = scores.sort_values(["score", "customer_id"], ascending=[False, True]).reset_index(drop=True)
    return Lookalike(
        coefficients=coefs, auc=auc(p_hold, holdout["label"]), auc_train=auc(p_train, train["label"]),
        calibration=calibration, scores=scores, train_customers=len(train),
        train_positive_rate=float(train["label"].mean()), holdout_customers=len(holdout),
        holdout_positive_rate=float(holdout["label"].mean()) if len(holdout) else math.nan,
        train_until=train["_c"].max().date(), holdout_until=holdout["_c"].max().date() if len(holdout) else day,
        numeric=numeric, levels=levels, params=fit.params)


def calibration_table(predicted, observed, bins: int = 10,
                      min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> pd.DataFrame:
    """Predicted vs observed rate per quantile bin of the prediction (bin 1 = lowest predictions; equal
    sizes, ties broken by position): bin, customers, mean_predicted, observed_rate, suppressed."""
    p = np.asarray(predicted, float)
    y = np.asarray(observed, float)
    columns = ["bin", "customers", "mean_predicted", "observed_rate"]
    if len(p) == 0:
        return pd.DataFrame(columns=[*columns, "suppressed"])
    k = min(bins, len(p))
    order = np.argsort(p, kind="stable")
    b = np.empty(len(p), dtype=int)
    b[order] = np.arange(len(p)) * k // len(p) + 1
    out = (pd.DataFrame({"bin": b, "p": p, "y": y}).groupby("bin")
           .agg(customers=("p", "size"), mean_predicted=("p", "mean"), observed_rate=("y", "mean")).reset_index())
    return suppress_small_cells(out, "customers", _min_cell(min_cell_size), ["mean_predicted", "observed_rate"])


def lookalike(customers, orders, as_of, *, events=None, days: int = 30, top: Sequence[str] = ("Champions",),
              categorical: Sequence[str] = ("channel", "device"), recent_days: int = 90, train_share: float = 0.7,
              min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> Lookalike:
    """:func:`lookalike_frame` then :func:`fit_lookalike`."""
    frame = lookalike_frame(customers, orders, as_of, events=events, days=days, top=top, columns=categorical)
    return fit_lookalike(frame, as_of, recent_days=recent_days, train_share=train_share, categorical=categorical,
                         min_cell_size=min_cell_size)


# --------------------------------------------------------------------------------------------------
# 4. Re-engagement timing
# --------------------------------------------------------------------------------------------------


def _segment_of(customers, orders, day: dt.date, by: str | None, rules: StageRules) -> ibis.Table | None:
    """(_sid, segment) per customer at ``day``: a customers column, "stage" (lifecycle) or "rfm_segment";
    None for no segmentation."""
    if by is None:
        return None
    if by == "stage":
        if customers is None:
            raise SegmentError("segmenting by stage needs the customers table")
        s = stage_expr(customers, orders, day, rules)
        return s.select(_sid=s.customer_id, segment=s.stage)
    if by == "rfm_segment":
        r = rfm_expr(orders, day)
        return r.select(_sid=r.customer_id, segment=r.segment)
    if customers is None:
        raise SegmentError(f"segmenting by {by!r} needs the customers table")
    c = _table(customers, "customers", ["customer_id", by])
    return c.select(_sid=c.customer_id.cast("string"), segment=_label(c[by]))


def _with_segment(t: ibis.Table, seg: ibis.Table | None) -> ibis.Table:
    if seg is None:
        return t.mutate(segment=ibis.literal(ALL))
    j = t.left_join(seg, t.customer_id == seg._sid)
    return j.mutate(segment=j.segment.fill_null(MISSING)).drop("_sid")


def repurchase_gap_expr(orders, as_of, customers=None, *, by: str | None = None,
                        rules: StageRules = StageRules()) -> ibis.Table:
    """One row per repeat purchase day up to ``as_of``: customer_id, segment, gap_days (calendar days since
    the customer's previous purchase day, ≥ 1; a lag over each customer's purchase days).

    ``by``: a column of customers, ``"stage"`` (lifecycle stage at ``as_of``), ``"rfm_segment"`` or None
    (segment "all"). Gaps are grouped by the customer's segment at ``as_of``."""
    day = _day(as_of, "as_of")
    p = _purchase_days(orders, day)
    prev = p.day.lag().over(group_by=p.customer_id, order_by=p.day)
    g = p.mutate(_prev=prev)
    g = g.filter(g._prev.notnull())
    g = g.select(customer_id=g.customer_id, gap_days=_days(g.day, g._prev))
    g = _with_segment(g, _segment_of(customers, orders, day, by, rules))
    return g.select("customer_id", "segment", "gap_days")


def repurchase_gap_counts(orders, as_of, customers=None, *, by: str | None = None,
                          rules: StageRules = StageRules()) -> pd.DataFrame:
    """Gaps between purchases aggregated in the engine: segment, gap_days, n (gaps), customers (distinct
    customers with at least one gap in the segment, repeated on each row of the segment)."""
    g = repurchase_gap_expr(orders, as_of, customers, by=by, rules=rules)
    counts = g.group_by(["segment", "gap_days"]).aggregate(n=g.count()).to_pandas()
    people = g.group_by("segment").aggregate(customers=g.customer_id.nunique()).to_pandas()
    out = counts.merge(people, on="segment").sort_values(["segment", "gap_days"]).reset_index(drop=True)
    return out.astype({"gap_days": "int64", "n": "int64", "customers": "int64"})


def gap_summary(counts: pd.DataFrame, lead_time_days: int = 14, window_multiple: float = 2.0,
                min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> pd.DataFrame:
    """Per segment of :func:`repurchase_gap_counts`: customers, gaps, median_days, q1_days, q3_days,
    mean_days (quantiles as numpy's default on the expanded gaps), contact_day = max(1, ⌊median −
    lead_time_days⌋), window_end_day = window_multiple × median, suppressed (fewer than ``min_cell_size``
    customers: every number blanked)."""
    if lead_time_days < 0:
        raise SegmentError("lead_time_days must be ≥ 0")
    if window_multiple <= 1:
        raise SegmentError("window_multiple must be > 1 (the window ends after the typical gap)")
    rows = []
    for seg, part in counts.groupby("segment", sort=True):
        v, w = part["gap_days"].to_numpy(float), part["n"].to_numpy()
        median = weighted_quantile(v, w, 0.5)
        rows.append({"segment": seg, "customers": int(part["customers"].iloc[0]), "gaps": int(w.sum()),
                     "median_days": median, "q1_days": weighted_quantile(v, w, 0.25),
                     "q3_days": weighted_quantile(v, w, 0.75), "mean_days": float((v * w).sum() / w.sum()),
                     "contact_day": float(max(1, math.floor(median - lead_time_days))),
                     "window_end_day": window_multiple * median})
    out = pd.DataFrame(rows, columns=["segment", "customers", "gaps", "median_days", "q1_days", "q3_days",
                                      "mean_days", "contact_day", "window_end_day"])
    return suppress_small_cells(out, "customers", _min_cell(min_cell_size))


def contact_window_expr(orders, as_of, summary: pd.DataFrame, customers=None, *, by: str | None = None,
                        rules: StageRules = StageRules()) -> ibis.Table:
    """Customers inside their contact window at ``as_of``: customer_id, segment, days_since_last_order,
    contact_day, window_end_day, where contact_day ≤ days since the last purchase day ≤ window_end_day
    (both from :func:`gap_summary`, whose suppressed segments are left out)."""
    day = _day(as_of, "as_of")
    p = _purchase_days(orders, day)
    last = p.group_by("customer_id").aggregate(_last=p.day.max())
    last = last.select(customer_id=last.customer_id, days_since_last_order=_days(ibis.literal(day), last._last))
    last = _with_segment(last, _segment_of(customers, orders, day, by, rules))
    usable = summary[~summary["suppressed"]] if "suppressed" in summary else summary
    s = ibis.memtable(usable[["segment", "contact_day", "window_end_day"]]
                      .rename(columns={"segment": "_seg"}).astype({"_seg": str, "contact_day": float,
                                                                   "window_end_day": float}))
    j = last.join(s, last.segment == s._seg)
    j = j.filter((j.days_since_last_order >= j.contact_day) & (j.days_since_last_order <= j.window_end_day))
    return j.select("customer_id", "segment", "days_since_last_order", "contact_day", "window_end_day")


def contact_window(orders, as_of, summary: pd.DataFrame, customers=None, *, by: str | None = None,
                   rules: StageRules = StageRules()) -> pd.DataFrame:
    """:func:`contact_window_expr` executed, longest-quiet first: a per-customer list for a CSV file."""
    e = contact_window_expr(orders, as_of, summary, customers, by=by, rules=rules)
    out = e.order_by([ibis.desc("days_since_last_order"), "customer_id"]).to_pandas()
    return out.astype({"days_since_last_order": "int64"})


# --------------------------------------------------------------------------------------------------
# 5. Lead conversion
# --------------------------------------------------------------------------------------------------


def _observed_until(leads: ibis.Table, customers: ibis.Table) -> pd.Timestamp:
    values = [pd.Timestamp(v) for v in (leads.created_at.max().to_pandas(), customers.converted_at.max().to_pandas())]
    values = [_timestamp(v, "observed_until") for v in values if not pd.isna(v)]
    if not values:
        raise SegmentError("the leads have no timestamps")
    return max(values)


def lead_expr(leads, customers, observed_until=None, by: str = "source") -> ibis.Table:
    """One row per lead created by ``observed_until`` (default: the latest timestamp of leads and
    customers): lead_id, ``by``, converted (1 when its customer converted by ``observed_until``), days =
    ⌊(conversion or observed_until − created_at) / 1 day⌋ + 1 (at least 1): time to convert, or to the end
    of the data for open leads (censored). A lead counts as converted only when its customer_id is found in
    customers with a conversion time."""
    lt = _table(leads, "leads", ["lead_id", "created_at", "customer_id", by])
    c = _table(customers, "customers", ["customer_id", "converted_at"])
    until = _timestamp(observed_until, "observed_until") if observed_until is not None else _observed_until(lt, c)
    until = until.floor("us")
    until_lit = ibis.literal(until.to_pydatetime())
    conv = c.select(_cid=c.customer_id.cast("string"), _conv_at=c.converted_at)
    lt = lt.filter(lt.created_at <= until_lit)
    j = lt.left_join(conv, lt.customer_id.cast("string") == conv._cid)
    converted = j._conv_at.notnull() & (j._conv_at <= until_lit)
    end = ibis.ifelse(converted, j._conv_at, until_lit)
    days = ((end.epoch_seconds() - j.created_at.epoch_seconds()) / DAY_SECONDS).floor().cast("int64") + 1
    return j.select(lead_id=j.lead_id, **{by: _label(j[by])}, converted=converted.cast("int64"),
                    days=ibis.greatest(days, 1))


def lead_conversion(leads, customers, *, observed_until=None, by: str = "source", alpha: float = 0.05,
                    min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> pd.DataFrame:
    """Leads, converted leads and the conversion rate with its Wilson interval per ``by`` and overall
    (row "all"), as of ``observed_until``. Recent leads have had less time to convert; the Kaplan–Meier view
    (:func:`lead_time_to_convert`) accounts for that."""
    e = lead_expr(leads, customers, observed_until, by)
    got = e.group_by(by).aggregate(leads=e.count(), converted=e.converted.sum()).order_by(by).to_pandas()
    total = pd.DataFrame({by: [ALL], "leads": [got["leads"].sum()], "converted": [got["converted"].sum()]})
    out = pd.concat([got, total], ignore_index=True).astype({"leads": "int64", "converted": "int64"})
    out["conversion_rate"] = out["converted"] / out["leads"].replace(0, np.nan)
    out["ci_low"], out["ci_high"] = wilson_interval(out["converted"], out["leads"], alpha)
    return suppress_small_cells(out, "leads", _min_cell(min_cell_size))


def lead_time_counts(leads, customers, *, observed_until=None, by: str = "source") -> pd.DataFrame:
    """(days, converted, ``by``, n) aggregated in the engine: the input of :func:`lead_time_to_convert`."""
    e = lead_expr(leads, customers, observed_until, by)
    keys = ["days", "converted", by]
    out = e.group_by(keys).aggregate(n=e.count()).order_by(keys).to_pandas()
    return out.astype({"days": "int64", "converted": "int64", "n": "int64"})


@dataclass(frozen=True, repr=False)
class LeadTiming(_Result):
    """Time to convert by source: ``curves`` (Kaplan–Meier of "still a lead", :class:`~pco_lib.survival.
    SurvivalCurves`) and ``table``: per source the leads, converted, share converted by each horizon
    (1 − S(h), with interval) and the median days to convert among converted leads."""

    curves: object
    table: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()


def lead_time_to_convert(counts: pd.DataFrame, by: str = "source", horizons: Sequence[int] = (7, 30, 90),
                         alpha: float = 0.05, min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> LeadTiming:
    """Kaplan–Meier of time to convert per ``by`` (conversion is the event; open leads are censored at the
    end of the data), via :func:`pco_lib.survival.kaplan_meier`."""
    from .survival import kaplan_meier

    km = kaplan_meier(counts.rename(columns={"converted": "churned"}), by, alpha)
    rows = []
    for name, part in counts.groupby(by, sort=True):
        conv = part[part.converted == 1]
        row = {by: str(name), "leads": int(part.n.sum()), "converted": int(conv.n.sum()),
               "median_days_converted": weighted_quantile(conv.days, conv.n, 0.5)}
        for h in horizons:
            at = km.at(h).set_index("segment").loc[str(name)]
            row[f"converted_by_{h}d"] = 1 - at["survival"]
            row[f"converted_by_{h}d_ci_low"] = 1 - at["ci_high"]
            row[f"converted_by_{h}d_ci_high"] = 1 - at["ci_low"]
        rows.append(row)
    table = suppress_small_cells(pd.DataFrame(rows), "leads", _min_cell(min_cell_size))
    return LeadTiming(km, table)


# --------------------------------------------------------------------------------------------------
# The report's readout
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class LifecycleReadout:
    """Everything the lifecycle report shows (customer-level lists only in ``contacts`` and
    ``lookalike.scores``, which go to CSV files)."""

    as_of: dt.date
    start: dt.date
    stages: pd.DataFrame
    stages_by_segment: pd.DataFrame | None
    transitions: Transitions
    rfm: pd.DataFrame
    rfm_grid: pd.DataFrame
    profile: SegmentProfile | None
    lookalike: Lookalike | None
    gaps: pd.DataFrame
    contacts: pd.DataFrame
    leads: pd.DataFrame | None
    lead_timing: LeadTiming | None
    segment: str | None
    lead_time_days: int
    notes: tuple[str, ...] = ()


def analyze(source, as_of: str = "", compare_days: int = 90, segment: str | None = "channel",
            lead_time_days: int = 14, rules: StageRules = StageRules(),
            min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> LifecycleReadout:
    """Stages now and ``compare_days`` ago with the transitions between them, RFM segments and a profile of
    the Champions, the lookalike model, repurchase gaps and contact windows per ``segment``, and lead
    conversion (when there is a leads table). ``as_of`` defaults to the last order day."""
    c, o = source.table("customers"), source.table("orders")
    leads = source.table("leads") if source.has("leads") else None
    events = source.table("events") if source.has("events") else None
    last = pd.Timestamp(o.ordered_at.max().to_pandas())
    day = _day(as_of, "as_of") if as_of else last.date()
    start = day - dt.timedelta(days=compare_days)
    if segment and segment not in c.columns:
        raise SegmentError(f"customers has no column {segment!r}; its columns are {', '.join(c.columns)}")
    stages = stage_counts(c, o, day, rules, leads=leads, min_cell_size=min_cell_size)
    by_segment = (stage_counts(c, o, day, rules, by=segment, min_cell_size=min_cell_size) if segment else None)
    transitions = stage_transitions(c, o, start, day, rules, leads=leads, min_cell_size=min_cell_size)
    notes = []
    categories = [x for x in dict.fromkeys([segment, "channel", "device"]) if x and x in c.columns]
    try:
        profile = profile_top_segment(c, o, day, categories=categories, events=events, min_cell_size=min_cell_size)
    except (SegmentError, ValueError) as exc:
        profile = None
        notes.append(f"the Champions could not be profiled: {exc}")
    try:
        model = lookalike(c, o, day, events=events, categorical=categories, min_cell_size=min_cell_size)
    except (SegmentError, ValueError) as exc:
        model = None
        notes.append(f"no lookalike model: {exc}")
    gaps = gap_summary(repurchase_gap_counts(o, day, c, by=segment or None, rules=rules), lead_time_days,
                       min_cell_size=min_cell_size)
    contacts = contact_window(o, day, gaps, c, by=segment or None, rules=rules)
    lead_table = lead_timing = None
    if leads is not None:
        from .survival import SurvivalError

        lead_table = lead_conversion(leads, c, min_cell_size=min_cell_size)
        try:
            lead_timing = lead_time_to_convert(lead_time_counts(leads, c), min_cell_size=min_cell_size)
        except SurvivalError:
            notes.append("no lead has converted yet, so time to convert cannot be estimated")
    return LifecycleReadout(day, start, stages, by_segment, transitions, rfm_segments(o, day, min_cell_size),
                            rfm_grid(o, day), profile, model, gaps, contacts, lead_table, lead_timing,
                            segment or None, lead_time_days, tuple(notes))


def summary_points(r: LifecycleReadout) -> list[str]:
    """Plain-language bullet points for the top of the lifecycle report."""
    points = []
    s = r.stages.set_index("stage")
    customers = s.drop(index="lead", errors="ignore").customers.sum()
    shown = [k for k in ("new", "repeat", "vip", "at_risk", "lapsed") if pd.notna(s.loc[k, "customers"])]
    parts = [f"{s.loc[k, 'customers']:,.0f} {k.replace('_', ' ')}" for k in shown]
    points.append(f"On {r.as_of:%d %b %Y}, of {customers:,.0f} customers: " + ", ".join(parts) + ".")
    shares = r.transitions.shares
    if "new" in shares.index and shares.loc["new"].notna().any():
        row = shares.loc["new"].dropna().sort_values(ascending=False)
        moves = ", ".join(f"{v:.0%} {k.replace('_', ' ')}" for k, v in row.items() if v >= 0.05)
        points.append(f"Where the customers who were new on {r.start:%d %b} went: {moves}.")
    if "vip" in shares.index and "at_risk" in shares.columns and pd.notna(shares.loc["vip", "at_risk"]):
        points.append(f"{shares.loc['vip', 'at_risk']:.0%} of the VIPs of {r.start:%d %b} are now at risk of "
                      "lapsing — the first group to win back.")
    rfm = r.rfm.set_index("segment")
    if "Can't lose them" in rfm.index and pd.notna(rfm.loc["Can't lose them", "customers"]):
        row = rfm.loc["Can't lose them"]
        points.append(f"**{row.customers:,.0f} \"can't lose them\" customers** (frequent buyers gone quiet) brought "
                      f"{row.share_of_revenue:.0%} of all revenue.")
    if r.profile is not None and len(r.profile.measures):
        m = r.profile.measures.sort_values("cohens_d", key=np.abs, ascending=False).iloc[0]
        points.append(f"Champions stand out early: in their first 30 days their {m.measure} averaged "
                      f"{m.top_mean:,.2f} vs {m.rest_mean:,.2f} for the rest (effect size d = {m.cohens_d:.2f}).")
    if r.lookalike is not None and pd.notna(r.lookalike.auc):
        points.append(f"A lookalike model spots future Champions from their first 30 days with AUC "
                      f"{r.lookalike.auc:.2f} on newer customers; {len(r.lookalike.scores):,} recent customers are "
                      "scored in the CSV beside this report.")
    g = r.gaps.dropna(subset=["median_days"])
    if len(g):
        timing = "; ".join(f"{row.segment} after {row.median_days:.0f} days (contact on day {row.contact_day:.0f})"
                           for row in g.itertuples())
        points.append(f"Typical time to the next purchase, {r.lead_time_days} days' lead time for contact: "
                      f"{timing}. {len(r.contacts):,} customers are inside their contact window now (CSV).")
    if r.leads is not None:
        lt = r.leads[r.leads.source != "all"].dropna(subset=["conversion_rate"])
        if len(lt):
            best, worst = lt.loc[lt.conversion_rate.idxmax()], lt.loc[lt.conversion_rate.idxmin()]
            points.append(f"Leads from {best.source} convert best ({best.conversion_rate:.1%}), from {worst.source} "
                          f"worst ({worst.conversion_rate:.1%}).")
    points += [f"Note: {n}" for n in r.notes]
    return points


def headlines(r: LifecycleReadout) -> tuple[list[tuple], dict]:
    """Headline cards and results.json values: ``stage_counts`` {stage: customers}, ``rfm_segments``
    {segment: {customers, share_of_revenue}}, ``lookalike_auc``, ``contact_days`` {segment: day} and
    ``lead_conversion`` {source: rate}."""
    s = r.stages.set_index("stage").customers

    def clean(v):
        return None if pd.isna(v) else float(v)

    cards = [(f"stage.{k}", clean(s.get(k)), label, ",.0f") for k, label in
             (("repeat", "Repeat customers"), ("vip", "VIP"), ("at_risk", "At risk"), ("lapsed", "Lapsed"))]
    hidden = {"stage_counts": {k: clean(v) for k, v in s.items()},
              "rfm_segments": {row.segment: {"customers": clean(row.customers),
                                             "share_of_revenue": clean(row.share_of_revenue)}
                               for row in r.rfm.itertuples()},
              "contact_days": {row.segment: clean(row.contact_day) for row in r.gaps.itertuples()}}
    if r.lookalike is not None:
        cards.append(("lookalike_auc", clean(r.lookalike.auc), "Lookalike AUC", ".2f"))
    if r.leads is not None:
        hidden["lead_conversion"] = {row.source: clean(row.conversion_rate) for row in r.leads.itertuples()}
    return cards, hidden
