"""Cohort retention and before/after-change analysis.

Customers are grouped by the period they converted in (week, month or quarter; optionally split by a
customer column) and followed by *age*: age k covers the k-th period of fixed length after each customer's
own conversion, ``k = floor((t − converted_at) / L)`` with L = 7, 30 or 91 days. A customer is *active*
at age k when they had activity (an order, or an event) in that period, or a subscription live during it.
A cell is shown only when its period has fully elapsed for every member of the cohort:
``last conversion in cohort + (k + 1)·L ≤ observed_until``; later cells are left empty, never shown as a
drop.

The counts per cohort × age come out of one engine query (:func:`summarize_cohorts`); everything after
that works on the small frame.

Edge cases: $0 orders are activity (active, orders) and add 0 to revenue; customers without any activity
are in their cohort's size and never active (retention at age 0
is then below 1); a single cohort gives a one-row matrix and no trend; a ``horizon`` longer than the data
shows the ages observed, with a note (:attr:`CohortSummary.notes`); a before/after comparison with fewer
than two mature customers on one side is not made, and the readout says so (:attr:`ChangeReadout.compared`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ibis
import numpy as np
import pandas as pd

from .data.currencies import money
from .data.source import MISSING, DataError
from .data.summaries import DAY_SECONDS
from .stats.inference import Difference, difference_in_means, difference_in_proportions

PERIOD_DAYS = {"week": 7, "month": 30, "quarter": 91}


class CohortError(ValueError):
    """A cohort view cannot be computed from these arguments; the message says what to change."""

_TRUNCATE = {"week": "W", "month": "M", "quarter": "Q"}


def _as_tables(customers, activity) -> tuple[ibis.Table, ibis.Table]:
    """Accept Ibis tables or pandas frames (wrapped as in-memory tables, so both take the same path)."""
    if isinstance(customers, pd.DataFrame):
        customers = ibis.memtable(customers)
    if isinstance(activity, pd.DataFrame):
        frame = activity.copy()
        if "until" in frame:
            frame["until"] = pd.to_datetime(frame["until"])
        if "revenue" not in frame:
            frame["revenue"] = 0.0
        activity = ibis.memtable(frame)
    return customers, activity


def _observed_until(customers: ibis.Table, activity: ibis.Table) -> pd.Timestamp:
    return max(_naive(customers.converted_at.max().to_pandas()), _naive(activity.at.max().to_pandas()))


def _naive(ts) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts


@dataclass(frozen=True)
class CohortSummary:
    """Counts per cohort × age (and segment): the sufficient statistics of every cohort view.

    ``cells`` columns: cohort, segment, age, customers (cohort size), active, orders, revenue, elapsed.
    Cells that have not elapsed have missing active/orders/revenue. ``notes``: sentences on what was
    shortened (a horizon longer than the data).
    """

    period: str
    observed_until: pd.Timestamp
    cells: pd.DataFrame
    segment_column: str | None = None
    notes: tuple[str, ...] = ()

    def matrix(self, value: str = "retention", segment: str | None = None, min_cell_size: int = 1) -> pd.DataFrame:
        """Cohort × age table of ``value``: retention (share active), orders_per_customer,
        revenue_per_customer, cumulative_revenue_per_customer (LTV curve), revenue_retention (revenue at
        age k / revenue at age 0), active or customers (counts).

        Cohorts with fewer than ``min_cell_size`` customers are blanked out (privacy and noise)."""
        cells = self.cells
        if segment is not None:
            cells = cells[cells.segment == segment]
        elif cells.segment.nunique() > 1:
            cells = self.combined().cells
        cells = cells.sort_values(["cohort", "age"])
        values = {
            "retention": cells.active / cells.customers,
            "orders_per_customer": cells.orders / cells.customers,
            "revenue_per_customer": cells.revenue / cells.customers,
            "cumulative_revenue_per_customer": cells.groupby("cohort").revenue.cumsum(skipna=False)
            / cells.customers,
            "revenue_retention": cells.revenue / cells.groupby("cohort").revenue.transform("first"),
            "active": cells.active,
            "customers": cells.customers,
        }
        if value not in values:
            raise CohortError(f"value must be one of {', '.join(values)}")
        out = cells.assign(v=values[value]).pivot(index="cohort", columns="age", values="v")
        out.columns.name = "age"
        small = cells[cells.age == 0].set_index("cohort").customers < min_cell_size
        out.loc[small[small].index] = np.nan
        return out

    def sizes(self) -> pd.Series:
        """Customers per cohort (all segments together)."""
        first = self.cells[self.cells.age == 0]
        return first.groupby("cohort").customers.sum()

    def combined(self) -> CohortSummary:
        """The same summary with segments added together."""
        c = self.cells
        summed = (c.groupby(["cohort", "age"], as_index=False)
                  .agg(customers=("customers", "sum"), active=("active", "sum"), orders=("orders", "sum"),
                       revenue=("revenue", "sum"), elapsed=("elapsed", "all")))
        # a cell is complete only when it is complete for every segment
        summed[["active", "orders", "revenue"]] = summed[["active", "orders", "revenue"]].where(summed.elapsed)
        summed.insert(1, "segment", "all")
        return CohortSummary(self.period, self.observed_until, summed, None, self.notes)

    def retention_at(self, ages: list[int], last_cohorts: int = 3) -> dict[int, float | None]:
        """Retention at each age, pooled over the most recent ``last_cohorts`` cohorts with that age
        elapsed (customer-weighted)."""
        c = self.combined().cells if self.cells.segment.nunique() > 1 else self.cells
        out = {}
        for age in ages:
            done = c[(c.age == age) & c.elapsed].sort_values("cohort").tail(last_cohorts)
            out[age] = float(done.active.sum() / done.customers.sum()) if len(done) else None
        return out

    def segment_curves(self, min_cell_size: int = 1, value: str = "retention") -> pd.DataFrame:
        """Segment × age ``retention`` or ``cumulative_revenue_per_customer`` (LTV), pooled over every cohort
        whose cell has elapsed (customer-weighted).

        Segments with fewer than ``min_cell_size`` customers are left out."""
        cells = self.cells.sort_values(["segment", "cohort", "age"])
        cells = cells.assign(cumulative_revenue=cells.groupby(["segment", "cohort"]).revenue.cumsum())
        numerator = {"retention": "active", "cumulative_revenue_per_customer": "cumulative_revenue"}
        if value not in numerator:
            raise CohortError(f"value must be one of {', '.join(numerator)}")
        c = cells[cells.elapsed]
        pooled = c.groupby(["segment", "age"])[[numerator[value], "customers"]].sum()
        curves = (pooled[numerator[value]] / pooled.customers).unstack("age")
        size = self.cells[self.cells.age == 0].groupby("segment").customers.sum()
        return curves[size.reindex(curves.index) >= min_cell_size]

    def to_frame(self) -> pd.DataFrame:
        return self.cells.copy()


def summarize_cohorts(
    customers, activity, period: str = "month", segment: str | None = None, as_of=None,
    horizon: int | None = None,
) -> CohortSummary:
    """Count customers, active customers, orders and revenue per cohort × age in the engine.

    ``customers``: table or frame with customer_id, converted_at (and ``segment``); ``activity``: table or
    frame with customer_id, at, revenue (see :func:`activity_table`). ``as_of`` defaults to the last
    timestamp in the data; ``horizon`` caps the age (in periods). A horizon beyond the oldest cohort's
    complete ages is shortened to them, with a note (an analyst asking for 12 months on 5 months of data
    expects the 5 months, not an error).
    """
    if period not in PERIOD_DAYS:
        raise CohortError(f"period must be one of {', '.join(PERIOD_DAYS)}, not {period!r}")
    if horizon is not None and not (isinstance(horizon, int | np.integer) and horizon >= 0):
        raise CohortError(f"horizon must be a whole number of periods ≥ 0, not {horizon!r}")
    customers, activity = _as_tables(customers, activity)
    if segment and segment not in customers.columns:
        raise DataError(f"customers has no column {segment!r}; its columns are {', '.join(customers.columns)}")
    length = PERIOD_DAYS[period] * DAY_SECONDS
    until = _naive(as_of) if as_of is not None else _observed_until(customers, activity)

    seg = customers[segment].cast("string").fill_null(MISSING) if segment else ibis.literal("all")
    c = customers.select(customer_id=customers.customer_id, converted_at=customers.converted_at,
                         cohort=customers.converted_at.truncate(_TRUNCATE[period]), segment=seg)
    c = c.filter(c.converted_at <= until)
    sizes = c.group_by(["cohort", "segment"]).aggregate(customers=c.count(), last_conversion=c.converted_at.max())
    a = activity.join(c, "customer_id")
    a = a.filter(a.at <= until)
    if "until" in activity.columns:
        a = _live_periods(a, length, until, horizon, customers)
    else:
        age = ((a.at.epoch_seconds() - a.converted_at.epoch_seconds()) // length).cast("int64")
        a = a.mutate(age=age).filter(age >= 0)
    if horizon is not None:
        a = a.filter(a.age <= horizon)
    counts = a.group_by(["cohort", "segment", "age"]).aggregate(
        active=a.customer_id.nunique(), orders=a.count(), revenue=a.revenue.sum())

    sizes_df = sizes.to_pandas()
    counts_df = counts.to_pandas()
    return _complete_cells(period, until, sizes_df, counts_df, horizon, segment)


def _live_periods(a: ibis.Table, length: int, until: pd.Timestamp, horizon: int | None,
                  customers: ibis.Table) -> ibis.Table:
    """One row per (subscription, age) in which the subscription was live at some moment: it started
    before the period ended and had not ended when the period began (empty end = still live)."""
    first = _naive(customers.converted_at.min().to_pandas())
    max_age = horizon if horizon is not None else int((until - first).total_seconds() // length)
    ages = ibis.memtable(pd.DataFrame({"age": np.arange(max_age + 1, dtype="int64")}))
    a = a.cross_join(ages)
    period_start = a.converted_at.epoch_seconds() + a.age * length
    live = (a.at.epoch_seconds() < period_start + length) & (
        a.until.isnull() | (a.until.epoch_seconds() > period_start))
    return a.filter(live)


def _complete_cells(period, until, sizes, counts, horizon, segment) -> CohortSummary:
    """Every (cohort, segment, age) up to the last elapsed age; zeros where nobody was active."""
    length = pd.Timedelta(days=PERIOD_DAYS[period])
    sizes = sizes.copy()
    sizes["last_conversion"] = pd.to_datetime(sizes["last_conversion"])
    # the number of whole periods elapsed for the cohort's last member: ages 0..n-1 are complete
    elapsed_ages = ((until - sizes["last_conversion"]) // length).astype("int64")
    max_age = int(max(elapsed_ages.max() - 1, counts.age.max() if len(counts) else 0, 0))
    notes = []
    complete = int(elapsed_ages.max()) if len(elapsed_ages) else 0  # ages 0 … complete − 1 of the oldest cohort
    if horizon is not None and horizon > complete - 1:
        unit = f"{period}s" if complete != 1 else period
        shown = (f"ages 0–{complete - 1} are shown" if complete > 1 else "only age 0 is shown" if complete == 1
                 else f"no cohort has been observed for a full {period} yet")
        notes.append(f"the horizon ({horizon} {period}s) is longer than the data: the oldest cohort has been "
                     f"followed for {complete} full {unit} to {until:%Y-%m-%d}, so {shown}")
    if horizon is not None:
        max_age = min(max_age, horizon)
    grid = sizes.merge(pd.DataFrame({"age": np.arange(max_age + 1)}), how="cross")
    grid["elapsed"] = grid.age < np.repeat(elapsed_ages.to_numpy(), max_age + 1)
    cells = grid.merge(counts, on=["cohort", "segment", "age"], how="left")
    for col in ["active", "orders", "revenue"]:
        cells[col] = cells[col].fillna(0).where(cells.elapsed)
    cells = cells.drop(columns="last_conversion").sort_values(["cohort", "segment", "age"]).reset_index(drop=True)
    cells["cohort"] = pd.to_datetime(cells["cohort"])
    cells["customers"] = cells["customers"].astype("int64")
    return CohortSummary(period, until, cells, segment, tuple(notes))


def summarize_change_window(customers, activity, change_date, days: int = 90, window_days: int = 120,
                            as_of=None) -> pd.DataFrame:
    """Weekly conversion cohorts around ``change_date``, aggregated in the engine: customers converting
    within ``window_days`` either side whose first ``days`` days have elapsed.

    Columns: week (conversion week relative to the change; week ≥ 0 is after it), customers, retained (a
    repeat activity within ``days`` days after conversion; for subscriptions, a subscription live on day
    ``days``), revenue and revenue_sumsq (Σ and Σ² of each customer's revenue in those days, the first
    order included) — the sufficient statistics of both comparisons and of the cohort regression.
    """
    customers, activity = _as_tables(customers, activity)
    until = _naive(as_of) if as_of is not None else _observed_until(customers, activity)
    change = _naive(change_date)
    lo, hi = change - pd.Timedelta(days=window_days), change + pd.Timedelta(days=window_days)
    horizon = pd.Timedelta(days=days)
    c = customers.select("customer_id", "converted_at")
    c = c.filter((c.converted_at >= lo) & (c.converted_at < hi) & (c.converted_at + horizon <= until))
    a = activity.join(c, "customer_id")
    if "until" in activity.columns:  # subscriptions: retained = a subscription is live on day N
        day_n = a.converted_at + horizon
        a = a.filter((a.at <= day_n) & (a.until.isnull() | (a.until > day_n)))
        per = a.group_by("customer_id").aggregate(repeats=a.count(), revenue=a.revenue.sum())
    else:
        a = a.filter((a.at >= a.converted_at) & (a.at <= a.converted_at + horizon))
        per = a.group_by("customer_id").aggregate(
            repeats=(a.at > a.converted_at).cast("int64").sum(), revenue=a.revenue.sum())
    rows = c.left_join(per, "customer_id")
    week = ((rows.converted_at.epoch_seconds() - ibis.literal(change).epoch_seconds()) // (7 * DAY_SECONDS))
    rows = rows.select(week=week.cast("int64"), retained=(rows.repeats.fill_null(0) > 0).cast("int64"),
                       revenue=rows.revenue.fill_null(0.0))
    weekly = rows.group_by("week").aggregate(customers=rows.count(), retained=rows.retained.sum(),
                                             revenue=rows.revenue.sum(),
                                             revenue_sumsq=(rows.revenue * rows.revenue).sum())
    return weekly.order_by("week").to_pandas()


def _before_after_totals(weekly: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Sums of the weekly statistics before and after the change."""
    cols = ["customers", "retained", "revenue", "revenue_sumsq"]
    before, after = weekly[weekly.week < 0][cols].sum(), weekly[weekly.week >= 0][cols].sum()
    return before, after


