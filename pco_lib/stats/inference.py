"""Tests and intervals on sufficient statistics, following GrowthBook's gbstats conventions.

Every test works from per-arm counts n, Σx and Σx² (plus Σy, Σy² and Σxy for ratio metrics), so aggregates
from a warehouse can be fed in directly.

- Means and proportions: Welch's t-test with Welch–Satterthwaite degrees of freedom; a proportion's
  variance is p(1 − p).
- Relative lift Δ = μ_t/μ_c − 1 by the delta method: Var(Δ) ≈ σ²_t/(n_t μ²_c) + μ²_t σ²_c/(n_c μ⁴_c).
- Ratio metrics (Σx/Σy per arm, e.g. revenue per order) by the delta method with covariance:
  Var(R) ≈ (σ²_x/μ²_y − 2 μ_x σ_xy/μ³_y + μ²_x σ²_y/μ⁴_y) / n.
- CUPED with a pooled θ on a pre-period covariate.
- Sample ratio mismatch: χ² goodness of fit of the arm sizes against the planned weights (flag p < 0.001).
- Holm or Benjamini–Hochberg adjusted p-values.
- Minimum detectable effect at 80% power: (z_{1−α/2} + z_{0.8}) · SE; sample size for a target effect.
- Bayesian chance to beat control and expected loss under a Gaussian prior on the relative lift.
- One-sided non-inferiority tests against a relative margin.
- Always-valid confidence sequences (gbstats' asymptotic sequences) for results read while running.
- Differences before/after a change: proportions (Wald z) and means (Welch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

SRM_THRESHOLD = 0.001


class InferenceError(ValueError):
    """The numbers cannot support the test (too few customers, zero variance, a zero denominator)."""


@dataclass(frozen=True)
class ArmStats:
    """Sufficient statistics of one metric in one arm."""

    n: int
    sum: float
    sumsq: float

    @property
    def mean(self) -> float:
        return self.sum / self.n

    @property
    def var(self) -> float:
        """Sample variance (Σx² − n·x̄²)/(n − 1)."""
        return max((self.sumsq - self.n * self.mean**2) / (self.n - 1), 0.0)


@dataclass(frozen=True)
class Effect:
    """Treatment vs control on one metric."""

    metric: str
    variant: str
    control_mean: float
    treatment_mean: float
    effect: float  # absolute difference
    ci_low: float
    ci_high: float
    relative: float
    relative_ci_low: float
    relative_ci_high: float
    p_value: float
    se: float
    df: float
    mde: float  # smallest absolute effect detectable with 80% power at this sample size
    relative_se: float = float("nan")
    relative_p_value: float = float("nan")  # two-sided test of the relative lift, on the scale of its interval

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def welch(control: ArmStats | Moments, treatment: ArmStats | Moments, alpha: float = 0.05, metric: str = "",
          variant: str = "treatment") -> Effect:
    """Welch's t-test on the difference of means, and the delta-method interval and t-test of the relative
    lift Δ/ū_c (ū the unadjusted means, as gbstats: with CUPED the adjusted difference is divided by the raw
    control mean): Var ≈ σ²_t/(n_t ū²_c) + ū²_t σ²_c/(n_c ū⁴_c), on the same degrees of freedom."""
    for arm, name in ((control, "control"), (treatment, variant)):
        if arm.n < 2:
            raise InferenceError(f"{metric}: the {name} arm has {arm.n} customers; at least 2 are needed")
    vc, vt = control.var / control.n, treatment.var / treatment.n
    se2 = vc + vt
    if se2 == 0:
        raise InferenceError(f"{metric}: zero variance in both arms; there is nothing to test")
    df = se2**2 / (vc**2 / (control.n - 1) + vt**2 / (treatment.n - 1))
    se = np.sqrt(se2)
    diff = treatment.mean - control.mean
    t = stats.t.ppf(1 - alpha / 2, df)
    p = 2 * stats.t.sf(abs(diff / se), df)
    mc, mt = control.mean, treatment.mean
    uc, ut = _unadjusted(control), _unadjusted(treatment)
    rel, rel_se, rel_p = np.nan, np.nan, np.nan
    if uc != 0:  # as gbstats: (adjusted) difference over the control's unadjusted mean
        rel = diff / uc
        rel_se = np.sqrt(vt / uc**2 + ut**2 * vc / uc**4)
        rel_p = 2 * stats.t.sf(abs(rel / rel_se), df) if rel_se > 0 else np.nan
    mde = (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(0.8)) * se
    return Effect(metric, variant, mc, mt, diff, diff - t * se, diff + t * se, rel, rel - t * rel_se,
                  rel + t * rel_se, float(p), float(se), float(df), float(mde), float(rel_se), float(rel_p))


def _unadjusted(arm: ArmStats | Moments) -> float:
    """The arm's mean before any CUPED adjustment (what a relative lift is relative to)."""
    return arm.mean if getattr(arm, "unadjusted_mean", None) is None else arm.unadjusted_mean


