"""The Gamma-Gamma model of average order value (Fader, Hardie & Lee 2005, "RFM and CLV"; Fader & Hardie
2013, "The Gamma-Gamma model of monetary value").
"""

from __future__ import annotations

import numpy as np
from scipy import special

from .base import ClvError, _array, _Fitter, _like, _maximize, _weights, fail_if_any


def _gg_loglik(theta, x, m, w) -> tuple[float, np.ndarray]:
    """Weighted Gamma-Gamma log-likelihood of the mean spend m over x repeat purchases (Fader & Hardie 2013):

    f(m | p, q, γ, x) = Γ(px+q) / (Γ(px) Γ(q)) · γ^q m^(px−1) x^(px) / (γ + m x)^(px+q).
    """
    p, q, g = theta
    px = p * x
    ll = (special.gammaln(px + q) - special.gammaln(px) - special.gammaln(q) + q * np.log(g)
          + (px - 1) * np.log(m) + px * np.log(x) - (px + q) * np.log(g + m * x))
    psi = special.digamma
    d_p = x * (psi(px + q) - psi(px) + np.log(m) + np.log(x) - np.log(g + m * x))
    d_q = psi(px + q) - psi(q) + np.log(g) - np.log(g + m * x)
    d_g = q / g - (px + q) / (g + m * x)
    return float(w @ ll), np.array([w @ d_p, w @ d_q, w @ d_g])


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

        def loglik(theta):
            return _gg_loglik(theta, x, m, w)

        start = np.array([1.0, 1.0, float(np.average(m, weights=w))])
        theta = _maximize(loglik, start, w.sum(), self._model, self.max_iter)
        self._store(theta, loglik, w.sum())
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