@dataclass(frozen=True)
class InterruptedTimeSeries:
    """Segmented regression on cohort-level retention: y = b0 + b1·t + b2·after + b3·t·after.

    t is the cohort's conversion week relative to the change; weights are cohort sizes; HC1 standard
    errors. ``jump`` (b2) is the step at the change net of the existing trend (b1).
    """

    jump: float
    ci_low: float
    ci_high: float
    p_value: float
    trend_before: float
    trend_change: float
    cohorts_before: int
    cohorts_after: int
    fitted: pd.DataFrame = field(repr=False)


def interrupted_time_series(weekly: pd.DataFrame, change_date, alpha: float = 0.05) -> InterruptedTimeSeries:
    """Fit the segmented regression on the weekly cohorts of :func:`summarize_change_window`."""
    from statsmodels.regression.linear_model import WLS  # not statsmodels.api: it imports all of statsmodels
    from statsmodels.tools import add_constant

    change = _naive(change_date)
    cohorts = weekly[["week", "customers"]].assign(retention=weekly.retained / weekly.customers)
    cohorts["after"] = (cohorts.week >= 0).astype(float)
    cohorts["week_after"] = cohorts.week * cohorts.after
    n_before, n_after = int((cohorts.after == 0).sum()), int((cohorts.after == 1).sum())
    if min(n_before, n_after) < 3:
        raise CohortError(f"the cohort regression needs at least 3 weekly cohorts on each side of the change "
                         f"(found {n_before} before, {n_after} after)")
    X = add_constant(cohorts[["week", "after", "week_after"]].astype(float))
    fit = WLS(cohorts.retention, X, weights=cohorts.customers.to_numpy(float)).fit(cov_type="HC1")
    low, high = fit.conf_int(alpha).loc["after"]
    cohorts["fitted"] = fit.fittedvalues
    cohorts["cohort"] = change + pd.to_timedelta(cohorts.week * 7, unit="D")
    return InterruptedTimeSeries(float(fit.params["after"]), float(low), float(high), float(fit.pvalues["after"]),
                                 float(fit.params["week"]), float(fit.params["week_after"]), n_before, n_after,
                                 cohorts)


