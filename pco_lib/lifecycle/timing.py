"""When to talk to customers and leads.

**Re-engagement timing**: gaps between consecutive purchase days (a lag over each customer's purchase
days in the engine) per segment, their median and quartiles; recommended contact day = median gap − a
lead time (14 days, but never more than half the median gap: a customer who buys every 12 days is reminded
on day 6, not on day 1), at least 1; customers inside their contact window now: days since their last order
between the contact day and ``window_multiple`` (2) × the median gap, inclusive.

**Lead conversion**: leads → customers by source with Wilson intervals, and time to convert by
Kaplan–Meier (:func:`pco_lib.stats.survival.kaplan_meier`) with open leads censored at the end of the data.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

import ibis
import numpy as np
import pandas as pd

from ..data.privacy import DEFAULT_MIN_CELL_SIZE, suppress_small_cells
from ..data.source import MISSING
from ..stats.intervals import wilson_interval
from ..stats.scores import weighted_quantile
from .common import (
    ALL,
    DAY_SECONDS,
    SegmentError,
    _day,
    _days,
    _label,
    _min_cell,
    _purchase_days,
    _Result,
    _table,
    _timestamp,
)
from .rfm import rfm_expr
from .stages import StageRules, stage_expr


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
    min(lead_time_days, median / 2)⌋), window_end_day = window_multiple × median, suppressed (fewer than
    ``min_cell_size`` customers: every number blanked)."""
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
                     "contact_day": float(max(1, math.floor(median - min(lead_time_days, median / 2)))),
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
    counts = lead_time_counts(leads, customers, observed_until=observed_until, by=by)
    return lead_conversion_table(counts, by, alpha, min_cell_size)


def lead_conversion_table(counts: pd.DataFrame, by: str = "source", alpha: float = 0.05,
                          min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> pd.DataFrame:
    """:func:`lead_conversion` from :func:`lead_time_counts` (so one pass over the leads serves both views)."""
    n = counts["n"].astype("int64")
    got = (pd.DataFrame({by: counts[by], "leads": n, "converted": n.where(counts["converted"] == 1, 0)})
           .groupby(by, sort=True).sum().reset_index())
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
    """Time to convert by source: ``curves`` (Kaplan–Meier of "still a lead", :class:`~pco_lib.stats.survival.
    SurvivalCurves`) and ``table``: per source the leads, converted, share converted by each horizon
    (1 − S(h), with interval) and the median days to convert among converted leads."""

    curves: object
    table: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()


def lead_time_to_convert(counts: pd.DataFrame, by: str = "source", horizons: Sequence[int] = (7, 30, 90),
                         alpha: float = 0.05, min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> LeadTiming:
    """Kaplan–Meier of time to convert per ``by`` (conversion is the event; open leads are censored at the
    end of the data), via :func:`pco_lib.stats.survival.kaplan_meier`."""
    from ..stats.survival import kaplan_meier

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
