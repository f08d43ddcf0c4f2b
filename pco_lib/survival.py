"""Survival-based churn: how long customers stay, which segments leave sooner, who is at risk now.

Lifetimes come out of the engine already aggregated to distinct (days, churned, segment, covariates) rows
with a count ``n``; every estimator below takes those counts as frequency weights, so a million customers
fit as fast as a few thousand, and the answers equal those from one row per customer.

Churn, by definition:

- **contractual**: a subscription ends. Lifetime = (ended_at − started_at) in days, rounded to whole days
  (at least 1); a subscription still running is censored at the end of the data.
- **non_contractual**: no order (or activity) for ``inactivity_days``. Lifetime = days from conversion to
  the last activity, counting the conversion day as day 1 (⌊Δ⌋ + 1). A customer whose last activity is
  less than ``inactivity_days`` before the end of the data is censored there, not churned.

Estimators:

- Kaplan–Meier with exponential Greenwood bands (lifelines), median lifetime with its interval, survival
  at fixed horizons, numbers at risk.
- Log-rank tests: overall and pairwise between segments, with Holm or Benjamini–Hochberg adjustment.
- Cox proportional hazards (lifelines, Efron ties, frequency weights); Harrell's concordance computed
  with the weights; the Grambsch–Therneau score test of proportional hazards (as in R's ``cox.zph``
  since survival 3.0: the score test for γ in β(t) = β + γ·g(t), g = 1 − KM), per covariate and global.
- Restricted mean survival time RMST(τ) = ∫₀^τ S(t) dt with the Greenwood-type variance
  Σ_{t_i ≤ τ} A_i² d_i / (n_i (n_i − d_i)), A_i = ∫_{t_i}^τ S(u) du (Klein & Moeschberger §4.5).
- Risk of churning in the next N days for customers still active at age a:
  1 − (S₀(a + N) / S₀(a))^{exp(x'β)} from the Cox model.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import ibis
import numpy as np
import pandas as pd
from scipy import stats

from .data import MISSING, DataError, DataSource, latest_timestamp
from .experiments import adjust_p_values

DEFINITIONS = ("contractual", "non_contractual")
HORIZONS = (30, 90, 180, 365)
OTHER = "other"
DAY_SECONDS = 86_400


class SurvivalError(ValueError):
    """Lifetimes cannot be analysed (no events, bad durations, unknown column or definition)."""


# --------------------------------------------------------------------------------------------------
# Engine: lifetimes aggregated to distinct rows
# --------------------------------------------------------------------------------------------------


def _memtable(frame):
    return ibis.memtable(frame) if isinstance(frame, pd.DataFrame) else frame


def _check_columns(columns: list[str], available: list[str], what: str) -> None:
    unknown = [c for c in columns if c not in available]
    if unknown:
        raise SurvivalError(f"unknown column {', '.join(map(repr, unknown))} for {what}; "
                            f"available: {', '.join(available)}")


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
            _check_columns(columns, list(s.columns), "subscriptions")
        _check_columns(extra, [x for x in c.columns if x != "customer_id"], "subscriptions or customers")
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
    _check_columns(columns, [x for x in c.columns if x != "customer_id"], "customers")
    until = pd.Timestamp(observed_until) if observed_until is not None else _timestamp_max(c.converted_at, a.at)
    last = a.group_by("customer_id").aggregate(last_at=a.at.max())
    j = c.left_join(last, c.customer_id == last.customer_id)
    last_at = ibis.greatest(j.converted_at, j.last_at.fill_null(j.converted_at))
    until_lit = ibis.literal(until.to_pydatetime())
    quiet = (until_lit.epoch_seconds() - last_at.epoch_seconds()) >= inactivity_days * DAY_SECONDS
    end = ibis.ifelse(quiet, last_at, until_lit)
    days = ((end.epoch_seconds() - j.converted_at.epoch_seconds()) / DAY_SECONDS).floor().cast("int64") + 1
    rows = j.filter(j.converted_at <= until_lit).select(
        customer_id=j.customer_id, days=days, churned=quiet.cast("int64"),
        **{col: _label(j[col]) for col in columns})
    return _finish(rows, columns, per_customer)


def summarize_lifetimes(source: DataSource, definition: str = "contractual", inactivity_days: int = 90,
                        activity: str = "order", columns: list[str] | tuple = (),
                        per_customer: bool = False) -> pd.DataFrame:
    """Lifetimes from the canonical tables under the chosen churn definition (see the module docstring)."""
    from .cohorts import activity_table

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


# --------------------------------------------------------------------------------------------------
# Kaplan–Meier
# --------------------------------------------------------------------------------------------------


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
        fitters[name] = KaplanMeierFitter(label=name, alpha=alpha).fit(part["days"], part["churned"],
                                                                        weights=part["n"])
    return SurvivalCurves(fitters, segment, alpha)


# --------------------------------------------------------------------------------------------------
# Log-rank
# --------------------------------------------------------------------------------------------------


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
    overall = multivariate_logrank_test(counts["days"], counts[segment].astype(str), counts["churned"],
                                        weights=counts["n"])
    rows = [{"comparison": "all groups", "group_a": "", "group_b": "", "statistic": float(overall.test_statistic),
             "df": len(groups) - 1, "p_value": float(overall.p_value)}]
    for (a, pa_), (b, pb) in combinations(groups, 2):
        r = logrank_test(pa_["days"], pb["days"], pa_["churned"], pb["churned"], weights_A=pa_["n"],
                         weights_B=pb["n"])
        rows.append({"comparison": f"{a} vs {b}", "group_a": a, "group_b": b,
                     "statistic": float(r.test_statistic), "df": 1, "p_value": float(r.p_value)})
    out = pd.DataFrame(rows)
    pair = out.index > 0
    out["p_value_adjusted"] = out["p_value"]
    out.loc[pair, "p_value_adjusted"] = adjust_p_values(out.loc[pair, "p_value"].tolist(), correction)
    return out


# --------------------------------------------------------------------------------------------------
# Cox proportional hazards
# --------------------------------------------------------------------------------------------------


def design_matrix(counts: pd.DataFrame, covariates: list[str]) -> tuple[pd.DataFrame, dict[str, list[str]],
                                                                         dict[str, str]]:
    """One-hot encode categorical covariates against their most common level (numeric ones stay as they are).

    Returns the design (columns ``covariate=level``), the design columns of each covariate and the
    reference level of each categorical covariate.
    """
    parts, terms, reference = [], {}, {}
    for cov in covariates:
        col = counts[cov]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            parts.append(col.astype(float).rename(cov))
            terms[cov] = [cov]
            continue
        sizes = counts.groupby(cov)["n"].sum().sort_values(ascending=False, kind="stable")
        reference[cov] = str(sizes.index[0])
        levels = [str(v) for v in sizes.index[1:]]
        names = [f"{cov}={level}" for level in levels]
        parts.append(pd.DataFrame({name: (col.astype(str) == level).astype(float)
                                   for name, level in zip(names, levels)}, index=counts.index))
        terms[cov] = names
    design = pd.concat(parts, axis=1) if parts else pd.DataFrame(index=counts.index)
    return design, terms, reference


def weighted_concordance(days, churned, weights, risk) -> float:
    """Harrell's C with frequency weights, matching ``lifelines.utils.concordance_index`` on expanded rows.

    A pair is comparable when the earlier lifetime ended in churn (a churn and a censoring at the same
    time count, two churns at the same time do not); concordant when the earlier one has the higher risk;
    tied risks count one half.
    """
    days, churned = np.asarray(days, float), np.asarray(churned, bool)
    w, risk = np.asarray(weights, float), np.asarray(risk, float)
    dead = churned & (w > 0)
    t_dead, w_dead, r_dead = days[dead], w[dead], risk[dead]
    pairs = correct = tied = 0.0
    for level in np.unique(risk):
        at = risk == level
        death_times = np.sort(days[at & churned])
        death_w = w[at & churned][np.argsort(days[at & churned], kind="stable")]
        cens_times = np.sort(days[at & ~churned])
        cens_w = w[at & ~churned][np.argsort(days[at & ~churned], kind="stable")]
        later_deaths = _weight_from(death_times, death_w, t_dead, strict=True)
        later_cens = _weight_from(cens_times, cens_w, t_dead, strict=False)
        partners = w_dead * (later_deaths + later_cens)
        pairs += partners.sum()
        correct += partners[r_dead > level].sum()
        tied += partners[r_dead == level].sum()
    if pairs == 0:
        return float("nan")
    return float((correct + 0.5 * tied) / pairs)


def _weight_from(sorted_times, sorted_weights, at, strict: bool) -> np.ndarray:
    """Total weight of ``sorted_times`` greater than (strict) or at least each value of ``at``."""
    tail = np.concatenate([np.cumsum(sorted_weights[::-1])[::-1], [0.0]])
    idx = np.searchsorted(sorted_times, at, side="right" if strict else "left")
    return tail[idx]


def proportional_hazards_test(days, churned, weights, design: pd.DataFrame, beta, terms: dict[str, list[str]],
                              survival_at) -> pd.DataFrame:
    """Grambsch–Therneau score test of proportional hazards, per term and global (R ``cox.zph``, survival ≥ 3).

    For β(t) = β + γ·g(t), g(t) = 1 − KM(t−) (the curve just before t, as R does), the score for γ at
    (β̂, 0) is U = Σ_k g_k r_k, r_k = Σ_{deaths at t_k} x − Σ_l x̄_kl (the Schoenfeld residual), and its
    information, adjusted for β, is I_γγ − I_γβ I_ββ⁻¹ I_βγ with I_ββ = Σ_k I_k, I_γβ = Σ_k g_k I_k,
    I_γγ = Σ_k g_k² I_k (x̄_kl and I_k = Σ_l V_kl: means and covariances of x over the risk set weighted by
    w·exp(x'β̂), as in the fit). Tied times are handled the Efron way, as in the fit and in R: the l-th of d tied
    churns sees the tied churners weighted by 1 − l/d. Statistic U' I⁻¹ U ~ χ²(number of columns).
    """
    t = np.asarray(days, float)
    e = np.asarray(churned, bool)
    w = np.asarray(weights, float)
    names = list(design.columns)
    order = np.argsort(t, kind="stable")
    t, e, w = t[order], e[order], w[order]
    x = design.to_numpy(float)[order]
    x = x - np.average(x, axis=0, weights=w)  # centring changes neither residuals nor information
    *_, event_times, residual, info_k = _efron_terms(t, e, w, x, np.asarray(beta, float), per_time=True)
    g = 1 - np.asarray(survival_at(event_times), float)  # survival_at: S(t−), e.g. _overall_km(counts)
    u = (residual * g[:, None]).sum(axis=0)
    i_bb = info_k.sum(axis=0)
    i_gb = (g[:, None, None] * info_k).sum(axis=0)
    i_gg = (g[:, None, None] ** 2 * info_k).sum(axis=0)
    info = i_gg - i_gb @ np.linalg.solve(i_bb, i_gb.T)
    rows = []
    for term, cols in [*terms.items(), ("global", names)]:
        idx = [names.index(c) for c in cols]
        stat = float(u[idx] @ np.linalg.solve(info[np.ix_(idx, idx)], u[idx]))
        rows.append({"covariate": term, "statistic": stat, "df": len(idx),
                     "p_value": float(stats.chi2.sf(stat, len(idx)))})
    return pd.DataFrame(rows)


PH_ADVICE = ("its effect changes over time: stratify the model by it (lifelines CoxPHFitter(strata=[...])) "
             "or add an interaction with time; read its hazard ratio as an average over the period")


def _efron_terms(t, e, w, x, beta, per_time: bool = False):
    """Log partial likelihood, score and information of the Cox model with Efron ties and frequency weights;
    with ``per_time``, also the churn times and each one's score residual and information contribution
    (for the proportional-hazards test).

    Rows sorted by time. At each churn time with d churned customers (Σ weights), death sums D₀, D₁, D₂ and
    risk-set sums S₀, S₁, S₂ of w·exp(x'β)·(1, x, xx'), the contribution is Σ_deaths w·x'β −
    Σ_{l<d} log(S₀ − (l/d)·D₀) — exactly what one row per customer gives (the sums over l reduce to scalars).
    """
    phi = w * np.exp(x @ beta)
    times, first = np.unique(t, return_index=True)
    def by_time(values):
        return np.add.reduceat(values, first, axis=0)
    def risk_set(values):
        return np.cumsum(by_time(values)[::-1], axis=0)[::-1]
    outer = x[:, :, None] * x[:, None, :]
    s0, s1, s2 = risk_set(phi), risk_set(phi[:, None] * x), risk_set(phi[:, None, None] * outer)
    dphi = np.where(e, phi, 0.0)
    d0, d1, d2 = by_time(dphi), by_time(dphi[:, None] * x), by_time(dphi[:, None, None] * outer)
    deaths = by_time(np.where(e, w, 0.0))
    xsum = by_time(np.where(e, w, 0.0)[:, None] * x)
    k = np.flatnonzero(deaths > 0)
    d = np.rint(deaths[k]).astype(np.int64)
    owner = np.repeat(np.arange(k.size), d)
    c = (np.arange(owner.size) - np.repeat(np.cumsum(d) - d, d)) / np.repeat(d, d)
    q = s0[k][owner] - c * d0[k][owner]
    def sum_over_ties(values):
        return np.bincount(owner, values, minlength=k.size)
    a0, a1 = sum_over_ties(1 / q), sum_over_ties(c / q)
    b0, b1, b2 = sum_over_ties(1 / q**2), sum_over_ties(c / q**2), sum_over_ties(c**2 / q**2)
    loglik = float(xsum[k].sum(axis=0) @ beta - np.log(q).sum())
    S1, D1 = s1[k], d1[k]
    residual = xsum[k] - (S1 * a0[:, None] - D1 * a1[:, None])  # Σ_deaths x − Σ_l x̄_l at each churn time
    cross = S1[:, :, None] * D1[:, None, :]
    info_k = (s2[k] * a0[:, None, None] - d2[k] * a1[:, None, None]
              - (S1[:, :, None] * S1[:, None, :] * b0[:, None, None] - (cross + cross.transpose(0, 2, 1))
                 * b1[:, None, None] + D1[:, :, None] * D1[:, None, :] * b2[:, None, None]))
    if per_time:
        return loglik, residual.sum(axis=0), info_k.sum(axis=0), times[k], residual, info_k
    return loglik, residual.sum(axis=0), info_k.sum(axis=0)


def cox_efron(days, churned, weights, design: pd.DataFrame, max_iter: int = 50, tol: float = 1e-9):
    """Newton–Raphson fit of the Cox model (Efron ties, frequency weights); returns β, covariance, log partial
    likelihood and the Breslow cumulative baseline hazard at each churn time, for covariates centred at
    their weighted mean (as lifelines does)."""
    w = np.asarray(weights, float)
    if not np.allclose(w, np.rint(w)):
        raise SurvivalError("Cox weights are counts of customers and must be whole numbers")
    order = np.argsort(np.asarray(days, float), kind="stable")
    t = np.asarray(days, float)[order]
    e = np.asarray(churned, bool)[order]
    w = w[order]
    mean = np.average(design.to_numpy(float), axis=0, weights=np.asarray(weights, float))
    x = design.to_numpy(float)[order] - mean
    beta = np.zeros(x.shape[1])
    loglik, score, info = _efron_terms(t, e, w, x, beta)
    for _ in range(max_iter):
        step = np.linalg.solve(info, score)
        for _halving in range(30):
            new = _efron_terms(t, e, w, x, beta + step)
            if new[0] >= loglik - 1e-12:
                break
            step /= 2
        beta = beta + step
        converged = abs(new[0] - loglik) < tol * (1 + abs(loglik)) and np.max(np.abs(step)) < 1e-6
        loglik, score, info = new
        if converged:
            break
    else:
        raise SurvivalError("the Cox model did not converge; a covariate level may have no churn at all")
    if np.any(np.abs(beta) > 15):
        wild = [str(c) for c, b in zip(design.columns, beta) if abs(b) > 15]
        raise SurvivalError(f"the Cox model did not converge: {', '.join(wild)} separate(s) churners from the rest "
                            "(a level with no churn or only churn); merge or drop it")
    phi = w * np.exp(x @ beta)
    times, first = np.unique(t, return_index=True)
    at_risk = np.cumsum(np.add.reduceat(phi, first)[::-1])[::-1]
    deaths = np.add.reduceat(np.where(e, w, 0.0), first)
    keep = deaths > 0
    baseline = pd.Series(np.cumsum(deaths[keep] / at_risk[keep]), index=times[keep], name="cumulative_hazard")
    return beta, np.linalg.inv(info), loglik, baseline, mean


@dataclass
class CoxResult:
    """A Cox model fitted on aggregated lifetimes (Efron ties, frequency weights)."""

    params: pd.Series  # β per design column
    covariance: pd.DataFrame
    log_likelihood: float
    baseline_hazard: pd.Series  # Breslow cumulative hazard at churn times, covariates at their mean
    mean: pd.Series  # weighted mean of each design column (the centring of the baseline)
    summary: pd.DataFrame  # covariate, level, reference, hazard_ratio, ci_low, ci_high, p_value, customers
    concordance: float
    ph_test: pd.DataFrame  # covariate, statistic, df, p_value, violates, advice
    terms: dict[str, list[str]]
    reference: dict[str, str]
    customers: int
    churned: int

    @property
    def standard_errors(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.covariance)), index=self.params.index)

    def design(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model's design columns for rows of ``frame`` holding the covariates."""
        out = pd.DataFrame(0.0, index=frame.index, columns=self.params.index)
        for cov, cols in self.terms.items():
            for col in cols:
                out[col] = ((frame[cov].astype(str) == col.split("=", 1)[1]).astype(float)
                            if "=" in col else frame[cov].astype(float))
        return out

    def partial_hazard(self, frame: pd.DataFrame) -> np.ndarray:
        """exp((x − x̄)'β) for rows of ``frame``."""
        return np.exp((self.design(frame) - self.mean).to_numpy() @ self.params.to_numpy())

    def baseline_survival(self, days) -> np.ndarray:
        """S₀(t) = exp(−H₀(t)) at the mean covariates, a step function of ``days``."""
        h = self.baseline_hazard.asof(np.asarray(days, float)).fillna(0.0).to_numpy()
        return np.exp(-h)


def fit_cox(counts: pd.DataFrame, covariates: list[str], alpha: float = 0.05, ph_alpha: float = 0.05) -> CoxResult:
    """Cox proportional hazards on aggregated lifetimes (frequency weights n), with hazard ratios, weighted
    concordance and the proportional-hazards check."""
    check_lifetimes(counts)
    if not covariates:
        raise SurvivalError("a Cox model needs at least one covariate")
    _check_columns(covariates, [c for c in counts.columns if c not in ("days", "churned", "n")], "the Cox model")
    counts = counts[counts["n"] > 0].reset_index(drop=True)
    design, terms, reference = design_matrix(counts, covariates)
    constant = [c for c in design.columns if design[c].nunique() < 2]
    if constant:
        raise SurvivalError(f"covariate column(s) {', '.join(constant)} take a single value; drop them")
    with_intercept = np.column_stack([np.ones(len(design)), design.to_numpy(float)])
    if np.linalg.matrix_rank(with_intercept) < with_intercept.shape[1]:
        raise SurvivalError(f"the covariates {', '.join(covariates)} are redundant (one is determined by the others, "
                            "e.g. plan and its price); keep only one of them")
    beta, cov, loglik, baseline, mean = cox_efron(counts["days"], counts["churned"], counts["n"], design)
    names = list(design.columns)
    se = np.sqrt(np.diag(cov))
    z = stats.norm.ppf(1 - alpha / 2)
    rows = []
    for term, cols in terms.items():
        for col in cols:
            i = names.index(col)
            rows.append({"covariate": term, "level": col.split("=", 1)[1] if "=" in col else "(per unit)",
                         "reference": reference.get(term, ""), "hazard_ratio": float(np.exp(beta[i])),
                         "ci_low": float(np.exp(beta[i] - z * se[i])), "ci_high": float(np.exp(beta[i] + z * se[i])),
                         "p_value": float(2 * stats.norm.sf(abs(beta[i]) / se[i])),
                         "customers": int(counts.loc[design[col] != 0, "n"].sum()) if "=" in col else np.nan})
    concordance = weighted_concordance(counts["days"], counts["churned"], counts["n"], design.to_numpy(float) @ beta)
    ph = proportional_hazards_test(counts["days"], counts["churned"], counts["n"], design, beta, terms,
                                   survival_at=_overall_km(counts))
    ph["violates"] = ph["p_value"] < ph_alpha
    ph["advice"] = np.where(ph["violates"] & (ph["covariate"] != "global"), PH_ADVICE, "")
    return CoxResult(pd.Series(beta, index=names), pd.DataFrame(cov, index=names, columns=names), loglik, baseline,
                     pd.Series(mean, index=names), pd.DataFrame(rows), concordance, ph, terms, reference,
                     int(counts["n"].sum()), int((counts["n"] * counts["churned"]).sum()))


def _overall_km(counts: pd.DataFrame):
    """S(t−) of the pooled Kaplan–Meier fit — the curve just before each time — as a function of event times
    (the cox.zph 'km' transform)."""
    from lifelines import KaplanMeierFitter

    kmf = KaplanMeierFitter().fit(counts["days"], counts["churned"], weights=counts["n"])
    sf = kmf.survival_function_.iloc[:, 0]
    return lambda times: sf.asof(np.nextafter(np.asarray(times, float), -np.inf)).fillna(1.0).to_numpy()


# --------------------------------------------------------------------------------------------------
# Restricted mean survival time
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Risk of churning soon, for customers still active
# --------------------------------------------------------------------------------------------------


def churn_risk(cox: CoxResult, active: pd.DataFrame, within_days: int) -> pd.DataFrame:
    """P(churn within the next ``within_days`` | still active at age ``days``) for each row of ``active``
    (columns days and the model's covariates; other columns such as customer_id are kept).

    1 − (S₀(a + N)/S₀(a))^{exp(x'β)}, S₀ the Breslow baseline; ages beyond the longest observed lifetime use
    the last value of S₀ (the risk there is a lower bound, flagged in ``beyond_data``).
    """
    if within_days < 1:
        raise SurvivalError("the risk window must be at least 1 day")
    last = float(cox.baseline_hazard.index.max())
    distinct = active.drop_duplicates(["days", *cox.terms]).reset_index(drop=True)
    s_now = cox.baseline_survival(distinct["days"])
    s_then = cox.baseline_survival(np.minimum(distinct["days"].to_numpy(float) + within_days, last))
    hazard = cox.partial_hazard(distinct)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(s_now > 0, s_then / s_now, 1.0)
    distinct["churn_probability"] = 1 - ratio**hazard
    distinct["beyond_data"] = distinct["days"] + within_days > last
    keep = ["days", *cox.terms, "churn_probability", "beyond_data"]
    return active.merge(distinct[keep], on=["days", *cox.terms], how="left")


# --------------------------------------------------------------------------------------------------
# The report's readout
# --------------------------------------------------------------------------------------------------


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
    from .privacy import suppress_small_cells

    labels = [f"{lo:.0%}–{hi:.0%}" for lo, hi in zip(RISK_BANDS[:-1], RISK_BANDS[1:])]
    band = pd.cut(risk["churn_probability"], RISK_BANDS, labels=labels, include_lowest=True)
    out = (risk.assign(band=band).groupby("band", observed=False)["churn_probability"]
           .agg(customers="size", mean_probability="mean").reset_index())
    return suppress_small_cells(out, "customers", min_cell_size).drop(columns="suppressed")