@dataclass(frozen=True)
class ChangeReadout:
    """Everything the report says about a change: the two comparisons, the regression, the caveats.

    ``retention`` is None when the comparison could not be made (``compared`` False; the first warning
    says why)."""

    change_name: str
    change_date: pd.Timestamp
    days: int
    retention: Difference | None
    revenue: Difference | None
    its: InterruptedTimeSeries | None
    warnings: tuple[str, ...]
    customers_before: int = 0
    customers_after: int = 0

    @property
    def compared(self) -> bool:
        return self.retention is not None

    def to_frame(self) -> pd.DataFrame:
        rows = [d.to_frame() for d in (self.retention, self.revenue) if d is not None]
        if not rows:
            return pd.DataFrame(columns=["metric", "before", "after", "difference", "ci_low", "ci_high", "p_value",
                                         "test"])
        if self.its is not None:
            rows.append(pd.DataFrame([{"metric": "retention jump (cohort regression)", "difference": self.its.jump,
                                       "ci_low": self.its.ci_low, "ci_high": self.its.ci_high,
                                       "p_value": self.its.p_value, "test": "segmented WLS, HC1"}]))
        return pd.concat(rows, ignore_index=True)

    def in_units(self) -> pd.DataFrame:
        """:meth:`to_frame` with each row in its unit: retention in percent and its changes in percentage
        points, revenue per customer in the report's currency."""
        frame = self.to_frame()
        money_row = frame.metric.str.startswith("revenue")
        for column in ("before", "after", "difference", "ci_low", "ci_high"):
            signed = column not in ("before", "after")
            frame[column] = [("" if pd.isna(v) else money(v, "+,.2f" if signed else ",.2f") if is_money
                              else _points(v) if signed else f"{v:.1%}")
                             for v, is_money in zip(frame[column], money_row)]
        return frame


