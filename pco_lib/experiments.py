"""Experiment (A/B) readouts, the domain of the ``ab_test`` report.

The engine turns assignments × orders into per-arm (and per-segment, per-week) sufficient statistics of
every metric (:func:`summarize_experiment`); the tests on them live in :mod:`pco_lib.stats.inference`. This
module chooses the test per metric, adjusts p-values, checks guardrails, reaches the verdict, breaks the
primary metric down by segment and week, compares churn by arm (log-rank and Cox on aggregated lifetimes)
and builds the summary and headline keys.

Metrics: ``repeat`` (an order in the window), ``retained`` (an order or event in its last week), ``revenue``
and ``orders`` per customer, ``revenue_per_order`` (a ratio metric). CUPED uses the revenue of the
converting order as the pre-assignment covariate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import ibis
import numpy as np
import pandas as pd

from .data.currencies import money, money_label
from .data.source import MISSING, DataError, DataSource, latest_timestamp
from .data.summaries import contractual_lifetimes
from .stats.cox import fit_cox
from .stats.inference import (
    ArmStats,
    Effect,
    InferenceError,
    Moments,
    SampleRatio,
    adjust_p_values,
    bayesian_lift,
    cuped,
    non_inferiority_p_value,
    ratio_effect,
    sample_ratio_check,
    sequential_interval,
    welch,
)
from .stats.survival import logrank_tests

DEFAULT_MIN_EFFECT = 0.05  # smallest relative lift of the primary metric worth shipping
ASSIGNMENT_WEEK = "assignment_week"  # segment value of summarize_experiment: the week customers were assigned
METRICS = {
    "repeat": "proportion",  # at least one order after assignment within the window
    "retained": "proportion",  # an order or event in the last 7 days of the window ("retained at day N")
    "revenue": "mean",  # revenue per customer after assignment within the window
    "orders": "mean",  # orders per customer after assignment within the window
    "revenue_per_order": "ratio",  # Σ revenue / Σ orders in the window
}
MONEY_METRICS = ("revenue", "revenue_per_order")  # written in the report's currency


class ExperimentError(ValueError):
    """An experiment cannot be read (unknown id or variant, empty arm, zero variance, window too long)."""


def summarize_experiment(source: DataSource, experiment_id: str, window_days: int = 30,
                         segment: str | None = None, metrics: list[str] | tuple[str, ...] | None = None
                         ) -> pd.DataFrame:
    """Per-arm (and per-segment, with ``segment`` a customer column or ``"assignment_week"``) sufficient
    statistics of every metric, for customers whose window has fully elapsed.

    A window longer than the data is not an error: nobody is counted yet (n = 0) and :func:`analyze` says
    "keep running". Columns: (segment,) variant, assigned (all assigned customers), first_assigned (the arm's
    first assignment), n (customers counted), and for each metric m
    ``m_sum``, ``m_sumsq``; for revenue_per_order also ``orders_sum``, ``orders_sumsq`` and
    ``revenue_orders_sum`` (Σ revenue·orders per customer, the cross-product for the covariance); for
    CUPED, ``pre_sum``/``pre_sumsq`` of the pre-assignment covariate (revenue of orders at or before
    assignment, i.e. the converting order) and ``m_pre_sum`` (Σ m·pre).

    ``metrics``: the metrics that will be read (None: all). The order metrics come from one join of the
    assignments with the orders; ``retained``, which needs the events too, is computed only when asked for.

    A report that needs several breakdowns reads the engine once with :func:`summarize_experiment_by` and
    takes each with :func:`roll_up` (the statistics are sums, so they add up exactly).
    """
    return roll_up(summarize_experiment_by(source, experiment_id, window_days, [segment] if segment else [],
                                           metrics), segment)


RETAINED_LOOKBACK_DAYS = 7


def _check_metrics(metrics) -> None:
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ExperimentError(f"unknown metric(s) {', '.join(unknown)}; available: {', '.join(METRICS)}")


def summarize_experiment_by(source: DataSource, experiment_id: str, window_days: int = 30,
                            columns: list[str] | tuple[str, ...] = (),
                            metrics: list[str] | tuple[str, ...] | None = None) -> pd.DataFrame:
    """:func:`summarize_experiment`'s statistics in one engine query for every combination of ``columns``
    (customer columns and/or ``"assignment_week"``) × arm: one column per breakdown, named as given.

    Each customer's window is read from one join of the mature assignments with their activity: the orders,
    and, when ``retained`` is asked for, the orders and events together (``retained``: an order or event in
    days N−6 … N after assignment, N = window_days; the whole window when it is shorter)."""
    if not (isinstance(window_days, int | np.integer) and window_days >= 1):
        raise ExperimentError(f"window_days must be a whole number of days ≥ 1, not {window_days!r}")
    _check_metrics(metrics or ())
    retained = metrics is None or "retained" in metrics
    a = source.table("assignments")
    a = a.filter(a.experiment_id == experiment_id)
    o = source.table("orders")
    # the end of the data, in the same query: a window longer than the data is not an error; no customer
    # is counted yet (n = 0), and the readout says "keep running" with the date the first window ends
    until = o.ordered_at.max().as_scalar()
    window = pd.Timedelta(days=window_days)
    columns = list(dict.fromkeys(columns))
    names = {c: f"_by{i}" for i, c in enumerate(columns)}  # engine names: a column may be called "variant"
    if ASSIGNMENT_WEEK in names:
        a = a.mutate(**{names[ASSIGNMENT_WEEK]: a.assigned_at.truncate("W").cast("string")})
    wanted = [c for c in columns if c != ASSIGNMENT_WEEK]
    if wanted:
        customers = source.table("customers")
        for c in wanted:
            if c not in customers.columns:
                raise DataError(f"customers has no column {c!r} to break the experiment down by; its columns "
                                f"are {', '.join(customers.columns)}")
        seg = customers.select(_cid=customers.customer_id,
                               **{names[c]: customers[c].cast("string").fill_null(MISSING) for c in wanted})
        j = a.left_join(seg, a.customer_id == seg._cid)  # an assignment keeps counting without a customer row
        a = j.select(*[j[c] for c in a.columns], **{names[c]: j[names[c]].fill_null(MISSING) for c in wanted})
    keys = [*names.values(), "variant"]
    sizes = a.group_by(keys).aggregate(assigned=a.count(), first_assigned=a.assigned_at.min())
    mature = a.filter(a.assigned_at + window <= until)
    activity = o.select(customer_id=o.customer_id, at=o.ordered_at, revenue=o.revenue.cast("float64"),
                        is_order=ibis.literal(True))
    if retained and source.has("events"):
        e = source.table("events")
        activity = activity.union(e.select(customer_id=e.customer_id, at=e.occurred_at,
                                           revenue=ibis.literal(None, "float64"), is_order=ibis.literal(False)),
                                  distinct=False)
    j = mature.left_join(activity, mature.customer_id == activity.customer_id)
    in_window = (j.at > j.assigned_at) & (j.at <= j.assigned_at + window)
    order_in_window = j.is_order & in_window
    aggregates = dict(
        orders=order_in_window.cast("int64").sum(),
        revenue=order_in_window.ifelse(j.revenue, 0.0).sum(),
        pre=(j.is_order & (j.at <= j.assigned_at)).ifelse(j.revenue, 0.0).sum(),  # CUPED covariate
    )
    if retained:
        start = pd.Timedelta(days=window_days - min(RETAINED_LOOKBACK_DAYS, window_days))
        aggregates["retained"] = (in_window & (j.at > j.assigned_at + start)).cast("int64").max()
    per = j.group_by([*keys, j.customer_id]).aggregate(**aggregates)
    filled = dict(orders=per.orders.fill_null(0).cast("float64"), revenue=per.revenue.fill_null(0.0),
                  pre=per.pre.fill_null(0.0))
    if retained:
        filled["retained"] = per.retained.fill_null(0).cast("float64")
    per = per.mutate(**filled)
    per = per.mutate(repeat=(per.orders > 0).cast("float64"))
    agg = {"n": per.count()}
    for m in ("repeat", *(["retained"] if retained else []), "revenue", "orders"):
        agg[f"{m}_sum"] = per[m].sum()
        agg[f"{m}_sumsq"] = (per[m] * per[m]).sum()
        agg[f"{m}_pre_sum"] = (per[m] * per.pre).sum()
    agg["pre_sum"], agg["pre_sumsq"] = per.pre.sum(), (per.pre * per.pre).sum()
    agg["revenue_orders_sum"] = (per.revenue * per.orders).sum()
    arms = per.group_by(keys).aggregate(**agg)
    frame = sizes.left_join(arms, keys).select(*[sizes[k] for k in keys], sizes.assigned, *[arms[k] for k in agg],
                                               sizes.first_assigned)
    frame = frame.to_pandas()
    if frame.empty:
        ids = source.table("assignments").select("experiment_id").distinct().to_pandas().experiment_id.tolist()
        raise ExperimentError(f"no assignments for experiment {experiment_id!r}; known experiments: "
                              f"{', '.join(sorted(map(str, ids)))}")
    for col in ["assigned", *agg]:  # arms nobody in is counted yet come back null (all None: object dtype)
        frame[col] = pd.to_numeric(frame[col]).fillna(0)
    frame = frame.rename(columns={v: k for k, v in names.items()})
    return frame.sort_values([*columns, "variant"]).reset_index(drop=True)


def roll_up(summary: pd.DataFrame, segment: str | None = None) -> pd.DataFrame:
    """:func:`summarize_experiment`'s frame (per arm, or per ``segment`` × arm as column ``segment``) from
    the finer frame of :func:`summarize_experiment_by`: counts and sums added, first_assigned the earliest."""
    keys = ([segment] if segment else []) + ["variant"]
    sums = [c for c in summary.columns if c in ("assigned", "n") or c.endswith(("_sum", "_sumsq"))]
    out = (summary.groupby(keys, sort=True, dropna=False)
           .agg(**{c: (c, "sum") for c in sums}, first_assigned=("first_assigned", "min"))
           .reset_index())
    if segment:
        out = out.rename(columns={segment: "segment"})
    order = (["segment"] if segment else []) + ["variant", "assigned", *[c for c in sums if c != "assigned"],
                                                "first_assigned"]
    return out[order]


def planned_weights(source: DataSource, experiment_id: str) -> pd.DataFrame:
    """variant, weight, is_control from the experiments table."""
    if not source.has("experiments"):
        raise DataError("the experiments table (planned split) is needed to read an experiment")
    e = source.table("experiments")
    frame = e.filter(e.experiment_id == experiment_id).select("variant", "weight", "is_control").to_pandas()
    if frame.empty:
        raise ExperimentError(f"experiment {experiment_id!r} is not in the experiments table")
    return frame.sort_values("variant").reset_index(drop=True)


@dataclass(frozen=True)
class Readout:
    """The readout of one experiment: effects per metric × arm, the SRM check and the verdict.

    ``immature``: arms with fewer than ``MIN_MATURE`` customers whose window has elapsed; their effects are
    NaN and the verdict is "keep running" (:func:`analyze`)."""

    experiment_id: str
    window_days: int
    alpha: float
    correction: str
    control: str
    arms: pd.DataFrame  # variant, assigned, n (counted)
    effects: pd.DataFrame  # one row per metric × treatment arm, with p_value_adjusted
    srm: SampleRatio
    verdict: str
    reasons: tuple[str, ...]
    metrics: tuple[str, ...] = ()  # the metrics read (guardrails included), the primary first
    immature: tuple[str, ...] = ()
    first_assigned: str | None = None  # the experiment's own dates (ISO), from read_experiment
    last_assigned: str | None = None
    assignment_days: int | None = None  # days from the first to the last assignment, both counted

    @property
    def left_out(self) -> int:
        """Assigned customers whose window had not elapsed (not counted)."""
        return int(self.arms.assigned.sum() - self.arms.n.sum())


def metric_effect(control, treatment, metric: str, alpha: float = 0.05, variant: str = "treatment",
                  use_cuped: bool = False) -> tuple[Effect, float]:
    """The effect of ``treatment`` vs ``control`` (rows of :func:`summarize_experiment`) on ``metric``, by
    the test that fits it; returns the effect and CUPED's variance reduction (NaN when not used)."""
    if METRICS[metric] == "ratio":
        return ratio_effect(_ratio_arm(control), _ratio_arm(treatment), alpha, metric, variant), np.nan
    if use_cuped and "pre_sum" in control:
        adj_c, adj_t, reduction = cuped(_cuped_arm(control, metric), _cuped_arm(treatment, metric))
        return welch(adj_c, adj_t, alpha, metric, variant), reduction
    return welch(_arm(control, metric), _arm(treatment, metric), alpha, metric, variant), np.nan


