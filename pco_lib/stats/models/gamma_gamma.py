"""The Gamma-Gamma model of average order value (Fader, Hardie & Lee 2005, "RFM and CLV"; Fader & Hardie
2013, "The Gamma-Gamma model of monetary value").
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from .base import ClvError, _array, _dot, _Fitter, _like, _weights, fail_if_any


class _SpendRows:
    """Weighted (x, m) rows prepared for the Gamma-Gamma likelihood. Only log(γ + m·x) depends on both the
    row and the parameters; the log Γ and ψ terms depend on the row only through x and are evaluated once
    per distinct x (``ux``, each row's index ``ix``, total weight ``wu``), the log m terms are constant sums."""

    def __init__(self, x, m, w):
        self.w, self.mx, self.wx = w, m * x, w * x
        self.ux, ix = np.unique(x, return_inverse=True)
        self.wu = np.bincount(ix, weights=w, minlength=len(self.ux))
        self.total = float(w.sum())
        log_m = np.log(m)
        self.sum_log_m, self.sum_x_log_m = _dot(w, log_m), _dot(self.wx, log_m)


def _gg_loglik(theta, rows: _SpendRows) -> tuple[float, np.ndarray]:
    """Weighted Gamma-Gamma log-likelihood of the mean spend m over x repeat purchases (Fader & Hardie 2013):

    f(m | p, q, γ, x) = Γ(px+q) / (Γ(px) Γ(q)) · γ^q m^(px−1) x^(px) / (γ + m x)^(px+q),

    and its gradient, with s = γ + m x:
    ∂p = x (ψ(px+q) − ψ(px) + log m + log x − log s),  ∂q = ψ(px+q) − ψ(q) + log γ − log s,
    ∂γ = q/γ − (px+q)/s; each summed with the row weights.
    """
    p, q, g = theta
    ux, wu, n = rows.ux, rows.wu, rows.total
    pu = p * ux
    log_s = np.log(g + rows.mx)
    inv_s = 1.0 / (g + rows.mx)
    w_log_s, wx_log_s = _dot(rows.w, log_s), _dot(rows.wx, log_s)
    ll = (wu @ (special.gammaln(pu + q) - special.gammaln(pu) + pu * np.log(ux)) - n * special.gammaln(q)
          + n * q * math.log(g) + p * rows.sum_x_log_m - rows.sum_log_m - p * wx_log_s - q * w_log_s)
    psi = special.digamma
    d_p = (wu * ux) @ (psi(pu + q) - psi(pu) + np.log(ux)) + rows.sum_x_log_m - wx_log_s
    d_q = wu @ psi(pu + q) - n * psi(q) + n * math.log(g) - w_log_s
    d_g = n * q / g - p * _dot(rows.wx, inv_s) - q * _dot(rows.w, inv_s)
    return float(ll), np.array([d_p, d_q, d_g])


class GammaGamma(_Fitter):
    """Gamma-Gamma model of average order value (Fader, Hardie & Lee 2005 "RFM and CLV"; Fader & Hardie 2013).

    Spend per purchase z ~ Gamma(p, ν), ν ~ Gamma(q, γ) across customers, independent of the purchase
    process. Parameters after ``fit``: ``p_``, ``q_``, ``gamma_``; ``log_likelihood_``, ``summary``.
    The population mean order value is p·γ/(q−1) (:meth:`mean_spend`), defined for q > 1.
    """

    _param_names = ("p", "q", "gamma")
    _model = "Gamma-Gamma"

    def fit(self, frequency, monetary, weights=None) -> GammaGamma:
        """Fit on repeat customers only: ``frequency`` x > 0 repeat purchases with mean value ``monetary`` > 0
        (pass ``rfm[rfm.frequency > 0]``); ``weights`` = customers per row."""
        x, m = _array(frequency, "frequency"), _array(monetary, "monetary")
        if len(x) != len(m):
            raise ClvError(f"frequency and monetary must have the same length ({len(x)}, {len(m)})")
        if len(x) == 0:
            raise ClvError("no customers: frequency and monetary are empty")
        fail_if_any("frequency", "a whole number > 0 (fit Gamma-Gamma on repeat customers only)",
              ~np.isfinite(x) | (x <= 0) | (x != np.round(x)), x)
        fail_if_any("monetary", "finite and > 0", ~np.isfinite(m) | (m <= 0), m)
        w = _weights(weights, len(x))
        keep = w > 0
        x, m, w = x[keep], m[keep], w[keep]

        rows = _SpendRows(x, m, w)

        def loglik(theta):
            return _gg_loglik(theta, rows)

        start = np.array([1.0, 1.0, float(np.average(m, weights=w))])
        self._fit_ml(loglik, start, w.sum())
        return self

    def mean_spend(self) -> float:
        """Population mean order value E[Z] = p·γ/(q−1)."""
        self._check_fitted()
        if self.q_ <= 1:
            raise ClvError(f"the mean order value is infinite for q ≤ 1 (fitted q = {self.q_:.3g})")
        return self.p_ * self.gamma_ / (self.q_ - 1)

    def expected_spend(self, frequency, monetary):
        """Conditional expected order value given x repeat purchases of mean value m_x (Fader & Hardie 2013):

        E[Z | p, q, γ, m_x, x] = p (γ + x m_x) / (p x + q − 1)
                               = (q−1)/(px+q−1) · pγ/(q−1) + px/(px+q−1) · m_x,

        a weighted average of the population mean and the customer's own mean. For x = 0 this is the
        population mean (monetary may then be NaN)."""
        mean = self.mean_spend()
        x, m = _array(frequency, "frequency"), _array(monetary, "monetary")
        if len(x) != len(m):
            raise ClvError(f"frequency and monetary must have the same length ({len(x)}, {len(m)})")
        fail_if_any("frequency", "finite and ≥ 0", ~np.isfinite(x) | (x < 0), x)
        rep = x > 0
        fail_if_any("monetary", "finite and > 0 for customers with frequency > 0",
              rep & (~np.isfinite(m) | (m <= 0)), m)
        p, q = self.p_, self.q_
        own = np.where(rep, m, 0.0)
        weight = p * x / (p * x + q - 1)
        return _like((1 - weight) * mean + weight * own, frequency, monetary)