def _points(share_difference: float) -> str:
    """A difference of two shares in percentage points: 0.061 → "+6.1 pts" (not "+6.1%", a relative change)."""
    return f"{share_difference * 100:+.1f} pts"


def compare_before_after(customers, activity, change_date, change_name: str = "the change", days: int = 90,
                         window_days: int = 120, alpha: float = 0.05, as_of=None,
                         min_cohorts_after: int = 6) -> ChangeReadout:
    """Compare customers converting before and after ``change_date`` on retention at ``days`` days and
    revenue per customer in their first ``days`` days; fit the cohort regression; check comparability
    (enough mature cohorts after the change; the same comparison a year earlier as a seasonality placebo).

    With fewer than two customers on a side (e.g. every customer converted in one month, a change date
    outside the data, or ``days`` longer than the customers after the change have been observed) nothing is
    compared: the readout has ``compared`` False and says why, with the dates to wait for or change.
    """
    customers, activity = _as_tables(customers, activity)
    until = _naive(as_of) if as_of is not None else _observed_until(customers, activity)
    change = _naive(change_date)
    weekly = summarize_change_window(customers, activity, change, days, window_days, as_of=until)
    before, after = _before_after_totals(weekly)
    n_before, n_after = int(before.customers), int(after.customers)
    if n_before < 2 or n_after < 2:
        empty = " and ".join(side for side, n in (("before", n_before), ("after", n_after)) if n < 2)
        why = (f"Cannot compare before and after {change:%Y-%m-%d}: too few customers {empty} the change "
               f"({n_before:,} converted in the {window_days} days before and {n_after:,} in the {window_days} days "
               f"after with their first {days} days elapsed; data until {until:%Y-%m-%d}).")
        if change > until:
            why += " The change date is after the end of the data: check change_date."
        elif n_after < 2 and change + pd.Timedelta(days=days) > until:
            why += (f" Customers converting after the change reach {days} days from "
                    f"{change + pd.Timedelta(days=days):%Y-%m-%d}: read it again then, or use a shorter "
                    "retention_days.")
        return ChangeReadout(change_name, change, days, None, None, None, (why,), n_before, n_after)
    retention = difference_in_proportions(int(before.retained), int(before.customers), int(after.retained),
                                          int(after.customers), alpha, metric=f"retention at day {days}")
    revenue = None  # activity without revenue (events): nothing to compare
    if before.revenue or after.revenue:
        revenue = difference_in_means(int(before.customers), before.revenue, before.revenue_sumsq,
                                      int(after.customers), after.revenue, after.revenue_sumsq, alpha,
                                      metric=f"revenue per customer, first {days} days")
    warnings = []
    try:
        its = interrupted_time_series(weekly, change, alpha)
        if its.cohorts_after < min_cohorts_after:
            warnings.append(f"Only {its.cohorts_after} weekly cohorts after the change have had {days} days; "
                            "the jump estimate is uncertain — read it again in a few weeks.")
    except CohortError as exc:
        its = None
        warnings.append(f"The cohort regression was not fitted: {exc}.")
    placebo_date = change - pd.Timedelta(days=364)
    placebo = summarize_change_window(customers, activity, placebo_date, days, window_days, as_of=until)
    p_before, p_after = _before_after_totals(placebo)
    first = _naive(customers.converted_at.min().to_pandas())
    covered = placebo_date - pd.Timedelta(days=window_days) >= first
    if covered and p_before.customers > 1 and p_after.customers > 1:
        check = difference_in_proportions(int(p_before.retained), int(p_before.customers), int(p_after.retained),
                                          int(p_after.customers), alpha)
        if check.p_value < alpha:
            warnings.append(f"The same comparison a year earlier ({placebo_date:%Y-%m-%d}) also shows a difference "
                            f"of {_points(check.difference)}: seasonality may explain part of the effect.")
    else:
        warnings.append("The data does not reach a year before the change, so seasonality could not be checked.")
    return ChangeReadout(change_name, change, days, retention, revenue, its, tuple(warnings), n_before, n_after)


