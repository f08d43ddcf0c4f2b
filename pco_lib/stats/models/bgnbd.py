"""The beta-geometric/NBD model (Fader, Hardie & Lee 2005, "Counting your customers the easy way"):
purchases at Poisson rate λ ~ Gamma(r, α) while alive; after each purchase the customer drops out with
probability p ~ Beta(a, b).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import special

from .base import (
    ClvError,
    _array,
    _dot,
    _like,
    _PurchaseModel,
    _rfm_arrays,
    fail_if_any,
    positive_number,
    resolve_unit,
)


class _Rows:
    """Weighted (x, t_x, T) rows prepared for the likelihood: ``ix`` maps each row to its distinct
    frequency ``ux``, so the special functions (log Γ, log B, ψ), which depend on the row only through x,
    are evaluated once per distinct x instead of once per row; ``wu`` = total weight of each distinct x."""

    def __init__(self, x, tx, T, w):
        self.x, self.tx, self.T, self.w, self.wx = x, tx, T, w, w * x
        self.ux, self.ix = np.unique(x, return_inverse=True)
        self.wu = np.bincount(self.ix, weights=w, minlength=len(self.ux))
        self.total = float(w.sum())


def _bgnbd_terms(a, b, x):
    """BG/NBD drop-out terms per distinct x: ℓ₂ = log B(a, b+x)/B(a, b) (alive at T) and
    ℓ₃ = δ(x>0) log B(a+1, b+x−1)/B(a, b) (dropped out right after the last purchase; −∞ for x = 0),
    with their derivatives (∂a, ∂b), using ∂/∂a log B(a, b) = ψ(a) − ψ(a+b)."""
    psi = special.digamma
    rep = x > 0
    xm1 = np.where(rep, x - 1, 0.0)
    l2 = special.betaln(a, b + x) - special.betaln(a, b)
    l3 = np.where(rep, special.betaln(a + 1, b + xm1) - special.betaln(a, b), -np.inf)
    s, d_a0, d_b0 = psi(a + b + x), psi(a) - psi(a + b), psi(b) - psi(a + b)
    g2 = (psi(a) - s - d_a0, psi(b + x) - s - d_b0)
    g3 = (np.where(rep, psi(a + 1) - s - d_a0, 0.0), np.where(rep, psi(b + xm1) - s - d_b0, 0.0))
    return l2, l3, g2, g3


def _bg_family_loglik(theta, rows: _Rows, terms) -> tuple[float, np.ndarray]:
    """Weighted log-likelihood and gradient of the BG/NBD family, whose likelihood of a row is

    L = Γ(r+x) α^r / Γ(r) · [e^ℓ₂(x) / (α+T)^(r+x) + e^ℓ₃(x) / (α+t_x)^(r+x)]

    with the drop-out terms ℓ₂, ℓ₃ of the model from ``terms(a, b, ux)`` (see :func:`_bgnbd_terms`).
    With d = ℓ₃ − ℓ₂ + (r+x) log((α+T)/(α+t_x)), the log of the bracket is
    ℓ₂ − (r+x) log(α+T) + log(1 + e^d), and π = 1/(1 + e^−d) is the share of the second term. Then

    ∂r = ψ(r+x) − ψ(r) + log α − log(α+T) + π log((α+T)/(α+t_x)),
    ∂α = r/α − (r+x) ((1−π)/(α+T) + π/(α+t_x)),
    ∂a = (1−π) ∂ℓ₂/∂a + π ∂ℓ₃/∂a, and likewise ∂b;

    everything summed with the row weights; the parts that depend only on x are summed once per distinct x
    (with the weight of the x, or the π-weighted weight). Per row this takes two logs, one exp and one log1p.
    """
    r, alpha, a, b = theta
    ux, ix, w = rows.ux, rows.ix, rows.w
    l2, l3, g2, g3 = terms(a, b, ux)
    rx = r + rows.x
    a_T, a_tx = alpha + rows.T, alpha + rows.tx
    log_T = np.log(a_T)
    log_ratio = log_T - np.log(a_tx)  # log((α+T)/(α+t_x))
    d = (l3 - l2)[ix] + rx * log_ratio  # −inf when ℓ₃ = −∞ (BG/NBD, x = 0)
    e = np.exp(-np.abs(d))
    softplus = np.maximum(d, 0.0) + np.log1p(e)  # log(1 + e^d)
    pi = np.where(d > 0, 1.0, e) / (1.0 + e)  # e^d / (1 + e^d)
    w_pi = w * pi
    s3 = np.bincount(ix, weights=w_pi, minlength=len(ux))  # π-weighted weight of each distinct x
    s2 = rows.wu - s3
    n, psi = rows.total, special.digamma
    w_log_T, wx_log_T = _dot(w, log_T), _dot(rows.wx, log_T)
    ll = (rows.wu @ (special.gammaln(r + ux) - special.gammaln(r) + l2) + n * r * math.log(alpha)
          - r * w_log_T - wx_log_T + _dot(w, softplus))
    d_r = (rows.wu @ (psi(r + ux) - psi(r)) + n * math.log(alpha) - w_log_T
           + _dot(w_pi, log_ratio))
    d_alpha = n * r / alpha - _dot(rx, (w - w_pi) / a_T + w_pi / a_tx)
    d_a = s2 @ g2[0] + s3 @ g3[0]
    d_b = s2 @ g2[1] + s3 @ g3[1]
    return float(ll), np.array([d_r, d_alpha, d_a, d_b])


def _bgnbd_loglik(theta, rows: _Rows) -> tuple[float, np.ndarray]:
    """Weighted BG/NBD log-likelihood and its gradient (FHL 2005, eq. 6, summed in log space):

    L = B(a, b+x)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+T)^(r+x))
        + δ(x>0) B(a+1, b+x−1)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+t_x)^(r+x)).
    """
    return _bg_family_loglik(theta, rows, _bgnbd_terms)


class BGNBD(_PurchaseModel):
    """Beta-geometric/NBD model (Fader, Hardie & Lee 2005), fitted by maximum likelihood.

    Parameters after ``fit``: ``r_``, ``alpha_`` (purchase rate λ ~ Gamma(shape r, rate α), α in the time
    unit of recency/T), ``a_``, ``b_`` (drop-out probability p ~ Beta(a, b)); ``log_likelihood_``,
    ``summary`` (coef, se(coef), 95% bounds from the inverse Hessian), ``covariance_``, ``n_`` (total weight),
    ``time_unit_days_`` (days per time unit; None when fitted on bare arrays without ``time_unit_days``).
    Fit with ``fit(x, t_x, T, weights, time_unit_days=7.0)`` or ``fit_rfm(rfm_table(...))``.
    """

    _param_names = ("r", "alpha", "a", "b")
    _model = "BG/NBD"
    _loglik = staticmethod(lambda theta, rows: _bgnbd_loglik(theta, rows))
    _shift = 0  # MBG/NBD: 1 (drop-out also possible right after the first purchase)

    def _fit_arrays(self, x, tx, t, w) -> None:
        rows = _Rows(x, tx, t, w)

        def loglik(theta):
            return self._loglik(theta, rows)

        self._fit_ml(loglik, np.ones(4), w.sum())

    def _log_odds_dead(self, x, tx, T) -> np.ndarray:
        """log of δ(x>0) a/(b+x−1) ((α+T)/(α+t_x))^(r+x); −inf when x = 0."""
        r, alpha, a, b = self.r_, self.alpha_, self.a_, self.b_
        rep = x > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            val = (np.log(a) - np.log(b + np.where(rep, x - 1, 0))
                   + (r + x) * (np.log(alpha + T) - np.log(alpha + tx)))
        return np.where(rep, val, -np.inf)

    def probability_purchase(self, t, frequency, recency, T):
        """P(at least one purchase in (T, T + t] | x, t_x, T) = P(alive) · [1 − ((α+T)/(α+T+t))^(r+x)].

        Alive at T, a customer cannot drop out before the next purchase (drop-out happens only at purchases),
        and the purchase rate of an alive customer is λ ~ Gamma(r+x, α+T) a posteriori, so
        P(no purchase in t | alive) = E[e^(−λt)] = ((α+T)/(α+T+t))^(r+x). ``t`` in the fitted time unit."""
        self._check_fitted()
        x, tx, T_ = _rfm_arrays(frequency, recency, T)
        tt = np.broadcast_to(_array(t, "t"), x.shape).astype("float64")
        fail_if_any("t", "finite and ≥ 0", ~np.isfinite(tt) | (tt < 0), tt)
        alive = special.expit(-self._log_odds_dead(x, tx, T_))
        none = np.exp((self.r_ + x) * (np.log(self.alpha_ + T_) - np.log(self.alpha_ + T_ + tt)))
        return _like(alive * (1 - none), frequency, recency, T)

    def survival(self, t):
        """P(a new customer is still alive t time units after the first purchase) = E_p[(α/(α+p·t))^r]:
        drop-out at purchases with probability p thins the Poisson(λ) purchases, so the lifetime given (λ, p)
        is exponential with rate λp (plus, for MBG/NBD, drop-out at the first purchase with probability p)."""
        self._check_fitted()
        tt = _array(t, "t")
        fail_if_any("t", "finite and ≥ 0", ~np.isfinite(tt) | (tt < 0), tt)
        r, alpha = self.r_, self.alpha_
        out = np.array([self._expect_p(lambda p, v=v: (alpha / (alpha + p * v)) ** r) for v in tt])
        return _like(out, t)

    def expected_lifetime(self, max_days: float) -> float:
        """Restricted mean lifetime of a new customer in days, ∫₀^H S(t) dt with the horizon H = ``max_days``
        (the mean itself is infinite unless r > 1 and a > 1). Needs the fitted time unit."""
        self._check_fitted()
        horizon = positive_number(max_days, "max_days")
        unit = resolve_unit([("the model", getattr(self, "time_unit_days_", None))], "the model")
        h = horizon / unit
        r, alpha = self.r_, self.alpha_

        def integral(p):  # ∫₀^h (α/(α+pt))^r dt
            if p * h < 1e-10 * alpha:
                return h
            if abs(r - 1) < 1e-10:
                return alpha / p * math.log1p(p * h / alpha)
            return alpha / (p * (1 - r)) * ((1 + p * h / alpha) ** (1 - r) - 1)

        return float(self._expect_p(integral) * unit)

    def _expect_p(self, g: Callable[[float], float]) -> float:
        """E[g(p) · (1−p)^shift] over p ~ Beta(a, b) by quadrature (MBG/NBD: also alive after the first purchase)."""
        from scipy import integrate

        a, b, k = self.a_, self.b_, self._shift
        log_norm = special.betaln(a, b)

        def f(p):
            return g(p) * math.exp((a - 1) * math.log(p) + (b + k - 1) * math.log1p(-p) - log_norm)

        val = 0.0
        for lo, hi in ((0.0, 1e-6), (1e-6, 0.5), (0.5, 1.0)):
            val += integrate.quad(f, lo, hi, limit=200)[0]
        return val

    def probability_alive(self, frequency, recency, T):
        """P(alive at T | x, t_x, T) = 1 / (1 + δ(x>0) a/(b+x−1) ((α+T)/(α+t_x))^(r+x))  (FHL 2005)."""
        self._check_fitted()
        x, tx, t = _rfm_arrays(frequency, recency, T)
        return _like(special.expit(-self._log_odds_dead(x, tx, t)), frequency, recency, T)

    def expected_purchases(self, t, frequency, recency, T):
        """Expected purchases in (T, T + t] for a customer with history (x, t_x, T) — FHL 2005 eq. 10:

        E[Y(t) | x, t_x, T] = (a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) ₂F₁(r+x, b+x; a+b+x−1; t/(α+T+t))]
                              / (1 + δ(x>0) a/(b+x−1) ((α+T)/(α+t_x))^(r+x)).

        ``t`` (scalar or one value per customer) is in the fitted time unit."""
        self._check_fitted()
        x, tx, T_ = _rfm_arrays(frequency, recency, T)
        tt = np.broadcast_to(_array(t, "t"), x.shape).astype("float64")
        fail_if_any("t", "finite and ≥ 0", ~np.isfinite(tt) | (tt < 0), tt)
        r, alpha, a, b = self.r_, self.alpha_, self.a_, self.b_ + self._shift
        z = tt / (alpha + T_ + tt)
        with np.errstate(divide="ignore", invalid="ignore"):
            hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
            body = 1 - np.exp((r + x) * (np.log(alpha + T_) - np.log(alpha + T_ + tt))) * hyp
            out = (a + b + x - 1) / (a - 1) * body * special.expit(-self._log_odds_dead(x, tx, T_))
        out = np.where(tt == 0, 0.0, out)
        if not np.all(np.isfinite(out)):
            raise ClvError("expected purchases are not finite for some customers (hypergeometric overflow)")
        return _like(out, frequency, recency, T)

    def expected_purchases_new(self, t):
        """Expected purchases of a new customer in (0, t] (after the first purchase) — FHL 2005 eq. 9:

        E[X(t)] = (a+b−1)/(a−1) · [1 − (α/(α+t))^r ₂F₁(r, b; a+b−1; t/(α+t))]."""
        self._check_fitted()
        tt = _array(t, "t")
        fail_if_any("t", "finite and ≥ 0", ~np.isfinite(tt) | (tt < 0), tt)
        r, alpha, a, b = self.r_, self.alpha_, self.a_, self.b_ + self._shift
        hyp = special.hyp2f1(r, b, a + b - 1, tt / (alpha + tt))
        out = (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + tt)) ** r * hyp)
        if self._shift:  # MBG/NBD: only the share b/(a+b) survives the first purchase
            out = out * self.b_ / (a + self.b_)
        return _like(out, t)