def _cuped_arm(row, metric) -> dict:
    return {"n": int(row["n"]), "y_sum": row[f"{metric}_sum"], "y_sumsq": row[f"{metric}_sumsq"],
            "x_sum": row["pre_sum"], "x_sumsq": row["pre_sumsq"], "xy_sum": row[f"{metric}_pre_sum"]}


def _arm(row, metric) -> ArmStats | Moments:
    """One arm of a mean or proportion metric; a proportion's variance is p(1 − p), as in gbstats."""
    n, total = int(row["n"]), float(row[f"{metric}_sum"])
    if METRICS[metric] == "proportion":
        p = total / n if n else float("nan")
        return Moments(n, p, p * (1 - p))
    return ArmStats(n, total, float(row[f"{metric}_sumsq"]))


def _ratio_arm(row) -> dict:
    return {"n": int(row["n"]), "x_sum": row["revenue_sum"], "x_sumsq": row["revenue_sumsq"],
            "y_sum": row["orders_sum"], "y_sumsq": row["orders_sumsq"], "xy_sum": row["revenue_orders_sum"]}


def analyze(arms: pd.DataFrame, weights: pd.DataFrame, metrics: list[str], experiment_id: str = "",
            window_days: int = 30, alpha: float = 0.05, correction: str = "holm",
            primary: str | None = None, guardrails: dict[str, float] | None = None,
            prior_sd: float = 0.0, sequential: bool = False, use_cuped: bool = False,
            min_effect: float = DEFAULT_MIN_EFFECT, assignment_days: float = float("nan")) -> Readout:
    """Effects of every treatment arm against the control on each metric, adjusted p-values (absolute and
    relative), Bayesian chance to beat control, guardrail (non-inferiority) tests, SRM check and verdict
    (see :func:`_verdict` for the decision table).

    An arm with fewer than ``MIN_MATURE`` customers whose window has elapsed (all its assignments younger
    than ``window_days``, a window longer than the data, or nobody assigned to it) cannot be tested yet: the
    effects are NaN, the verdict is "keep running" and the reasons name the arm, its counts and the day its
    first window ends. This comes before the SRM rule (assignments still arriving in one arm can look like
    a mismatch), but an SRM mismatch is still reported among the reasons.

    ``arms`` is :func:`summarize_experiment`'s frame; ``weights`` :func:`planned_weights`'; ``guardrails``
    maps a metric to its relative non-inferiority margin (0.05 = may not get more than 5% worse).
    ``use_cuped``: means and proportions are adjusted with the pre-assignment covariate (CUPED); the
    variance reduction achieved is in the ``variance_reduction`` column.
    ``sequential``: the experiment is read while running, so significance comes from the always-valid
    intervals (``seq_ci_low``/``seq_ci_high``) instead of the fixed-sample p-values.
    ``prior_sd``: the normal prior of the Bayesian view on the relative lift, 0 for GrowthBook's flat prior.
    ``min_effect``: the smallest relative lift of the primary metric worth shipping; ``assignment_days``: how
    long assignment has run (for the days a "keep running" needs).
    """
    guardrails = guardrails or {}
    metrics = list(dict.fromkeys(list(metrics) + list(guardrails)))
    _check_metrics(metrics)
    absent = [m for m in metrics if not ({"revenue_sum", "orders_sum"} if m == "revenue_per_order"
                                         else {f"{m}_sum"}) <= set(arms.columns)]
    if absent:
        raise ExperimentError(f"the experiment summary has no statistics of {', '.join(absent)}: summarize it "
                              f"with metrics that include {'them' if len(absent) > 1 else 'it'}")
    controls = weights[weights.is_control].variant.tolist()
    if len(controls) != 1:
        raise ExperimentError(f"experiment {experiment_id!r} needs exactly one control variant, found {controls}")
    control = controls[0]
    planned = set(weights.variant)
    extra = set(arms.variant) - planned
    if extra:
        raise ExperimentError(f"variant(s) {', '.join(sorted(extra))} of {experiment_id!r} are not in the plan")
    by_variant = arms.set_index("variant").reindex(sorted(planned))  # an arm nobody was assigned to: zeros
    counts = [c for c in by_variant.columns if c != "first_assigned"]
    by_variant[counts] = by_variant[counts].fillna(0)
    arms = by_variant.rename_axis("variant").reset_index()
    immature = tuple(v for v in sorted(planned) if by_variant.loc[v, "n"] < MIN_MATURE)
    srm = sample_ratio_check(dict(zip(arms.variant, arms.assigned)), dict(zip(weights.variant, weights.weight)))
    if immature:
        effects = pd.DataFrame([{"metric": m, "variant": v} for v in sorted(planned - {control}) for m in metrics],
                               columns=EFFECT_COLUMNS).astype({c: "float64" for c in EFFECT_COLUMNS[2:]})
        reasons = _immature_reasons(by_variant, immature, window_days, srm)
        return Readout(experiment_id, window_days, alpha, correction, control,
                       arms[["variant", "assigned", "n"]].astype({"assigned": "int64", "n": "int64"}), effects, srm,
                       "keep running", reasons, tuple(metrics), immature)
    rows = []
    for variant in sorted(planned - {control}):
        c, t = by_variant.loc[control], by_variant.loc[variant]
        for m in metrics:
            e, reduction = metric_effect(c, t, m, alpha, variant, use_cuped)
            row = e.to_dict()
            row["variance_reduction"] = reduction
            row["chance_to_beat_control"], row["expected_loss"] = bayesian_lift(e.relative, e.relative_se, prior_sd)
            row["seq_ci_low"], row["seq_ci_high"] = map(float, sequential_interval(
                e.effect, e.se, int(c["n"] + t["n"]), alpha))
            row["guardrail_margin"] = guardrails.get(m, np.nan)
            row["guardrail_p_value"] = non_inferiority_p_value(e, guardrails[m]) if m in guardrails else np.nan
            rows.append(row)
    effects = pd.DataFrame(rows)
    effects["guardrail"] = guardrail_status(effects, alpha, sequential)
    effects["p_value_adjusted"] = adjust_p_values(effects.p_value.tolist(), correction)
    effects["relative_p_value_adjusted"] = adjust_p_values(effects.relative_p_value.tolist(), correction)
    counted = {v: int(by_variant.loc[control, "n"] + by_variant.loc[v, "n"]) for v in planned - {control}}
    verdict, reasons = _verdict(effects, srm, alpha, primary or metrics[0], sequential, min_effect, counted,
                                assignment_days / arms.assigned.sum(), window_days)
    return Readout(experiment_id, window_days, alpha, correction, control,
                   arms[["variant", "assigned", "n"]].astype({"assigned": "int64", "n": "int64"}), effects, srm,
                   verdict, reasons, tuple(metrics))