def retention_trend(summary: CohortSummary, age: int = 1, cohorts: int = 3) -> tuple[float, float] | None:
    """Retention at ``age`` of the latest ``cohorts`` mature cohorts and of the ``cohorts`` before them."""
    c = summary.combined().cells if summary.cells.segment.nunique() > 1 else summary.cells
    done = c[(c.age == age) & c.elapsed].sort_values("cohort")
    if len(done) < 2 * cohorts:
        return None
    recent, earlier = done.tail(cohorts), done.iloc[-2 * cohorts:-cohorts]
    return (float(recent.active.sum() / recent.customers.sum()),
            float(earlier.active.sum() / earlier.customers.sum()))


def summary_points(summary: CohortSummary, readout: ChangeReadout | None, activity: str = "order") -> list[str]:
    """Plain-language bullet points for the top of the cohort report."""
    unit = summary.period
    doing = {"order": "ordered", "event": "were active", "subscription": "were still subscribed"}.get(
        activity, "were active")
    points = []
    trend = retention_trend(summary, 1)
    if trend:
        recent, earlier = trend
        word = "up" if recent > earlier + 0.005 else "down" if recent < earlier - 0.005 else "flat"
        points.append(f"In their second {unit}, **{recent:.0%}** of recent customers {doing} again "
                      f"({word} from {earlier:.0%} for the three cohorts before).")
    elif summary.retention_at([1])[1] is not None:
        mature = int(summary.combined().cells.query("age == 1 and elapsed").cohort.nunique())
        points.append(f"In their second {unit}, **{summary.retention_at([1])[1]:.0%}** of customers {doing} again "
                      f"(only {mature} {'cohort has' if mature == 1 else 'cohorts have'} reached it: too few to "
                      "show a trend).")
    later = summary.retention_at([3, 6, 12])
    shown = [f"{v:.0%} at {unit} {k}" for k, v in later.items() if v is not None]
    if shown:
        points.append("Retention then settles: " + ", ".join(shown) + ".")
    if readout is not None and not readout.compared:
        points.append(f"**{readout.change_name}** ({readout.change_date:%d %b %Y}): {readout.warnings[0]}")
        points += [f"Caveat: {w}" for w in readout.warnings[1:]]
    elif readout is not None:
        r = readout.retention
        sure = ("clearly" if r.p_value < 0.01 else "probably" if r.p_value < 0.05 else "not detectably")
        points.append(
            f"**{readout.change_name}** ({readout.change_date:%d %b %Y}) {sure} changed retention at day "
            f"{readout.days}: {r.before:.1%} → {r.after:.1%}, a difference of **{_points(r.difference)}** "
            f"({r.after / r.before - 1:+.1%} relative; 95% interval {_points(r.ci_low)} to {_points(r.ci_high)}, "
            f"p = {r.p_value:.2g}).")
        if readout.its is not None:
            its = readout.its
            points.append(f"Net of the existing trend, the cohort regression puts the jump at {_points(its.jump)} "
                          f"({_points(its.ci_low)} to {_points(its.ci_high)}).")
        points += [f"Caveat: {w}" for w in readout.warnings]
    return points + [f"Note: {n}" for n in summary.notes]


