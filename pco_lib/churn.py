"""Survival-based churn, the domain of the ``churn_survival`` report: how long customers stay, which segments
leave sooner, who is at risk now.

Lifetimes come from the engine (:mod:`pco_lib.data.summaries`) under one of two churn definitions
(contractual: a subscription ends; non-contractual: no activity for ``inactivity_days``); the estimators
live in :mod:`pco_lib.stats.survival` and :mod:`pco_lib.stats.cox`. This module joins them into the readout
(:func:`analyze`), its tables for the page, the churn risk of active customers and the headline keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .data.source import DataError, DataSource
from .data.summaries import contractual_lifetimes, noncontractual_lifetimes
from .stats.cox import CoxResult, churn_risk, fit_cox
from .stats.survival import (
    HORIZONS,
    OTHER,
    SurvivalCurves,
    SurvivalError,
    check_lifetimes,
    kaplan_meier,
    logrank_tests,
    merge_small_segments,
    rmst_table,
)

DEFINITIONS = ("contractual", "non_contractual")


def choose_definition(source: DataSource, definition: str = "auto", inactivity_days: int = 90,
                      activity: str = "order") -> tuple[str, str | None]:
    """The churn definition to use and, when it was chosen from the data (``"auto"``), the sentence that says
    so: contractual where there are subscriptions, otherwise non-contractual."""
    if definition != "auto":
        return definition, None
    if source.has("subscriptions"):
        return "contractual", ("Churn is contractual here: a customer churns when their subscription ends "
                               "(chosen because the data has subscriptions).")
    return "non_contractual", (f"Churn is non-contractual here: a customer counts as churned after {inactivity_days} "
                               f"days without an {activity} (chosen because the data has no subscriptions table).")


def summarize_lifetimes(source: DataSource, definition: str = "contractual", inactivity_days: int = 90,
                        activity: str = "order", columns: list[str] | tuple = (),
                        per_customer: bool = False) -> pd.DataFrame:
    """Lifetimes from the canonical tables under the chosen churn definition (see the module docstring)."""
    from .data.summaries import activity_table

    if definition not in DEFINITIONS:
        raise SurvivalError(f"churn_definition must be one of {', '.join(DEFINITIONS)}, not {definition!r}")
    customers = source.table("customers")
    if definition == "contractual":
        if not source.has("subscriptions"):
            raise DataError("contractual churn needs the subscriptions table; use churn_definition="
                            "'non_contractual' for a business without subscriptions")
        return contractual_lifetimes(source.table("subscriptions"), customers, columns, per_customer=per_customer)
    if activity not in ("order", "event"):
        raise SurvivalError(f"non-contractual churn counts orders or events as activity, not {activity!r}")
    return noncontractual_lifetimes(customers, activity_table(source, activity), inactivity_days, columns,
                                    per_customer=per_customer)


@dataclass
class ChurnReadout:
    """Everything the churn report shows, computed from aggregated lifetimes."""

    definition: str
    segment: str | None
    horizon_days: int
    overall: SurvivalCurves
    curves: SurvivalCurves  # by segment (the overall curve when there is no segment)
    table: pd.DataFrame  # per segment: customers, churned, median, survival at the horizons
    logrank: pd.DataFrame | None
    rmst: pd.DataFrame
    cox: CoxResult | None
    notes: list[str]
    alpha: float


def analyze(counts: pd.DataFrame, definition: str, segment: str | None, covariates: list[str],
            horizon_days: int = 365, alpha: float = 0.05, correction: str = "holm",
            min_segment_size: int = 30) -> ChurnReadout:
    """Kaplan–Meier, log-rank, RMST and Cox on aggregated lifetimes; small segments and covariate levels are
    merged into "other" first (with a note)."""
    check_lifetimes(counts)
    notes = []
    overall = kaplan_meier(counts, None, alpha)  # every customer, whatever the groups
    by_segment = counts
    if segment and not pd.api.types.is_numeric_dtype(counts[segment]):
        by_segment, note = merge_small_segments(counts, segment, min_segment_size)
        notes += [note] if note else []
    curves = kaplan_meier(by_segment, segment, alpha) if segment else overall
    horizons = [h for h in HORIZONS if h <= max(horizon_days, HORIZONS[0])]
    table = curves.table(horizons)
    logrank = (logrank_tests(by_segment, segment, correction) if segment and by_segment[segment].nunique() > 1
               else None)
    rmst_frame = rmst_table(by_segment, horizon_days, segment, alpha)
    if rmst_frame.rmst.isna().any():
        notes.append(f"the restricted mean lifetime needs follow-up to {horizon_days} days in every group; it is "
                     "left out where the data end sooner (choose a shorter horizon_days)")
    cox = None
    model_counts = counts
    for column in covariates:  # rare levels share one "other" level in the model; nobody is left out of it
        if not pd.api.types.is_numeric_dtype(counts[column]):
            model_counts, note = merge_small_segments(model_counts, column, min_segment_size, keep_other=True)
            notes += [f"in the Cox model, {note}"] if note else []
    usable = [c for c in covariates if model_counts[c].nunique() > 1]
    notes += [f"{c} takes a single value here and is left out of the Cox model" for c in covariates
              if c not in usable]
    if usable:
        cox = fit_cox(model_counts, usable, alpha)
    return ChurnReadout(definition, segment, horizon_days, overall, curves, table, logrank, rmst_frame, cox,
                        notes, alpha)


def _days_text(days: float) -> str:
    return "not reached" if pd.isna(days) else f"{days:,.0f} days"


def summary_points(readout: ChurnReadout, risk: pd.DataFrame | None = None, within_days: int = 30) -> list[str]:
    """Plain-language bullet points for the top of the churn report."""
    what = "subscriptions" if readout.definition == "contractual" else "customers"
    o = readout.overall.table(HORIZONS).iloc[0]
    points = []
    if pd.isna(o.median_days):
        points.append(f"More than half of {what} are still active at the end of the data, so the typical lifetime "
                      "is longer than we can observe yet.")
    else:
        points.append(f"Half of {what} have churned by **{_days_text(o.median_days)}** (median lifetime; 95% "
                      f"interval {_days_text(o.median_ci_low)} to {_days_text(o.median_ci_high)}).")
    shown = [f"{o[f'survival_{h}d']:.0%} after {h} days" for h in HORIZONS if pd.notna(o[f"survival_{h}d"])]
    if shown:
        points.append("Still active: " + ", ".join(shown) + ".")
    seg = readout.segment
    if seg and len(readout.table) > 1 and readout.logrank is not None:
        r = readout.rmst.sort_values("rmst")
        worst, best = r.iloc[0], r.iloc[-1]
        p = readout.logrank.iloc[0].p_value
        sure = "a clear difference" if p < 0.001 else "a likely difference" if p < readout.alpha else \
            "no detectable difference"
        points.append(f"By {seg}: **{worst.segment}** churns fastest and **{best.segment}** slowest — over their "
                      f"first {readout.horizon_days} days, {best.segment} customers stay {best.rmst - worst.rmst:,.0f} "
                      f"days longer on average ({worst.rmst:,.0f} vs {best.rmst:,.0f} days); {sure} across "
                      f"{seg} values (log-rank p = {p:.2g}).")
    if readout.cox is not None:
        s = readout.cox.summary
        clear = s[s.p_value < readout.alpha].assign(size=lambda f: np.abs(np.log(f.hazard_ratio)))
        clear = clear.sort_values("size", ascending=False).head(3)
        if clear.empty:
            points.append("Holding the other factors fixed, none of the model's factors has a clear effect on churn.")
        else:
            parts = [f"{r.covariate} {r.level} churns {abs(r.hazard_ratio - 1):.0%} "
                     f"{'faster' if r.hazard_ratio > 1 else 'slower'} than {r.reference or 'average'} "
                     f"(hazard ratio {r.hazard_ratio:.2f}, {r.ci_low:.2f}–{r.ci_high:.2f})"
                     for r in clear.itertuples()]
            points.append("What drives churn, holding the other factors fixed: " + "; ".join(parts) + ".")
        ph = readout.cox.ph_test
        bad = ph[ph.violates & (ph.covariate != "global")].covariate.tolist()
        if bad:
            points.append(f"Caveat: the effect of {', '.join(bad)} changes over time (proportional-hazards check), "
                          "so its hazard ratio is an average over the period; the curves by segment show the "
                          "fuller picture.")
    if risk is not None and len(risk):
        top = risk.churn_probability.quantile(0.9)
        high = risk[risk.churn_probability >= top]
        points.append(f"Of {len(risk):,} {what} still active, the 10% most at risk have on average a "
                      f"**{high.churn_probability.mean():.0%}** chance of churning in the next {within_days} days "
                      f"(the rest: {risk[risk.churn_probability < top].churn_probability.mean():.0%}); the list is in "
                      "the CSV beside this report, not in this page.")
    points += [f"Note: {n}" for n in readout.notes]
    return points


def headlines(readout: ChurnReadout, risk: pd.DataFrame | None = None) -> tuple[list[tuple], dict]:
    """Headline cards ``(results.json key, value, label, format)`` and further results.json values:
    ``median_lifetime``, ``survival`` ({segment: {horizon days: S}}), ``hazard_ratios`` and ``rmst``."""
    o = readout.overall.table(HORIZONS).iloc[0]
    cards = [("customers", int(o.customers), "Customers" if readout.definition != "contractual"
              else "Subscriptions", ",d"),
             ("churned_share", o.churned / o.customers, "Churned so far", ".0%"),
             ("median_lifetime_days", None if pd.isna(o.median_days) else float(o.median_days),
              "Median lifetime (days)", ",.0f")]
    for h in (90, 365):
        if pd.notna(o[f"survival_{h}d"]):
            cards.append((f"survival_{h}d", float(o[f"survival_{h}d"]), f"Still active after {h} days", ".0%"))

    def clean(value):
        return None if pd.isna(value) else float(value)

    table = readout.table.set_index("segment")
    horizons = [h for h in HORIZONS if f"survival_{h}d" in table]
    hidden = {
        "median_lifetime": {s: clean(r.median_days) for s, r in table.iterrows()},
        "survival": {s: {str(h): clean(r[f"survival_{h}d"]) for h in horizons} for s, r in table.iterrows()},
        "rmst": {r.segment: {"horizon_days": readout.horizon_days, "rmst": r.rmst, "ci_low": r.ci_low,
                             "ci_high": r.ci_high} for r in readout.rmst.itertuples()},
        "hazard_ratios": {} if readout.cox is None else {
            f"{r.covariate}={r.level}": {"hazard_ratio": r.hazard_ratio, "ci_low": r.ci_low, "ci_high": r.ci_high,
                                         "p_value": r.p_value} for r in readout.cox.summary.itertuples()},
    }
    if risk is not None:
        hidden["active_scored"] = len(risk)
    return cards, hidden


def at_risk_table(curves: SurvivalCurves, times, min_cell_size: int = 10) -> pd.DataFrame:
    """Numbers at risk per segment, with counts below ``min_cell_size`` shown as "<min_cell_size"."""
    table = curves.at_risk(times)
    return table.map(lambda v: f"<{min_cell_size}" if 0 < v < min_cell_size else f"{v:,}")


def score_active_customers(source: DataSource, readout: ChurnReadout, within_days: int = 30,
                           definition: str = "contractual", inactivity_days: int = 90,
                           activity: str = "order") -> pd.DataFrame:
    """Customers (or subscriptions) still active, with their chance of churning in the next ``within_days``:
    columns customer_id, days (active so far), the model's covariates, churn_probability, beyond_data.

    Uses the Cox model when there is one (values merged into "other" in the model are mapped the same way),
    else the pooled Kaplan–Meier curve: 1 − S(a + N)/S(a).
    """
    cox = readout.cox
    columns = list(cox.terms) if cox is not None else []
    rows = summarize_lifetimes(source, definition, inactivity_days, activity, columns, per_customer=True)
    active = rows[rows["churned"] == 0].drop(columns="churned").reset_index(drop=True)
    if active.empty:
        return active.assign(churn_probability=pd.Series(dtype=float), beyond_data=pd.Series(dtype=bool))
    if cox is not None:
        for cov, cols in cox.terms.items():
            if cov in cox.reference:
                known = {cox.reference[cov], *(c.split("=", 1)[1] for c in cols)}
                active[cov] = active[cov].where(active[cov].astype(str).isin(known), OTHER)
        return churn_risk(cox, active, within_days)
    sf = readout.overall.fitters["all"].survival_function_.iloc[:, 0]
    last = float(sf.index.max())
    now = sf.asof(active["days"].to_numpy(float)).to_numpy()
    then = sf.asof(np.minimum(active["days"].to_numpy(float) + within_days, last)).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        active["churn_probability"] = np.where(now > 0, 1 - then / now, 0.0)
    active["beyond_data"] = active["days"] + within_days > last
    return active


def horizon_table(readout: ChurnReadout) -> pd.DataFrame:
    """The per-segment table for the report: customers, churned share, median lifetime with interval, and
    survival at each horizon with its interval, as readable text."""
    t = readout.table

    def interval(low, high, fmt):
        return "–" if pd.isna(low) or pd.isna(high) else f"{low:{fmt}} – {high:{fmt}}"

    out = pd.DataFrame({readout.segment or "group": t.segment, "customers": t.customers.map("{:,}".format),
                        "churned": (t.churned / t.customers).map("{:.0%}".format),
                        "median days": t.median_days.map(lambda v: "not reached" if pd.isna(v) else f"{v:,.0f}"),
                        "median 95% CI": [interval(a, b, ",.0f") for a, b in zip(t.median_ci_low, t.median_ci_high)]})
    for h in HORIZONS:
        if f"survival_{h}d" in t:
            out[f"active at {h} d"] = [
                "–" if pd.isna(s) else f"{s:.0%} ({interval(a, b, '.0%')})"
                for s, a, b in zip(t[f"survival_{h}d"], t[f"survival_{h}d_ci_low"], t[f"survival_{h}d_ci_high"])]
    return out


def rmst_display(readout: ChurnReadout) -> pd.DataFrame:
    """RMST per segment and its difference from the reference segment, as readable text for the report."""
    r = readout.rmst
    out = pd.DataFrame({readout.segment or "group": r.segment, "customers": r.customers.map("{:,}".format),
                        f"mean days active (first {readout.horizon_days})": [
                            f"{v:,.1f} ({lo:,.1f} – {hi:,.1f})" for v, lo, hi in zip(r.rmst, r.ci_low, r.ci_high)]})
    if "difference" in r:
        out[f"vs {r.reference.iloc[0]}"] = [
            "reference" if pd.isna(d) else f"{d:+,.1f} ({lo:+,.1f} to {hi:+,.1f})"
            for d, lo, hi in zip(r.difference, r.difference_ci_low, r.difference_ci_high)]
        out["p-value"] = r.p_value.map(lambda p: "" if pd.isna(p) else f"{p:.2g}")
    return out


def hazard_table(cox: CoxResult, min_cell_size: int = 10) -> pd.DataFrame:
    """The Cox hazard ratios for the report; a level's customer count below ``min_cell_size`` is not shown."""
    out = cox.summary.copy()
    out["customers"] = out["customers"].map(
        lambda n: "" if pd.isna(n) else f"<{min_cell_size}" if n < min_cell_size else f"{n:,.0f}")
    return out


RISK_BANDS = (0.0, 0.1, 0.25, 0.5, 1.0)


def risk_bands(risk: pd.DataFrame, min_cell_size: int = 10) -> pd.DataFrame:
    """Active customers per band of churn probability (bands with fewer than ``min_cell_size`` suppressed)."""
    from .data.privacy import suppress_small_cells

    labels = [f"{lo:.0%}–{hi:.0%}" for lo, hi in zip(RISK_BANDS[:-1], RISK_BANDS[1:])]
    band = pd.cut(risk["churn_probability"], RISK_BANDS, labels=labels, include_lowest=True)
    out = (risk.assign(band=band).groupby("band", observed=False)["churn_probability"]
           .agg(customers="size", mean_probability="mean").reset_index())
    return suppress_small_cells(out, "customers", min_cell_size).drop(columns="suppressed")