def guardrail_status(effects: pd.DataFrame, alpha: float, sequential: bool = False) -> pd.Series:
    """Each guardrail's outcome, by the rules the verdict uses: **fail** when the interval of its effect lies
    wholly on the harmful side (below 0; the always-valid interval when ``sequential``), **pass** when
    non-inferiority is shown (guardrail p < ``alpha``: it did not get worse by more than the margin),
    **inconclusive** otherwise; None for a metric that is not a guardrail."""
    high = effects.seq_ci_high if sequential else effects.ci_high
    status = np.where(high < 0, "fail", np.where(effects.guardrail_p_value < alpha, "pass", "inconclusive"))
    return pd.Series(np.where(effects.guardrail_margin.notna(), status, None), index=effects.index, dtype=object)


GUARDRAIL_COLORS = {"pass": "#1a7f37", "fail": "#cf222e", "inconclusive": "#9a6700"}  # green, red, amber


def guardrail_style(status) -> str:
    """CSS for a guardrail's status cell (pandas Styler.map): green pass, red fail, amber inconclusive."""
    color = GUARDRAIL_COLORS.get(status)
    return f"color: {color}; font-weight: 600" if color else ""


MIN_MATURE = 2  # customers an arm needs whose window has elapsed before anything can be tested
EFFECT_COLUMNS = ["metric", "variant", "control_mean", "treatment_mean", "effect", "ci_low", "ci_high", "relative",
                  "relative_ci_low", "relative_ci_high", "p_value", "se", "df", "mde", "relative_se",
                  "relative_p_value", "variance_reduction", "chance_to_beat_control", "expected_loss", "seq_ci_low",
                  "seq_ci_high", "guardrail_margin", "guardrail_p_value", "guardrail", "p_value_adjusted",
                  "relative_p_value_adjusted"]