def headlines(summary: CohortSummary, readout: ChangeReadout | None, horizon: int) -> tuple[list[tuple], dict]:
    """Headline cards ``(results.json key, value, label, format)`` and further results.json values:
    ``retention.age_{1,3,6,12}`` (null when no cohort has reached the age), ``notes`` (what was shortened),
    ``change.compared`` (False when the change could not be compared, then no other ``change.*``) and
    ``change.*`` (effect, interval, p-value, jump net of trend)."""
    ages = [a for a in (1, 3, 6, 12) if a <= horizon]
    cards = [(f"retention.age_{age}", value, f"Retention, {summary.period} {age}", ".1%")
             for age, value in summary.retention_at(ages).items()]
    hidden = {"notes": list(summary.notes)}
    if readout is not None:
        hidden["change.compared"] = readout.compared
        hidden["change.customers_before"], hidden["change.customers_after"] = (readout.customers_before,
                                                                               readout.customers_after)
    if readout is not None and readout.compared:
        r, days = readout.retention, readout.days
        cards += [("change.retention_effect", r.difference, f"Change in day-{days} retention", "pts"),
                  ("change.p_value", r.p_value, "p-value", "p")]
        hidden |= {"change.ci_low": r.ci_low, "change.ci_high": r.ci_high}
        if readout.revenue is not None:
            cards.append(("change.revenue_effect", readout.revenue.difference,
                          f"Revenue per customer, first {days} days", "$+,.2f"))
        if readout.its is not None:
            cards.append(("change.jump", readout.its.jump, "Jump net of trend", "pts"))
            hidden |= {f"change.jump_{key}": getattr(readout.its, key) for key in ("ci_low", "ci_high", "p_value")}
    return cards, hidden
