"""Survival estimators on aggregated lifetimes: Kaplan–Meier, log-rank tests, restricted mean survival time.

Lifetimes arrive as distinct (days, churned, segment…) rows with a count ``n`` (see
:mod:`pco_lib.data.summaries`); every estimator takes those counts as frequency weights, so a million
customers fit as fast as a few thousand, and the answers equal those from one row per customer.

- Kaplan–Meier with exponential Greenwood bands (lifelines), median lifetime with its interval, survival
  at fixed horizons, numbers at risk.
- Log-rank tests: overall and pairwise between segments, with Holm or Benjamini–Hochberg adjustment.
- Restricted mean survival time RMST(τ) = ∫₀^τ S(t) dt with the Greenwood-type variance
  Σ_{t_i ≤ τ} A_i² d_i / (n_i (n_i − d_i)), A_i = ∫_{t_i}^τ S(u) du (Klein & Moeschberger §4.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from .inference import adjust_p_values


class SurvivalError(ValueError):
    """Lifetimes cannot be analysed (no events, bad durations, unknown column or definition)."""


HORIZONS = (30, 90, 180, 365)
OTHER = "other"


def check_columns(columns: list[str], available: list[str], what: str) -> None:
    """A clear error naming the columns that do not exist and those that do."""
    unknown = [c for c in columns if c not in available]
    if unknown:
        raise SurvivalError(f"unknown column {', '.join(map(repr, unknown))} for {what}; "
                            f"available: {', '.join(available)}")


def check_lifetimes(counts: pd.DataFrame) -> None:
    """Clear errors for lifetimes that cannot be analysed."""
    if counts.empty or counts["n"].sum() == 0:
        raise SurvivalError("no customers to analyse (the lifetimes table is empty)")
    if (counts["days"] <= 0).any():
        raise SurvivalError("lifetimes must be at least 1 day; found durations ≤ 0")
    if (counts["n"] * counts["churned"]).sum() == 0:
        raise SurvivalError("no customer has churned yet in this data, so survival cannot be estimated; "
                            "use a longer period of data or, for non-contractual churn, fewer inactivity_days")


def merge_small_segments(counts: pd.DataFrame, column: str, min_customers: int = 30,
                         keep_other: bool = False) -> tuple[pd.DataFrame, str]:
    """Fold segments with fewer than ``min_customers`` customers into ``"other"``; return the frame and a note
    (empty when nothing was merged). If "other" itself stays small it is dropped from the comparison of
    segments, unless ``keep_other`` (a model keeps every customer)."""
    sizes = counts.groupby(column)["n"].sum()
    small = sorted(sizes[sizes < min_customers].index)
    if not small:
        return counts, ""
    out = counts.copy()
    out[column] = out[column].where(~out[column].isin(small), OTHER)
    keys = [c for c in out.columns if c != "n"]
    out = out.groupby(keys, as_index=False)["n"].sum()
    note = f"{len(small)} {column} value(s) with fewer than {min_customers} customers were merged into '{OTHER}'"
    if out.loc[out[column] == OTHER, "n"].sum() < min_customers and not keep_other:
        out = out[out[column] != OTHER]
        note += ", which is itself too small and is left out"
    return out.reset_index(drop=True), note


def _arrays(counts: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """days, churned and n as positional arrays: lifelines looks weights given as a Series up by label after
    renumbering the other inputs, so a frame with any other index (a concat, a filter) got wrong weights."""
    return counts["days"].to_numpy(), counts["churned"].to_numpy(), counts["n"].to_numpy()


def _groups(counts: pd.DataFrame, segment: str | None):
    if not segment:
        return [("all", counts)]
    return [(str(k), part) for k, part in counts.groupby(segment, sort=True)]


@dataclass
class SurvivalCurves:
    """Kaplan–Meier fits per segment (lifelines fitters keyed by segment value, or ``"all"``)."""

    fitters: dict
    segment: str | None
    alpha: float = 0.05

    def curves(self) -> pd.DataFrame:
        """Long frame for plotting: segment, days, survival, ci_low, ci_high."""
        parts = []
        for name, kmf in self.fitters.items():
            ci = kmf.confidence_interval_survival_function_
            parts.append(pd.DataFrame({"segment": name, "days": kmf.survival_function_.index,
                                       "survival": kmf.survival_function_.iloc[:, 0].to_numpy(),
                                       "ci_low": ci.iloc[:, 0].to_numpy(), "ci_high": ci.iloc[:, 1].to_numpy()}))
        return pd.concat(parts, ignore_index=True)

    def at(self, days: float) -> pd.DataFrame:
        """Survival at ``days`` per segment with its interval (step function read just after ``days``)."""
        rows = []
        for name, kmf in self.fitters.items():
            ci = kmf.confidence_interval_survival_function_
            sf = kmf.survival_function_.iloc[:, 0]
            beyond = days > sf.index.max() and sf.iloc[-1] > 0  # unknown, unless everyone has churned
            rows.append({"segment": name, "days": days,
                         "survival": np.nan if beyond else float(kmf.survival_function_at_times(days).iloc[0]),
                         "ci_low": np.nan if beyond else float(ci.iloc[:, 0].asof(days)),
                         "ci_high": np.nan if beyond else float(ci.iloc[:, 1].asof(days))})
        return pd.DataFrame(rows)

    def table(self, horizons=HORIZONS) -> pd.DataFrame:
        """Per segment: customers, churned, median lifetime (days, with interval) and survival at each horizon."""
        from lifelines.utils import median_survival_times

        rows = []
        for name, kmf in self.fitters.items():
            median = float(kmf.median_survival_time_)
            m_ci = median_survival_times(kmf.confidence_interval_survival_function_)
            row = {"segment": name, "customers": int(kmf.weights.sum()),
                   "churned": int((kmf.weights * kmf.event_observed).sum()),
                   "median_days": median if np.isfinite(median) else np.nan,
                   "median_ci_low": float(m_ci.iloc[0, 0]) if np.isfinite(m_ci.iloc[0, 0]) else np.nan,
                   "median_ci_high": float(m_ci.iloc[0, 1]) if np.isfinite(m_ci.iloc[0, 1]) else np.nan}
            for h in horizons:
                at = self.at(h).set_index("segment").loc[name]
                row[f"survival_{h}d"] = at["survival"]
                row[f"survival_{h}d_ci_low"] = at["ci_low"]
                row[f"survival_{h}d_ci_high"] = at["ci_high"]
            rows.append(row)
        return pd.DataFrame(rows)

    def at_risk(self, times) -> pd.DataFrame:
        """Numbers still at risk (not churned, not censored) just before each time, per segment."""
        rows = {}
        for name, kmf in self.fitters.items():
            table = kmf.event_table
            rows[name] = [int(table.loc[table.index >= t, "at_risk"].iloc[0]) if (table.index >= t).any() else 0
                          for t in times]
        return pd.DataFrame(rows, index=list(times)).T.rename_axis("segment")


def kaplan_meier(counts: pd.DataFrame, segment: str | None = None, alpha: float = 0.05) -> SurvivalCurves:
    """Kaplan–Meier survival per segment from aggregated counts (weights = n)."""
    from lifelines import KaplanMeierFitter

    check_lifetimes(counts)
    fitters = {}
    for name, part in _groups(counts, segment):
        part = part[part["n"] > 0]
        days, churned, n = _arrays(part)
        fitters[name] = KaplanMeierFitter(label=name, alpha=alpha).fit(days, churned, weights=n)
    return SurvivalCurves(fitters, segment, alpha)


def logrank_tests(counts: pd.DataFrame, segment: str, correction: str = "holm") -> pd.DataFrame:
    """The overall log-rank test across segments and every pairwise test, with adjusted p-values.

    Columns: comparison, group_a, group_b, statistic, df, p_value, p_value_adjusted (the overall test is
    not adjusted).
    """
    from lifelines.statistics import logrank_test, multivariate_logrank_test

    check_lifetimes(counts)
    groups = _groups(counts, segment)
    if len(groups) < 2:
        raise SurvivalError(f"log-rank tests need at least two {segment} groups")
    days, churned, n = _arrays(counts)
    overall = multivariate_logrank_test(days, counts[segment].astype(str).to_numpy(), churned, weights=n)
    rows = [{"comparison": "all groups", "group_a": "", "group_b": "", "statistic": float(overall.test_statistic),
             "df": len(groups) - 1, "p_value": float(overall.p_value)}]
    for (a, pa_), (b, pb) in combinations(groups, 2):
        (da, ea, wa), (db, eb, wb) = _arrays(pa_), _arrays(pb)
        r = logrank_test(da, db, ea, eb, weights_A=wa, weights_B=wb)
        rows.append({"comparison": f"{a} vs {b}", "group_a": a, "group_b": b,
                     "statistic": float(r.test_statistic), "df": 1, "p_value": float(r.p_value)})
    out = pd.DataFrame(rows)
    pair = out.index > 0
    out["p_value_adjusted"] = out["p_value"]
    out.loc[pair, "p_value_adjusted"] = adjust_p_values(out.loc[pair, "p_value"].tolist(), correction)
    return out


@dataclass(frozen=True)
class Rmst:
    segment: str
    horizon: float
    rmst: float
    se: float
    ci_low: float
    ci_high: float


def rmst(days, churned, weights, horizon: float, alpha: float = 0.05, segment: str = "all") -> Rmst:
    """RMST(τ) = ∫₀^τ Ŝ(t) dt of the Kaplan–Meier curve with its Greenwood-type standard error (module doc);
    NaN when τ is beyond the longest follow-up, where the curve is not known."""
    t = np.asarray(days, float)
    e = np.asarray(churned, bool)
    w = np.asarray(weights, float)
    if horizon <= 0:
        raise SurvivalError("the RMST horizon must be positive")
    if horizon > t[w > 0].max():  # the curve is unknown beyond the longest follow-up (as survRM2 refuses)
        return Rmst(segment, horizon, np.nan, np.nan, np.nan, np.nan)
    dead = e & (t <= horizon)
    times, at_time = np.unique(t[dead], return_inverse=True)
    d = np.bincount(at_time, weights=w[dead], minlength=times.size)  # churned at each time
    order = np.argsort(t)
    t_s, w_s = t[order], w[order]
    tail = np.concatenate([np.cumsum(w_s[::-1])[::-1], [0.0]])
    n_risk = tail[np.searchsorted(t_s, times, side="left")]
    surv = np.cumprod(1 - d / n_risk)
    edges = np.concatenate([[0.0], times, [horizon]])
    levels = np.concatenate([[1.0], surv])
    areas = levels * np.diff(edges)  # area of each step up to the horizon
    total = float(areas.sum())
    after = np.cumsum(areas[::-1])[::-1][1:]  # A_i = ∫_{t_i}^τ S(u) du
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(n_risk > d, after**2 * d / (n_risk * (n_risk - d)), 0.0)
    se = float(np.sqrt(terms.sum()))
    z = stats.norm.ppf(1 - alpha / 2)
    return Rmst(segment, horizon, total, se, total - z * se, total + z * se)


def rmst_table(counts: pd.DataFrame, horizon: float, segment: str | None = None, alpha: float = 0.05,
               reference: str | None = None) -> pd.DataFrame:
    """RMST per segment and its difference from the reference segment (default: the largest) with a
    normal interval and p-value (independent groups: Var = SE²_a + SE²_b)."""
    check_lifetimes(counts)
    groups = _groups(counts, segment)
    res = [rmst(p["days"], p["churned"], p["n"], horizon, alpha, name) for name, p in groups]
    out = pd.DataFrame([r.__dict__ for r in res])
    out["customers"] = [int(p["n"].sum()) for _, p in groups]
    if len(res) > 1:
        ref = reference or out.loc[out["customers"].idxmax(), "segment"]
        base = out.set_index("segment").loc[ref]
        z = stats.norm.ppf(1 - alpha / 2)
        se = np.sqrt(out["se"] ** 2 + base["se"] ** 2)
        out["difference"] = out["rmst"] - base["rmst"]
        out["difference_ci_low"] = out["difference"] - z * se
        out["difference_ci_high"] = out["difference"] + z * se
        out["p_value"] = 2 * stats.norm.sf(np.abs(out["difference"]) / se)
        out.loc[out["segment"] == ref, ["difference", "difference_ci_low", "difference_ci_high", "p_value"]] = np.nan
        out["reference"] = ref
    return out