def _immature_reasons(arms: pd.DataFrame, immature: tuple[str, ...], window_days: int,
                      srm: SampleRatio) -> tuple[str, ...]:
    """One sentence per arm without enough mature customers (with the day its first window ends, when the
    arms carry ``first_assigned``), what to do, and the SRM warning, which still applies."""
    reasons = []
    for v in immature:
        assigned, n = int(arms.loc[v, "assigned"]), int(arms.loc[v, "n"])
        if assigned == 0:
            reasons.append(f"Not enough mature customers in arm {v}: nobody has been assigned to it yet.")
            continue
        first = pd.Timestamp(arms.loc[v, "first_assigned"]) if "first_assigned" in arms else pd.NaT
        when = (f"; its first {window_days}-day window ends on {first + pd.Timedelta(days=window_days):%Y-%m-%d}"
                if n == 0 and pd.notna(first) else "")
        reasons.append(f"Not enough mature customers in arm {v}: {n:,} of its {assigned:,} assigned customers "
                       f"{'has' if n == 1 else 'have'} had their {window_days}-day window end, at least "
                       f"{MIN_MATURE} are needed{when}.")
    reasons.append("Keep running and read the experiment again once the windows have ended (or choose a shorter "
                   "window_days).")
    if srm.mismatch:
        reasons.append(f"Also, the arm sizes do not match the planned split (SRM p = {srm.p_value:.2g}): check "
                       "assignment before trusting any result.")
    return tuple(reasons)


