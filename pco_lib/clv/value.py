"""Value for decision makers: value deciles, the top-20% share and a profile of the top group (small cells
hidden), the back-of-envelope AOV × orders a year × years formula, and per-plan subscription value with the
shifted-beta-geometric model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.source import MISSING
from ..stats.models.base import DAYS_PER_YEAR, ClvError, fail_if_any, positive_number, resolve_unit, unit_of
from ..stats.models.bgnbd import BGNBD
from ..stats.models.sbg import ShiftedBetaGeometric
from .validation import _min_cell, _Result, _suppress


def _values(value, id_column: str, value_column: str) -> pd.Series:
    """Per-customer values as a float Series indexed by customer id (from a Series or a frame)."""
    if isinstance(value, pd.DataFrame):
        missing = [c for c in (id_column, value_column) if c not in value.columns]
        if missing:
            raise ClvError(f"the value frame needs the column(s) {', '.join(missing)}")
        s = pd.Series(value[value_column].to_numpy(), index=value[id_column].astype(str).to_numpy())
    elif isinstance(value, pd.Series):
        s = pd.Series(value.to_numpy(), index=value.index.astype(str))
    else:
        raise ClvError("value must be a pandas Series indexed by customer id, or a frame with id and value columns")
    try:
        s = s.astype("float64")
    except (TypeError, ValueError) as exc:
        raise ClvError("customer values must be numeric") from exc
    if len(s) == 0:
        raise ClvError("no customers: the values are empty")
    fail_if_any("value", "finite", ~np.isfinite(s.to_numpy()), s.to_numpy())
    if s.index.has_duplicates:
        raise ClvError(f"customer ids must be unique; e.g. {s.index[s.index.duplicated()][0]!r} repeats")
    return s.rename_axis(id_column)


def _top_mask(values: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` highest values, ties broken by id: the first k of the values sorted descending, then by id.
    Only the customers tied at the k-th value are sorted by id (np.partition finds that value in O(n))."""
    n = len(values)
    top = np.zeros(n, dtype=bool)
    if k <= 0:
        return top
    threshold = np.partition(values, n - k)[n - k]
    top[values > threshold] = True
    tied = np.flatnonzero(values == threshold)
    top[tied[np.argsort(ids[tied])[:k - int(top.sum())]]] = True
    return top


def _profile_columns(customers: pd.DataFrame, id_column: str, ids: np.ndarray, cols: list[str]) -> pd.DataFrame:
    """``cols`` of ``customers`` for each id in ``ids`` (the first row per id; missing where there is none)."""
    cid = customers[id_column].astype(str).to_numpy()
    if len(cid) == len(ids) and np.array_equal(cid, ids):  # already one row per customer in this order
        return customers[cols].reset_index(drop=True)
    first = ~pd.Index(cid).duplicated()
    rows = customers.loc[first, cols].reset_index(drop=True)
    return rows.reindex(pd.Index(cid[first]).get_indexer(ids))  # -1 (no row) is not a label: missing


@dataclass(frozen=True, repr=False)
class ValueSegments(_Result):
    """How value is concentrated across customers and who the most valuable customers are.

    ``deciles``: decile 1 = the 10% most valuable customers … 10 = the least (customers ranked by value,
    ties broken by customer id; sizes differ by at most one), with customers, total value, share of value,
    cumulative share, mean/min/max value. ``top_value_share``: share of the total value held by the top
    ``top_share`` (20%) of customers (``top_customers`` = round(top_share · n)). ``categories``: per column and
    category the customers and the share of each group (top vs rest) in that category. ``measures``: mean of
    numeric columns (e.g. mean order value, frequency) in the top vs the rest (missing values skipped).
    Cells describing fewer than ``min_cell_size`` customers are blanked (NaN/NA) and ``suppressed`` is True.
    """

    deciles: pd.DataFrame
    categories: pd.DataFrame
    measures: pd.DataFrame
    n_customers: int
    total_value: float
    top_share: float
    top_customers: int
    top_value_share: float
    min_cell_size: int

    def to_frame(self) -> pd.DataFrame:
        return self.deciles.copy()

    def __repr__(self) -> str:
        return (f"<ValueSegments: {self.n_customers} customers, top {self.top_share:.0%} hold "
                f"{self.top_value_share:.1%} of the value>")

    def _repr_html_(self) -> str:
        return (f"<p><b>Value segments</b>: the top {self.top_share:.0%} of customers hold "
                f"{self.top_value_share:.1%} of the value</p>"
                + "".join(t.to_html(index=False, float_format="%.4g")
                          for t in (self.deciles, self.categories, self.measures) if len(t)))