@dataclass(frozen=True)
class Moments:
    """Mean and variance of one arm (what :func:`welch` needs), e.g. after CUPED adjustment."""

    n: int
    mean: float
    var: float
    unadjusted_mean: float | None = None  # the raw mean, when ``mean`` is CUPED-adjusted


def cuped(control: dict, treatment: dict) -> tuple[Moments, Moments, float]:
    """CUPED with a pooled θ (Deng et al. 2013; as in gbstats): θ = Cov(y, x)/Var(x) over both arms,
    adjusted mean ȳ − θ(x̄ − x̄_pooled), adjusted variance Var(y) − 2θ·Cov(y, x) + θ²·Var(x) per arm.

    Each arm: dict with n, y_sum, y_sumsq, x_sum, x_sumsq, xy_sum. Returns the adjusted control and treatment
    moments and the variance reduction achieved, 1 − Var(adjusted difference)/Var(difference).
    """
    n = control["n"] + treatment["n"]
    total = {k: control[k] + treatment[k] for k in ("y_sum", "x_sum", "x_sumsq", "xy_sum")}
    mx, my = total["x_sum"] / n, total["y_sum"] / n
    var_x = (total["x_sumsq"] - n * mx**2) / (n - 1)
    theta = (total["xy_sum"] - n * mx * my) / (n - 1) / var_x if var_x > 0 else 0.0
    adjusted, before = [], 0.0
    for arm in (control, treatment):
        k = arm["n"]
        ax, ay = arm["x_sum"] / k, arm["y_sum"] / k
        vx = (arm["x_sumsq"] - k * ax**2) / (k - 1)
        vy = (arm["y_sumsq"] - k * ay**2) / (k - 1)
        cxy = (arm["xy_sum"] - k * ax * ay) / (k - 1)
        adjusted.append(Moments(k, ay - theta * (ax - mx), max(vy - 2 * theta * cxy + theta**2 * vx, 0.0), ay))
        before += vy / k
    after = sum(m.var / m.n for m in adjusted)
    return adjusted[0], adjusted[1], float(1 - after / before) if before > 0 else 0.0


def ratio_effect(control: dict, treatment: dict, alpha: float = 0.05, metric: str = "revenue_per_order",
                 variant: str = "treatment") -> Effect:
    """Difference of ratio metrics Σx/Σy, as gbstats: each arm's ratio R = x̄/ȳ with its delta-method variance
    per customer σ²_R = σ²_x/ȳ² − 2 x̄ σ_xy/ȳ³ + x̄² σ²_y/ȳ⁴, then Welch's t-test with Welch–Satterthwaite
    degrees of freedom on (R, σ²_R, n) per arm, like any mean.

    Each arm: dict with n, x_sum, x_sumsq, y_sum, y_sumsq, xy_sum (per-customer numerator x, denominator y).
    """
    def moments(arm) -> Moments:
        n = arm["n"]
        mx, my = arm["x_sum"] / n, arm["y_sum"] / n
        vx = (arm["x_sumsq"] - n * mx**2) / (n - 1)
        vy = (arm["y_sumsq"] - n * my**2) / (n - 1)
        cxy = (arm["xy_sum"] - n * mx * my) / (n - 1)
        if my == 0:
            raise InferenceError(f"{metric}: the denominator is zero in one arm")
        return Moments(n, mx / my, max(vx / my**2 - 2 * mx * cxy / my**3 + mx**2 * vy / my**4, 0.0))

    return welch(moments(control), moments(treatment), alpha, metric, variant)