VERDICTS = ("ship", "trade-off", "keep running", "stop", "do not ship", "do not trust")


def _verdict(effects: pd.DataFrame, srm: SampleRatio, alpha: float, primary: str, sequential: bool = False,
             min_effect: float = DEFAULT_MIN_EFFECT, counted: dict[str, int] | None = None,
             days_per_customer: float = float("nan"), window_days: int = 30) -> tuple[str, tuple[str, ...]]:
    """The verdict and one sentence per reason, by the first rule that applies (the methodology section of
    the ab_test report shows the same table):

    0. (decided in :func:`analyze`, before these) an arm without mature customers → **keep running**;
    1. the arm sizes do not match the plan (SRM) → **do not trust**;
    2. the primary metric is significantly worse (adjusted) → **do not ship**;
    3. a guardrail's interval lies wholly on the harmful side: with a significant gain on the primary metric →
       **trade-off** (the gain and the harm with their intervals; a person decides), without → **do not ship**;
    4. a significant gain, but a guardrail's non-inferiority is not shown yet → **keep running**;
    5. a significant gain and every guardrail non-inferior → **ship**;
    6. no detectable effect: the minimum detectable effect (80% power) is still above ``min_effect`` (relative)
       → **keep running**, with the customers and days needed (MDE ∝ 1/√n, so n·((MDE/min_effect)² − 1) more
       of the ``counted`` customers of control and arm, at ``days_per_customer`` days of assignment each);
       otherwise → **stop**: any effect left is smaller than is worth shipping.
    """
    if srm.mismatch:
        return "do not trust", (f"The arm sizes do not match the planned split (SRM p = {srm.p_value:.2g}): "
                                "assignment or logging is broken, so the effects below are not reliable.",)
    main = effects[effects.metric == primary]
    if sequential:
        wins, losses = main[main.seq_ci_low > 0], main[main.seq_ci_high < 0]
    else:
        wins = main[(main.p_value_adjusted < alpha) & (main.effect > 0)]
        losses = main[(main.p_value_adjusted < alpha) & (main.effect < 0)]
    if len(losses):
        return "do not ship", tuple(f"{r.variant} lowers {_name(primary)} by {abs(r.relative):.1%} (adjusted p = "
                                    f"{r.p_value_adjusted:.2g})." for r in losses.itertuples())
    guards = effects[effects.guardrail_p_value.notna()]
    harmed = guards[(guards.seq_ci_high if sequential else guards.ci_high) < 0]
    if len(harmed):
        gains = [f"{r.variant} raises {_name(primary)} by {r.relative:+.1%} ({_relative_interval(r)})"
                 for r in wins.itertuples()]
        harms = [f"{_name(r.metric)} gets worse by {abs(r.relative):.1%} ({_relative_interval(r)})"
                 for r in harmed.itertuples()]
        if gains:
            return "trade-off", (f"{'; '.join(gains)}, but {'; '.join(harms)}. Decide whether the gain is worth "
                                 "the harm; the data cannot decide it.",)
        harm = "; ".join(harms)
        return "do not ship", (f"{harm[:1].upper()}{harm[1:]}, with no gain on {_name(primary)} to weigh "
                               "against it.",)
    unproven = guards[guards.guardrail_p_value >= alpha]
    if len(wins) and len(unproven):
        return "keep running", tuple(
            f"{r.variant} improves {_name(primary)}, but it cannot yet be ruled out that {_name(r.metric)} gets more "
            f"than {r.guardrail_margin:.0%} worse (guardrail p = {r.guardrail_p_value:.2g})."
            for r in unproven.itertuples())
    if len(wins):
        return "ship", tuple(f"{r.variant} raises {_name(primary)} by {r.effect:.3g} ({r.relative:+.1%}; adjusted "
                             f"p = {r.p_value_adjusted:.2g})." for r in wins.itertuples())
    reasons, done = [], True
    for r in main.itertuples():
        mde = r.mde / abs(r.control_mean) if r.control_mean else float("nan")
        if not np.isfinite(mde):  # no control baseline to be relative to
            done = False
            reasons.append(f"No detectable effect of {r.variant} on {_name(primary)} yet, and no control "
                           "baseline to size one against: keep collecting data.")
            continue
        if mde <= min_effect:
            reasons.append(f"No detectable effect of {r.variant} on {_name(primary)}: this many customers would "
                           f"have found a change of ±{mde:.1%}, so any effect left is smaller than the "
                           f"{min_effect:.0%} worth shipping.")
            continue
        done = False
        n = (counted or {}).get(r.variant, 0)
        more = int(np.ceil(n * ((mde / min_effect) ** 2 - 1))) if n else None
        when = (f" — about {days_per_customer * more:,.0f} more days of assignment at the current rate, plus the "
                f"{window_days}-day window" if more and np.isfinite(days_per_customer) else "")
        needed = f"about {more:,} more customers{when}" if more else "more customers"
        reasons.append(f"No detectable effect of {r.variant} on {_name(primary)} yet: only changes larger than "
                       f"±{mde:.1%} would be found reliably; to detect {min_effect:.0%} it needs {needed}.")
    return ("stop" if done else "keep running"), tuple(reasons)