def value_segments(value, customers: pd.DataFrame | None = None, *, categories: Sequence[str] = (),
                   measures: Sequence[str] = (), top_share: float = 0.2, min_cell_size: int = 10,
                   id_column: str = "customer_id", value_column: str = "clv") -> ValueSegments:
    """Deciles of per-customer value, the share of value held by the top ``top_share`` of customers and a
    profile of that top group vs the rest (see :class:`ValueSegments`).

    ``value``: Series indexed by customer id, or a frame with ``id_column`` and ``value_column`` (e.g. the
    output of :func:`customer_value`). ``customers``: frame with ``id_column`` and the profile columns —
    ``categories`` (e.g. channel, country; missing shown as MISSING) and numeric ``measures`` (e.g.
    monetary, frequency); customers without a row there count as missing."""
    min_cell = _min_cell(min_cell_size)
    if not (isinstance(top_share, int | float) and 0 < top_share < 1):
        raise ClvError(f"top_share must be between 0 and 1, not {top_share!r}")
    v = _values(value, id_column, value_column)
    total = float(v.sum())
    if total <= 0:
        raise ClvError("the total value must be > 0 to compute shares of value")
    values, ids = v.to_numpy(), v.index.to_numpy()
    n = len(values)
    ranked = np.sort(values)[::-1]  # the deciles need only the values in order, not who holds them
    k = int(round(top_share * n))
    dec = pd.DataFrame({"decile": np.arange(n) * 10 // n + 1, "value": ranked}).groupby("decile").agg(
        customers=("value", "size"), value=("value", "sum"), mean_value=("value", "mean"),
        min_value=("value", "min"), max_value=("value", "max")).reindex(range(1, 11))
    dec["customers"] = dec["customers"].fillna(0).astype("int64")
    dec.insert(2, "share_of_value", dec["value"] / total)
    dec.insert(3, "cumulative_share", dec["share_of_value"].fillna(0).cumsum())
    dec = _suppress(dec.reset_index(), (dec.customers < min_cell).to_numpy(),
                    ["customers", "value", "share_of_value", "cumulative_share", "mean_value", "min_value",
                     "max_value"])
    top_value = float(pd.Series(ranked[:k]).sum()) / total if k >= min_cell else math.nan

    cols = list(categories) + list(measures)
    profile = None
    if cols:
        if customers is None:
            raise ClvError("categories and measures need the customers frame")
        missing = [c for c in [id_column, *cols] if c not in customers.columns]
        if missing:
            raise ClvError(f"customers needs the column(s) {', '.join(missing)}")
        profile = _profile_columns(customers, id_column, ids, cols)
    top = _top_mask(values, ids, k)
    groups = {"top": top, "rest": ~top}

    # each cell (group × category, group × measure) is blanked on its own when it describes fewer than
    # min_cell_size customers; ``suppressed`` flags rows with any blanked cell
    cat_rows = []
    for col in categories:
        codes, uniques = pd.factorize(profile[col])  # missing → -1, shown as MISSING
        names = np.array([str(u) for u in uniques] + [MISSING], dtype=object)
        label_codes, labels = pd.factorize(names)  # values with the same text are one category
        codes = label_codes[np.where(codes < 0, len(uniques), codes)]
        counts = {g: np.bincount(codes[mask], minlength=len(labels)) for g, mask in groups.items()}
        present = counts["top"] + counts["rest"] > 0
        for i in sorted(np.flatnonzero(present), key=lambda i: labels[i]):
            row = {"column": col, "category": labels[i], "suppressed": False}
            for g, mask in groups.items():
                count, size = int(counts[g][i]), int(mask.sum())
                small = count < min_cell or size < min_cell
                row[f"{g}_customers"] = pd.NA if small else count
                row[f"{g}_share"] = math.nan if small else count / size
                row["suppressed"] |= small
            cat_rows.append(row)
    cats = pd.DataFrame(cat_rows, columns=["column", "category", "top_customers", "top_share", "rest_customers",
                                           "rest_share", "suppressed"])
    meas_rows = []
    for col in measures:
        numbers = pd.to_numeric(profile[col], errors="coerce")
        row = {"measure": col, "suppressed": False}
        for g, mask in groups.items():
            got = numbers[mask].dropna()
            small = len(got) < min_cell
            row[f"{g}_customers"] = pd.NA if small else len(got)
            row[f"{g}_mean"] = math.nan if small else float(got.mean())
            row["suppressed"] |= small
        meas_rows.append(row)
    meas = pd.DataFrame(meas_rows, columns=["measure", "top_customers", "top_mean", "rest_customers", "rest_mean",
                                            "suppressed"])
    for frame in (cats, meas):
        for col in ("top_customers", "rest_customers"):
            frame[col] = frame[col].astype("Int64")
        for col in [c for c in frame.columns if c.endswith(("_share", "_mean"))]:
            frame[col] = frame[col].astype("float64")
        frame["suppressed"] = frame["suppressed"].astype(bool)
    return ValueSegments(deciles=dec, categories=cats, measures=meas, n_customers=n, total_value=total,
                         top_share=float(top_share), top_customers=k, top_value_share=top_value,
                         min_cell_size=min_cell)


@dataclass(frozen=True, repr=False)
class SimpleClv(_Result):
    """Average order value × orders per year × years as a customer, overall (segment "all") and per segment.

    ``table`` columns: segment, customers, aov, orders_per_year, years_as_customer, value (= the product),
    share_above / share_below (shares of the segment's customers whose own value, their revenue per year
    observed × years_as_customer, is above / at or below the segment's value), suppressed."""

    table: pd.DataFrame
    years_as_customer: float
    years_source: str

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def __repr__(self) -> str:
        overall = self.table.iloc[0]
        return (f"<SimpleClv: {overall.aov:.2f} per order × {overall.orders_per_year:.2f} orders a year × "
                f"{self.years_as_customer:.2f} years = {overall.value:.2f} ({self.years_source})>")


def simple_clv(customers: pd.DataFrame, years_as_customer: float | BGNBD, *, by: str | None = None,
               max_years: float = 5.0, min_cell_size: int = 10, time_unit_days: float | None = None) -> SimpleClv:
    """The back-of-envelope CLV: average order value × orders per year × expected years as a customer.

    ``customers``: one row per customer from :func:`rfm_table` (``per_customer=True``: frequency, T, revenue;
    its time unit from ``attrs`` or ``time_unit_days``), plus the ``by`` column for segments. Per segment:

    - orders = purchase days (x + 1, the first included); AOV = Σ revenue / Σ orders — $0 orders count as
      orders (they are purchases) and add nothing to revenue, so they lower the AOV: this is revenue per
      order placed, the benchmark's own definition, unlike Gamma-Gamma's spend of the paid purchases;
    - orders per year = Σ orders / Σ years observed, where a customer is observed from the first purchase
      to the end of calibration (T) and **customers observed less than a year count as one year** (their
      purchases so far stand for their first year), so recent customers do not get annualised from a few
      days — a lower bound for them;
    - years as a customer: either a number the user states (e.g. from their own retention figures), or a
      fitted BG/NBD: its restricted mean lifetime ∫₀^H S(t) dt over ``max_years`` (H, default 5 years),
      :meth:`BGNBD.expected_lifetime` — the mean itself is infinite for most fits, hence the cap. One value
      for all segments (fit a model per segment and call per segment for segment lifetimes).

    Caveats, why this is a benchmark and :func:`clv` the estimate: the observed rate already averages over
    customers who have stopped buying, so multiplying by a lifetime counts attrition twice (the value is
    low); no discounting; one rate for everybody. The shares above/below the average show how skewed value
    is: usually most customers are below it.
    """
    min_cell = _min_cell(min_cell_size)
    if not isinstance(customers, pd.DataFrame):
        raise ClvError("customers must be a pandas DataFrame from rfm_table(..., per_customer=True)")
    need = ["frequency", "T", "revenue"] + ([by] if by is not None else [])
    missing = [c for c in need if c not in customers.columns]
    if missing:
        raise ClvError(f"customers needs the column(s) {', '.join(missing)} (use rfm_table(..., per_customer=True))")
    if len(customers) == 0:
        raise ClvError("no customers")
    unit = resolve_unit([("the customers frame", unit_of(customers.attrs.get("time_unit_days"), "frame unit")),
                          ("time_unit_days", unit_of(time_unit_days, "time_unit_days"))], "the customers frame")
    if isinstance(years_as_customer, BGNBD):
        horizon = positive_number(max_years, "max_years") * DAYS_PER_YEAR
        years = years_as_customer.expected_lifetime(horizon) / DAYS_PER_YEAR
        source = f"{years_as_customer._model} restricted mean lifetime over {max_years:g} years"
    else:
        years = positive_number(years_as_customer, "years_as_customer")
        source = "given"
    orders = customers["frequency"].to_numpy(dtype="float64") + 1
    revenue = customers["revenue"].to_numpy(dtype="float64")
    fail_if_any("revenue", "finite and ≥ 0", ~np.isfinite(revenue) | (revenue < 0), revenue)
    observed = np.maximum(customers["T"].to_numpy(dtype="float64") * unit / DAYS_PER_YEAR, 1.0)
    own = revenue / observed * years  # each customer's own value: revenue per year observed × years
    frame = pd.DataFrame({"orders": orders, "revenue": revenue, "observed": observed, "own": own})
    parts = [("all", frame)]
    if by is not None:
        labels = customers[by].astype("object").where(customers[by].notna(), MISSING).astype(str).to_numpy()
        parts += [(seg, frame[labels == seg]) for seg in sorted(set(labels))]
    rows = []
    for seg, f in parts:
        aov = f.revenue.sum() / f.orders.sum()
        rate = f.orders.sum() / f.observed.sum()
        value = aov * rate * years
        above = float((f.own > value * (1 + 1e-12)).mean())
        rows.append({"segment": seg, "customers": len(f), "aov": aov, "orders_per_year": rate,
                     "years_as_customer": years, "value": value, "share_above": above, "share_below": 1 - above})
    table = pd.DataFrame(rows)
    table = _suppress(table, (table.customers < min_cell).to_numpy(),
                      ["customers", "aov", "orders_per_year", "value", "share_above", "share_below"])
    return SimpleClv(table=table, years_as_customer=float(years), years_source=source)


PERIOD_DAYS = 30


def subscription_value(subscriptions: pd.DataFrame, observed_until, discount_rate_per_year: float,
                       periods: int = 12, min_customers: int = 30) -> pd.DataFrame:
    """Contractual value per plan with the shifted-beta-geometric model (Fader & Hardie 2007, 2010).

    The cohort of each plan: subscriptions started at least ``periods`` × 30 days before ``observed_until``;
    the numbers still subscribed after 0…``periods`` periods are fitted with sBG, survival is projected to
    24 and 36 periods, and a new subscriber's discounted expected lifetime (DEL, in payments, the first
    included) times the plan's mean monthly revenue is their expected value. The per-period discount rate is
    (1 + annual rate)^(30/365.25) − 1. Plans with fewer than ``min_customers`` in the cohort are left out.
    """
    until = pd.Timestamp(observed_until)
    s = subscriptions.copy()
    for col in ("started_at", "ended_at"):
        s[col] = pd.to_datetime(s[col])
        if s[col].dt.tz is not None:
            s[col] = s[col].dt.tz_convert("UTC").dt.tz_localize(None)
    period = pd.Timedelta(days=PERIOD_DAYS)
    cohort = s[s.started_at <= until - periods * period]
    ended = cohort.ended_at.notna().to_numpy()
    lived = ((cohort.ended_at.fillna(until) - cohort.started_at) / period).to_numpy()  # in periods
    d = (1 + discount_rate_per_year) ** (PERIOD_DAYS / DAYS_PER_YEAR) - 1
    rows = []
    plans = cohort.plan.fillna(MISSING) if "plan" in cohort else pd.Series("all", index=cohort.index)
    for plan, idx in cohort.groupby(plans).groups.items():
        if len(idx) < min_customers:
            continue
        at = cohort.index.get_indexer(idx)
        # still subscribed after k periods: running, or ended after more than k periods
        alive = [int((~ended[at] | (lived[at] > k + 1e-6)).sum()) for k in range(periods + 1)]
        try:
            model = ShiftedBetaGeometric().fit(alive)
        except ClvError:  # e.g. nobody churned within the periods (an annual plan)
            continue
        mrr = float(cohort.loc[idx, "mrr"].mean()) if "mrr" in cohort else math.nan
        payments = model.expected_discounted_lifetime(d)
        rows.append({"plan": str(plan), "customers": len(idx), "alpha": model.alpha_, "beta": model.beta_,
                     f"observed_{periods}": alive[-1] / alive[0],
                     f"fitted_{periods}": float(model.survival(periods)),
                     "projected_24": float(model.survival(24)), "projected_36": float(model.survival(36)),
                     "payments": payments, "monthly_revenue": mrr, "value": payments * mrr,
                     "curve": [a / alive[0] for a in alive]})
    return pd.DataFrame(rows)