@dataclass(frozen=True)
class SampleRatio:
    """χ² goodness of fit of the arm sizes against the planned split."""

    observed: dict
    expected: dict
    p_value: float
    mismatch: bool

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"observed": self.observed, "expected": self.expected})


def sample_ratio_check(counts: dict[str, int], weights: dict[str, float],
                       threshold: float = SRM_THRESHOLD) -> SampleRatio:
    """χ² test of observed arm sizes against the planned weights; a mismatch at p < ``threshold``."""
    variants = sorted(weights)
    observed = np.array([counts.get(v, 0) for v in variants], dtype=float)
    w = np.array([weights[v] for v in variants], dtype=float)
    expected = observed.sum() * w / w.sum()
    p = float(stats.chisquare(observed, expected).pvalue)
    return SampleRatio(dict(zip(variants, observed.astype(int).tolist())),
                       dict(zip(variants, expected.tolist())), p, p < threshold)


CORRECTIONS = ("holm", "bh", "none")


def adjust_p_values(p_values: list[float], method: str = "holm") -> list[float]:
    """Holm (family-wise error) or Benjamini–Hochberg (false discovery rate) adjusted p-values; a NaN (a test
    that could not be computed) stays NaN and is left out of the family.

    With p₍₁₎ ≤ … ≤ p₍ₘ₎: Holm p̃₍ᵢ₎ = maxⱼ≤ᵢ min(1, (m − j + 1)·p₍ⱼ₎); BH p̃₍ᵢ₎ = minⱼ≥ᵢ min(1, m/j·p₍ⱼ₎)
    (equal to statsmodels' ``multipletests``, which is not used: it runs the garbage collector on every call).
    """
    if method not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, not {method!r}")
    p = np.asarray(p_values, float)
    known = np.flatnonzero(np.isfinite(p))
    if method == "none" or not known.size:
        return list(p_values)
    order = known[np.argsort(p[known], kind="stable")]
    m, rank = order.size, np.arange(1, order.size + 1)
    if method == "holm":
        adjusted = np.maximum.accumulate(np.minimum(1.0, (m - rank + 1) * p[order]))
    else:
        adjusted = np.minimum.accumulate(np.minimum(1.0, m / rank * p[order])[::-1])[::-1]
    out = p.copy()
    out[order] = adjusted
    return out.tolist()


def bayesian_lift(relative: float, relative_se: float, prior_sd: float = 0.0) -> tuple[float, float]:
    """Chance to beat control and expected loss of shipping, for the relative lift under a Gaussian prior.

    Prior δ ~ N(0, prior_sd²) — ``prior_sd = 0`` is the flat (improper) prior, GrowthBook's default —,
    likelihood N(δ̂, se²) → posterior N(m, s²) with 1/s² = 1/prior_sd² + 1/se² (flat: s = se), m = s²·δ̂/se².
    Chance to beat control = Φ(m/s); expected loss = E[max(0, −δ)] = s·φ(m/s) − m·Φ(−m/s) (gbstats' risk of
    the treatment).
    """
    if prior_sd < 0:
        raise ValueError(f"prior_sd must be ≥ 0 (0 for a flat prior), not {prior_sd!r}")
    if not np.isfinite(relative) or not relative_se > 0:
        return float("nan"), float("nan")
    precision = 1.0 / relative_se**2 + (1.0 / prior_sd**2 if prior_sd > 0 else 0.0)
    var = 1.0 / precision
    mean, sd = var * relative / relative_se**2, np.sqrt(var)
    chance = stats.norm.cdf(mean / sd)
    loss = sd * stats.norm.pdf(mean / sd) - mean * stats.norm.cdf(-mean / sd)
    return float(chance), float(loss)