def _relative_interval(r) -> str:
    return f"{r.relative_ci_low:+.1%} to {r.relative_ci_high:+.1%}"


def _name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric)


def segment_effects(by_segment: pd.DataFrame, weights: pd.DataFrame, metric: str, alpha: float = 0.05,
                    min_cell_size: int = 10) -> pd.DataFrame:
    """The effect on ``metric`` within each segment (rows of :func:`summarize_experiment` with a segment),
    with a per-segment sample ratio check. Segments where an arm has fewer than ``min_cell_size``
    customers are shown as suppressed, without numbers."""
    control = weights[weights.is_control].variant.iloc[0]
    planned = dict(zip(weights.variant, weights.weight))
    rows = []
    for segment, part in by_segment.groupby("segment"):
        arms = part.set_index("variant")
        for variant in sorted(set(planned) - {control}):
            row = {"segment": segment, "variant": variant, "suppressed": True}
            small = any(v not in arms.index or arms.loc[v, "n"] < min_cell_size for v in (control, variant))
            if not small:
                e, _ = metric_effect(arms.loc[control], arms.loc[variant], metric, alpha, variant)
                srm = sample_ratio_check(dict(zip(part.variant, part.assigned)), planned)
                row |= {"suppressed": False, "n": int(arms.loc[[control, variant], "n"].sum()),
                        "control_mean": e.control_mean, "treatment_mean": e.treatment_mean, "effect": e.effect,
                        "ci_low": e.ci_low, "ci_high": e.ci_high, "p_value": e.p_value,
                        "srm_p_value": srm.p_value}
            rows.append(row)
    return pd.DataFrame(rows)


def cumulative_effects(by_week: pd.DataFrame, control: str, metric: str, alpha: float = 0.05) -> pd.DataFrame:
    """The effect on ``metric`` as it would have been read at the end of each assignment week: sufficient
    statistics summed over the weeks so far (from :func:`summarize_experiment` with
    ``segment="assignment_week"``), with the fixed-sample and the always-valid interval."""
    sums = [c for c in by_week.columns if c.endswith("_sum") or c.endswith("_sumsq")] + ["n"]
    running = by_week.sort_values("segment").copy()
    running[sums] = running.groupby("variant")[sums].cumsum()
    rows = []
    for week, part in running.groupby("segment"):
        arms = part.set_index("variant")
        for variant in sorted(set(arms.index) - {control}):
            if control not in arms.index or min(arms.loc[control, "n"], arms.loc[variant, "n"]) < 2:
                continue
            try:
                e, _ = metric_effect(arms.loc[control], arms.loc[variant], metric, alpha, variant)
            except InferenceError:  # e.g. no variance yet in the first week
                continue
            n = int(arms.loc[control, "n"] + arms.loc[variant, "n"])
            low, high = sequential_interval(e.effect, e.se, n, alpha)
            rows.append({"week": pd.Timestamp(week), "variant": variant, "customers": n, "effect": e.effect,
                         "ci_low": e.ci_low, "ci_high": e.ci_high, "seq_ci_low": float(low),
                         "seq_ci_high": float(high)})
    return pd.DataFrame(rows, columns=["week", "variant", "customers", "effect", "ci_low", "ci_high", "seq_ci_low",
                                       "seq_ci_high"])


