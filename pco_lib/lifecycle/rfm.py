"""RFM scores, the named RFM segments and what sets the top segment apart.

**RFM** (:func:`rfm_expr`): recency = days since the last order, frequency = orders, monetary = revenue up
to ``as_of``, for customers with at least one order ($0 orders count in recency and frequency and add 0 to
monetary; customers without orders are not scored). Scores 1–5 by rank: score = ⌊5·k/n⌋ + 1 where k is
the number of customers strictly worse (0-based minimum rank; recency reversed, so the most recent get 5);
tied customers share a score. Named segments follow the de-facto standard R×F grid: the segment names of
Putler's guide "RFM Analysis For Successful Customer Segmentation" (putler.com/rfm-analysis), laid out on
recency and frequency scores as in the ``seg_map`` of regular expressions over "RF" score strings that most
RFM tutorials and notebooks use (``[1-2][1-2]`` Hibernating, ``[1-2][3-4]`` At risk, ``[1-2]5`` Can't lose
them, ``3[1-2]`` About to sleep, ``33`` Need attention, ``[3-4][4-5]`` Loyal, ``41`` Promising, ``51`` New
customers, ``[4-5][2-3]`` Potential loyalists, ``5[4-5]`` Champions): see :data:`RFM_GRID`. One deviation:
R = F = 1 is split out of Hibernating as Lost, the eleventh name of Putler's list. Monetary is scored but,
as in that map, does not enter the segment name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import ibis
import numpy as np
import pandas as pd
from scipy import stats

from ..data.privacy import DEFAULT_MIN_CELL_SIZE, suppress_small_cells
from ..stats.inference import welch_test
from ..stats.scores import cohens_d
from .common import (
    SegmentError,
    _complete,
    _customers,
    _date,
    _day,
    _days,
    _label,
    _min_cell,
    _purchase_days,
    _Result,
    _shared,
    _table,
)

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


def rfm_segment(r: int, f: int) -> str:
    """The named segment of recency score ``r`` and frequency score ``f`` (both 1–5) on :data:`RFM_GRID`."""
    for rs, fs, name in RFM_GRID:
        if r in rs and f in fs:
            return name
    raise SegmentError(f"RFM scores must be 1–5, not R={r!r}, F={f!r}")


def _score(rank, n) -> ibis.Value:
    return ((rank.cast("float64") * 5) / n.cast("float64")).floor().cast("int64") + 1


def rfm_expr(orders, as_of) -> ibis.Table:
    """Per customer with an order on or before ``as_of``: customer_id, recency_days, frequency (orders),
    monetary (revenue), r_score, f_score, m_score (1–5; see the module docstring) and segment."""
    day = _day(as_of, "as_of")
    p = _purchase_days(orders, day)
    per = p.group_by("customer_id").aggregate(last_day=p.day.max(), frequency=p.orders.sum(),
                                              monetary=p.revenue.sum().cast("float64"))
    per = per.mutate(recency_days=_days(ibis.literal(day), per.last_day), frequency=per.frequency.cast("int64"))
    n = per.customer_id.count().over(ibis.window())
    per = per.mutate(
        r_score=_score(ibis.rank().over(order_by=ibis.desc(per.recency_days)), n),
        f_score=_score(ibis.rank().over(order_by=per.frequency), n),
        m_score=_score(ibis.rank().over(order_by=per.monetary), n),
    )
    segment = ibis.cases(*[(per.r_score.isin(rs) & per.f_score.isin(fs), name) for rs, fs, name in RFM_GRID],
                         else_=ibis.null("string"))
    return _shared(per.select("customer_id", "recency_days", "frequency", "monetary", "r_score", "f_score",
                              "m_score", segment=segment))


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


def measure_label(measure: str) -> str:
    """An early-behaviour measure in words: "orders_30d" → "orders in the first 30 days"."""
    found = re.match(r"^([a-z]+)_(\d+)d$", measure)
    return f"{found.group(1)} in the first {found.group(2)} days" if found else measure.replace("_", " ")


def early_behaviour_expr(customers, orders, *, events=None, days: int = 30,
                         columns: Sequence[str] = ()) -> ibis.Table:
    """Per customer: customer_id, converted (conversion day), ``orders_{days}d``, ``revenue_{days}d``
    (and ``events_{days}d`` with ``events``) — counted on the conversion day and the ``days − 1`` days
    after it (the first order included, as conversion = first purchase) — plus ``columns`` of customers."""
    if days < 1:
        raise SegmentError("days must be at least 1")
    c = _customers(customers, columns)
    p = _purchase_days(orders)
    o = p.select(_oid=p.customer_id, _day=p.day, _orders=p.orders, _rev=p.revenue)
    conv = c.select(_cid=c.customer_id, _c0=c._conv)
    j = o.join(conv, o._oid == conv._cid)
    j = j.filter((j._day >= j._c0) & (_days(j._day, j._c0) < days))
    agg = {f"orders_{days}d": j._orders.sum(), f"revenue_{days}d": j._rev.sum().cast("float64")}
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
    return _shared(out.select(customer_id=out.customer_id, converted=out._conv, **values,
                              **{col: out[col] for col in columns}))


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
