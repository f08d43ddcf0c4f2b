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
    _like,
    _maximize,
    _PurchaseModel,
    _rfm_arrays,
    fail_if_any,
    positive_number,
    resolve_unit,
)


def _bgnbd_loglik(theta, x, tx, T, w) -> tuple[float, np.ndarray]:
    """Weighted BG/NBD log-likelihood and its gradient (FHL 2005, eq. 6, summed in log space):

    L = B(a, b+x)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+T)^(r+x))
        + δ(x>0) B(a+1, b+x−1)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+t_x)^(r+x)).
    """
    r, alpha, a, b = theta
    rep = x > 0
    xm1 = np.where(rep, x - 1, 0.0)
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    a2 = special.betaln(a, b + x) - special.betaln(a, b) - (r + x) * np.log(alpha + T)
    a3 = np.where(rep, special.betaln(a + 1, b + xm1) - special.betaln(a, b) - (r + x) * np.log(alpha + tx),
                  -np.inf)
    lse = np.logaddexp(a2, a3)
    ll = a1 + lse
    w2, w3 = np.exp(a2 - lse), np.exp(a3 - lse)
    psi = special.digamma
    d_r = psi(r + x) - psi(r) + np.log(alpha) - w2 * np.log(alpha + T) - w3 * np.log(alpha + tx)
    d_alpha = r / alpha - (r + x) * (w2 / (alpha + T) + w3 / (alpha + tx))
    d_a = w2 * (psi(a) - psi(a + b + x)) + w3 * (psi(a + 1) - psi(a + b + x)) - (psi(a) - psi(a + b))
    d_b = (w2 * (psi(b + x) - psi(a + b + x)) + np.where(rep, w3 * (psi(b + xm1) - psi(a + b + x)), 0.0)
           - (psi(b) - psi(a + b)))
    grad = np.array([w @ d_r, w @ d_alpha, w @ d_a, w @ d_b])
    return float(w @ ll), grad


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
    _loglik = staticmethod(lambda theta, x, tx, T, w: _bgnbd_loglik(theta, x, tx, T, w))
    _shift = 0  # MBG/NBD: 1 (drop-out also possible right after the first purchase)

    def _fit_arrays(self, x, tx, t, w) -> None:
        def loglik(theta):
            return self._loglik(theta, x, tx, t, w)

        theta = _maximize(loglik, np.ones(4), w.sum(), self._model, self.max_iter)
        self._store(theta, loglik, w.sum())

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
