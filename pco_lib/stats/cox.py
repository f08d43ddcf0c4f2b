"""The Cox proportional-hazards model on aggregated lifetimes (frequency weights).

- Our own Newton–Raphson fit with Efron ties and frequency weights (equal to the fit on one row per customer;
  lifelines' weighted Efron is not), Harrell's concordance computed with the weights.
- The Grambsch–Therneau score test of proportional hazards (as in R's ``cox.zph`` since survival 3.0: the
  score test for γ in β(t) = β + γ·g(t), g = 1 − KM), per covariate and global.
- Risk of churning in the next N days for customers still active at age a:
  1 − (S₀(a + N) / S₀(a))^{exp(x'β)}.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .survival import SurvivalError, _arrays, check_columns, check_lifetimes


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
    check_columns(covariates, [c for c in counts.columns if c not in ("days", "churned", "n")], "the Cox model")
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

    days, churned, n = _arrays(counts)
    kmf = KaplanMeierFitter().fit(days, churned, weights=n)
    sf = kmf.survival_function_.iloc[:, 0]
    return lambda times: sf.asof(np.nextafter(np.asarray(times, float), -np.inf)).fillna(1.0).to_numpy()


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
