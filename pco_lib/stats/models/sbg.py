"""The shifted-beta-geometric model of contractual retention (Fader & Hardie 2007, "How to project customer
retention"), with survival, retention rates and the discounted expected residual lifetime (Fader & Hardie
2010, "Customer-base valuation in a contractual setting").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import special

from .base import ClvError, _array, _Fitter, _like, fail_if_any, positive_number


def _sbg_loglik(theta, periods, lost, survivors, horizon) -> tuple[float, np.ndarray]:
    """sBG log-likelihood (Fader & Hardie 2007, eq. 7): Σ_t n_t log P(T = t) + n_alive log S(horizon), with
    P(T = t) = B(α+1, β+t−1)/B(α, β) and S(t) = B(α, β+t)/B(α, β)."""
    al, be = theta
    psi = special.digamma
    log_p = special.betaln(al + 1, be + periods - 1) - special.betaln(al, be)
    log_s = special.betaln(al, be + horizon) - special.betaln(al, be)
    ll = lost @ log_p + survivors * log_s
    base_a, base_b = psi(al) - psi(al + be), psi(be) - psi(al + be)
    d_a = lost @ (psi(al + 1) - psi(al + be + periods) - base_a) + survivors * (psi(al) - psi(al + be + horizon)
                                                                                  - base_a)
    d_b = lost @ (psi(be + periods - 1) - psi(al + be + periods) - base_b) + survivors * (
        psi(be + horizon) - psi(al + be + horizon) - base_b)
    return float(ll), np.array([d_a, d_b])


class ShiftedBetaGeometric(_Fitter):
    """Shifted-beta-geometric retention model for one cohort (Fader & Hardie 2007).

    Each customer churns at the end of each period with probability θ ~ Beta(α, β), so a fraction
    S(t) = B(α, β+t)/B(α, β) survives t periods and the retention rate at period t is
    r_t = S(t)/S(t−1) = (β+t−1)/(α+β+t−1), rising with t (sorting effect).
    Parameters after ``fit``: ``alpha_``, ``beta_``, ``log_likelihood_``, ``summary``.
    """

    _param_names = ("alpha", "beta")
    _model = "sBG"

    def fit(self, alive: Sequence[float]) -> ShiftedBetaGeometric:
        """Fit on the numbers alive at the start (period 0, the cohort size) and after each period 1…n."""
        n = _array(alive, "alive")
        if len(n) < 2:
            raise ClvError("alive needs the cohort size and at least one later count")
        fail_if_any("alive", "finite and ≥ 0", ~np.isfinite(n) | (n < 0), n)
        lost = -np.diff(n)
        fail_if_any("alive", "non-increasing (customers cannot come back)", np.r_[False, lost < 0], n)
        return self.fit_churn(lost, n[-1])

    def fit_churn(self, churned: Sequence[float], still_alive: float) -> ShiftedBetaGeometric:
        """Fit on the customers lost in each period 1…n and those still alive after period n (censored)."""
        lost = _array(churned, "churned")
        if len(lost) == 0:
            raise ClvError("churned needs at least one period")
        fail_if_any("churned", "finite and ≥ 0", ~np.isfinite(lost) | (lost < 0), lost)
        survivors = float(positive_number(still_alive, "still_alive", allow_zero=True))
        if lost.sum() == 0:
            raise ClvError("nobody churned: the sBG model cannot be fitted (retention is 100%)")
        periods = np.arange(1, len(lost) + 1, dtype="float64")
        horizon = float(len(lost))

        def loglik(theta):
            return _sbg_loglik(theta, periods, lost, survivors, horizon)

        self._fit_ml(loglik, np.ones(2), lost.sum() + survivors)
        return self

    def survival(self, t):
        """S(t) = B(α, β+t)/B(α, β): the share of a cohort still a customer after t periods."""
        self._check_fitted()
        tt = _array(t, "t")
        fail_if_any("t", "finite and ≥ 0", ~np.isfinite(tt) | (tt < 0), tt)
        out = np.exp(special.betaln(self.alpha_, self.beta_ + tt) - special.betaln(self.alpha_, self.beta_))
        return _like(out, t)

    def churn_probability(self, t):
        """P(T = t) = B(α+1, β+t−1)/B(α, β): the share of a cohort lost in period t ≥ 1."""
        self._check_fitted()
        tt = _array(t, "t")
        fail_if_any("t", "whole and ≥ 1", ~np.isfinite(tt) | (tt < 1) | (tt != np.round(tt)), tt)
        out = np.exp(special.betaln(self.alpha_ + 1, self.beta_ + tt - 1) - special.betaln(self.alpha_, self.beta_))
        return _like(out, t)

    def retention_rate(self, t):
        """r_t = S(t)/S(t−1) = (β+t−1)/(α+β+t−1) for periods t ≥ 1."""
        self._check_fitted()
        tt = _array(t, "t")
        fail_if_any("t", "≥ 1", ~np.isfinite(tt) | (tt < 1), tt)
        return _like((self.beta_ + tt - 1) / (self.alpha_ + self.beta_ + tt - 1), t)

    def expected_discounted_lifetime(self, discount_rate: float) -> float:
        """DEL of a customer just acquired, in payments, the first one included (Fader & Hardie 2010):
        Σ_{t≥0} S(t)·(1+d)^{−t} = ₂F₁(1, β; α+β; 1/(1+d)) = 1 + DERL(renewals=0)/(1+d)."""
        self._check_fitted()
        d = positive_number(discount_rate, "discount_rate")
        return float(special.hyp2f1(1, self.beta_, self.alpha_ + self.beta_, 1 / (1 + d)))

    def derl(self, discount_rate: float, renewals: int = 0) -> float:
        """Discounted expected residual lifetime (Fader & Hardie 2010, eq. 6), in payments.

        For a customer who has made ``renewals`` = n−1 renewals and is at the end of period n, deciding
        whether to renew: DERL = Σ_{t≥n} S(t)/S(n−1) · (1+d)^{−(t−n)}
                                = (β+n−1)/(α+β+n−1) · ₂F₁(1, β+n; α+β+n; 1/(1+d)),
        with d the discount rate per period. The next renewal (at the decision point) is undiscounted;
        multiply by the payment per period for the expected residual lifetime value."""
        self._check_fitted()
        d = positive_number(discount_rate, "discount_rate")
        if not (isinstance(renewals, int | np.integer) and renewals >= 0):
            raise ClvError(f"renewals must be a whole number ≥ 0, not {renewals!r}")
        n = renewals + 1
        al, be = self.alpha_, self.beta_
        return float((be + n - 1) / (al + be + n - 1) * special.hyp2f1(1, be + n, al + be + n, 1 / (1 + d)))