def summarize_churn(source: DataSource, experiment_id: str) -> pd.DataFrame:
    """Subscription lifetimes of the experiment's customers as counts of distinct (variant, days, churned),
    measured as in :func:`pco_lib.data.summaries.contractual_lifetimes` (censored at the end of the data). Only
    subscriptions started at or after assignment count.
    """
    if not source.has("subscriptions"):
        raise DataError("a churn readout needs the subscriptions table")
    a = source.table("assignments")
    a = a.filter(a.experiment_id == experiment_id)
    s = source.table("subscriptions")
    until = latest_timestamp(s.started_at, s.ended_at, error=ExperimentError)
    j = s.join(a.select("customer_id", "variant", "assigned_at"), "customer_id")
    j = j.filter(j.started_at >= j.assigned_at)
    return contractual_lifetimes(j, columns=["variant"], observed_until=until)


@dataclass(frozen=True)
class ChurnEffect:
    """Log-rank test and Cox hazard ratio of one treatment arm against control."""

    variant: str
    customers: int
    churned: int
    hazard_ratio: float
    ci_low: float
    ci_high: float
    p_value: float  # Cox (Wald) p-value of the hazard ratio
    logrank_p_value: float


def churn_effects(counts: pd.DataFrame, control: str, alpha: float = 0.05) -> list[ChurnEffect]:
    """Log-rank test and Cox proportional-hazards ratio of each treatment arm against control, on the
    aggregated (variant, days, churned, n) counts (see :mod:`pco_lib.stats.survival`)."""
    out = []
    c = counts[counts.variant == control]
    if c.empty:
        raise ExperimentError(f"no subscriptions in the control arm {control!r}")
    for variant in sorted(set(counts.variant) - {control}):
        t = counts[counts.variant == variant]
        if t.churned.sum() + c.churned.sum() == 0:
            raise ExperimentError("no subscription has ended in either arm; churn cannot be compared yet")
        pair = pd.concat([c, t])
        pair["treated"] = (pair.variant == variant).astype(float)
        cox = fit_cox(pair, ["treated"], alpha)
        row = cox.summary.iloc[0]
        logrank = logrank_tests(pair, "variant").iloc[0]
        out.append(ChurnEffect(variant, int(t.n.sum()), int((t.n * t.churned).sum()), row.hazard_ratio,
                               row.ci_low, row.ci_high, row.p_value, float(logrank.p_value)))
    return out


def read_experiment(source: DataSource, experiment_id: str, metrics: list[str], window_days: int = 30,
                    alpha: float = 0.05, correction: str = "holm", guardrails: dict[str, float] | None = None,
                    prior_sd: float = 0.0, sequential: bool = False, use_cuped: bool = False,
                    min_effect: float = DEFAULT_MIN_EFFECT, arms: pd.DataFrame | None = None) -> Readout:
    """Summarize in the engine and analyze: the one call a notebook makes (``arms``: the per-arm summary when
    the report already has it, e.g. ``roll_up`` of :func:`summarize_experiment_by`)."""
    if arms is None:
        arms = summarize_experiment(source, experiment_id, window_days,
                                    metrics=[*metrics, *(guardrails or {})])
    weights = planned_weights(source, experiment_id)
    first, last = assignment_period(source, experiment_id)
    readout = analyze(arms, weights, metrics, experiment_id, window_days, alpha, correction,
                      guardrails=guardrails, prior_sd=prior_sd, sequential=sequential, use_cuped=use_cuped,
                      min_effect=min_effect, assignment_days=max((last - first) / pd.Timedelta(days=1), 1.0))
    return replace(readout, first_assigned=first.date().isoformat(), last_assigned=last.date().isoformat(),
                   assignment_days=(last.normalize() - first.normalize()).days + 1)