def non_inferiority_p_value(effect: Effect, margin: float) -> float:
    """One-sided p-value of H0: treatment is worse than control by at least ``margin`` (relative to the
    control mean), i.e. H0: Δ ≤ −margin·μ_c against H1: Δ > −margin·μ_c (Welch t, or z for ratios)."""
    shift = margin * abs(effect.control_mean)
    statistic = (effect.effect + shift) / effect.se
    if np.isfinite(effect.df):
        return float(stats.t.sf(statistic, effect.df))
    return float(stats.norm.sf(statistic))


def sequential_interval(effect, se, n, alpha: float = 0.05, tuning: float = 5000.0):
    """Always-valid (asymptotic) confidence sequence for an effect, as in gbstats (Waudby-Smith et al. 2023,
    "Time-uniform central limit theory"): with per-customer variance s² = se²·n and
    ρ² = (−2 log α + log(−2 log α + 1)) / tuning, the half-width is
    s · √( 2(nρ² + 1)/(n²ρ²) · log(√(nρ² + 1)/α) ). It may be read after every new customer.
    Works on numbers or arrays (one value per look); returns (low, high)."""
    rho2 = (-2 * np.log(alpha) + np.log(-2 * np.log(alpha) + 1)) / tuning
    s = se * np.sqrt(n)
    half = s * np.sqrt(2 * (n * rho2 + 1) / (n**2 * rho2) * np.log(np.sqrt(n * rho2 + 1) / alpha))
    return effect - half, effect + half


def sample_size_per_arm(var_control: float, var_treatment: float, effect: float, alpha: float = 0.05,
                        power: float = 0.8) -> int:
    """Customers per arm to detect an absolute ``effect`` with a two-sided test:
    n = (z_{1−α/2} + z_power)² · (σ²_c + σ²_t) / effect²."""
    if effect == 0:
        raise ValueError("the target effect must not be zero")
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return int(np.ceil(z**2 * (var_control + var_treatment) / effect**2))


@dataclass(frozen=True)
class Difference:
    """A difference after − before with its interval and two-sided p-value."""

    metric: str
    before: float
    after: float
    n_before: int
    n_after: int
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([self.__dict__])


def difference_in_proportions(x0: int, n0: int, x1: int, n1: int, alpha: float = 0.05,
                              metric: str = "retention") -> Difference:
    """p1 − p0 with the unpooled Wald interval and z-test: SE = √(p0(1−p0)/n0 + p1(1−p1)/n1)."""
    if min(n0, n1) < 2:
        raise ValueError("each group needs at least two customers")
    p0, p1 = x0 / n0, x1 / n1
    se = np.sqrt(p0 * (1 - p0) / n0 + p1 * (1 - p1) / n1)
    diff = p1 - p0
    z = stats.norm.ppf(1 - alpha / 2)
    p = 2 * stats.norm.sf(abs(diff / se)) if se > 0 else (1.0 if diff == 0 else 0.0)
    return Difference(metric, p0, p1, n0, n1, diff, diff - z * se, diff + z * se, float(p), "Wald z-test")


def difference_in_means(n0: int, sum0: float, sumsq0: float, n1: int, sum1: float, sumsq1: float,
                        alpha: float = 0.05, metric: str = "revenue_per_customer") -> Difference:
    """Welch's t-test from sufficient statistics (count, sum, sum of squares), as for experiments."""
    e = welch(ArmStats(n0, sum0, sumsq0), ArmStats(n1, sum1, sumsq1), alpha, metric)
    return Difference(metric, e.control_mean, e.treatment_mean, n0, n1, e.effect, e.ci_low, e.ci_high, e.p_value,
                      "Welch t-test")


def welch_test(n1: float, mean1: float, var1: float, n2: float, mean2: float,
               var2: float) -> tuple[float, float, float]:
    """Welch's t-test of mean1 − mean2 from group moments: (t, Welch–Satterthwaite df, two-sided p); NaN when a
    group has fewer than two members or there is no variance (see :func:`welch`)."""
    if n1 < 2 or n2 < 2 or var1 / n1 + var2 / n2 <= 0:
        return math.nan, math.nan, math.nan
    e = welch(Moments(int(n2), mean2, var2), Moments(int(n1), mean1, var1))
    return e.effect / e.se, e.df, e.p_value