def assignment_period(source: DataSource, experiment_id: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The first and the last assignment of an experiment (naive UTC)."""
    a = source.table("assignments")
    a = a.filter(a.experiment_id == experiment_id)
    first, last = (pd.Timestamp(v) for v in a.aggregate(f=a.assigned_at.min(), l=a.assigned_at.max())
                   .to_pandas().iloc[0])
    return first, last


METRIC_NAMES = {  # in a sentence
    "repeat": "repeat purchase", "retained": "retention", "revenue": "revenue per customer",
    "orders": "orders per customer", "revenue_per_order": "revenue per order",
}
METRIC_LABELS = {
    "repeat": "Repeat purchase within {w} days",
    "retained": "Retained at day {w} (active in its last week)",
    "revenue": "Revenue per customer, {w} days",
    "orders": "Orders per customer, {w} days",
    "revenue_per_order": "Revenue per order, {w} days",
}


def metric_label(metric: str, window_days: int) -> str:
    """The metric's name on the page, with the currency for money: "Revenue per customer, 30 days (EUR)"."""
    label = METRIC_LABELS.get(metric, metric).format(w=window_days)
    return money_label(label) if metric in MONEY_METRICS else label


def in_units(table: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """An effects table (or a segment table of one ``metric``) with each value written in its metric's unit:
    shares as percent and their differences in points ("45.4%", "+8.2 pts"), money in the report's currency,
    counts as numbers; ``mde`` as "±…". Rows of different metrics can then share a column on the page."""
    out = table.copy()
    metrics = out["metric"] if metric is None else pd.Series(metric, index=out.index)
    for column in [c for c in _MEAN_COLUMNS + _DIFFERENCE_COLUMNS + ("mde",) if c in out.columns]:
        signed = column not in _MEAN_COLUMNS
        shown = [("–" if pd.isna(v) else _fmt(m, v, signed)) for m, v in zip(metrics, out[column])]
        out[column] = [("±" + t[1:] if column == "mde" and t[:1] in "+−-" else t) for t in shown]
    return out


_MEAN_COLUMNS = ("control_mean", "treatment_mean")
_DIFFERENCE_COLUMNS = ("effect", "ci_low", "ci_high", "seq_ci_low", "seq_ci_high")


def _fmt(metric: str, value: float, signed: bool = False) -> str:
    if METRICS.get(metric) == "proportion":
        return f"{value * 100:+.1f} pts" if signed else f"{value:.1%}"
    if metric in MONEY_METRICS:
        return money(value, "+,.2f" if signed else ",.2f")
    return f"{value:+,.2f}" if signed else f"{value:,.2f}"


VERDICT_DISPLAY = {  # verdict -> (tone of its banner, title)
    "ship": ("positive", "Ship"), "trade-off": ("mixed", "Trade-off: decide"),
    "keep running": ("waiting", "Keep running"), "stop": ("neutral", "Stop: no effect of practical size"),
    "do not ship": ("negative", "Do not ship"), "do not trust": ("warning", "Do not trust this result"),
}


def verdict_display(readout: Readout) -> tuple[str, str, str]:
    """The verdict as its banner shows it: tone, title and the reasons in one paragraph."""
    tone, title = VERDICT_DISPLAY[readout.verdict]
    text = " ".join(readout.reasons)
    return tone, title, text[:1].upper() + text[1:]


def summary_points(readout: Readout) -> list[str]:
    """One plain sentence per metric (effect and interval); the verdict itself is :func:`verdict_display`."""
    points = []
    level = f"{1 - readout.alpha:.0%}"
    for r in readout.effects.itertuples():
        if not np.isfinite(r.effect):  # an arm without mature customers: nothing to say yet
            continue
        label = metric_label(r.metric, readout.window_days)
        sure = "significant" if r.p_value_adjusted < readout.alpha else "not significant"
        points.append(
            f"{label}: {_fmt(r.metric, r.control_mean)} in {readout.control} vs {_fmt(r.metric, r.treatment_mean)} "
            f"in {r.variant}, a change of **{_fmt(r.metric, r.effect, True)}** ({r.relative:+.1%}; {level} interval "
            f"{_fmt(r.metric, r.ci_low, True)} to {_fmt(r.metric, r.ci_high, True)}, {sure}).")
    if readout.left_out:
        points.append(f"{readout.left_out:,} recently assigned customers are not counted yet: their "
                      f"{readout.window_days}-day window has not ended.")
    return points or ["No metric can be read yet: see the verdict above."]


def headlines(readout: Readout, churn: list[ChurnEffect] | None = None) -> tuple[list[tuple], dict]:
    """Headline cards ``(results.json key, value, label[, format])`` and the further results.json values:
    ``verdict``, ``verdict_reasons``, ``srm_p_value``, ``metrics.{metric}.{arm}.{effect, ci_low, ci_high, p_value,
    p_value_adjusted, relative, relative_ci_low, relative_ci_high, relative_p_value, relative_p_value_adjusted,
    chance_to_beat_control, expected_loss}`` and ``churn.{arm}.{hazard_ratio, ci_low, ci_high, p_value,
    logrank_p_value}``."""
    primary = readout.effects.iloc[0]
    cards = [
        ("headline.verdict", readout.verdict, "Verdict"),
        ("headline.primary_relative_lift", primary.relative,
         f"{metric_label(primary.metric, readout.window_days)}, lift", "+.1%",
         (primary.relative_ci_low, primary.relative_ci_high)),
        ("headline.customers", int(readout.arms.n.sum()), "Customers counted"),
        ("headline.srm_p_value", readout.srm.p_value, "Sample ratio p-value", "p"),
    ]
    hidden = {"verdict": readout.verdict, "verdict_reasons": list(readout.reasons), "srm_p_value": readout.srm.p_value}
    for r in readout.effects.itertuples():
        for key in ("effect", "ci_low", "ci_high", "p_value", "p_value_adjusted", "relative", "relative_ci_low",
                    "relative_ci_high", "relative_p_value", "relative_p_value_adjusted", "chance_to_beat_control",
                    "expected_loss"):
            hidden[f"metrics.{r.metric}.{r.variant}.{key}"] = getattr(r, key)
        if isinstance(getattr(r, "guardrail", None), str):
            hidden[f"metrics.{r.metric}.{r.variant}.guardrail"] = r.guardrail
    if readout.first_assigned is not None:
        hidden["experiment"] = {"first_assigned": readout.first_assigned, "last_assigned": readout.last_assigned,
                                "days": readout.assignment_days}
    for c in churn or []:
        for key in ("hazard_ratio", "ci_low", "ci_high", "p_value", "logrank_p_value"):
            hidden[f"churn.{c.variant}.{key}"] = getattr(c, key)
    return cards, hidden
