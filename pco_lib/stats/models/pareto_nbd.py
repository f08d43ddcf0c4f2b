"""The Pareto/NBD model (Schmittlein, Morrison & Colombo 1987; likelihood as in Fader, Hardie & Lee 2005,
"A note on deriving the Pareto/NBD model"): exponential lifetimes with rate μ ~ Gamma(s, β) instead of
drop-out at purchases.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from .base import _array, _like, _PurchaseModel, _rfm_arrays, fail_if_any


def _log_hyp2f1(a, b, c, z) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(special.hyp2f1(a, b, c, z))


def _pareto_log_a0(theta, x, tx, T) -> np.ndarray:
    """log of A₀ (FHL 2005 note, eq. 22–23) with the α ≥ β / α < β branches; A₀ ≥ 0 always."""
    r, alpha, s, beta = theta
    rsx = r + s + x
    if alpha >= beta:
        big, other = alpha, s + 1
        diff = alpha - beta
    else:
        big, other = beta, r + x
        diff = beta - alpha
    l1 = _log_hyp2f1(rsx, other, rsx + 1, diff / (big + tx)) - rsx * np.log(big + tx)
    l2 = _log_hyp2f1(rsx, other, rsx + 1, diff / (big + T)) - rsx * np.log(big + T)
    # A₀ = e^l1 − e^l2 with l1 ≥ l2 (the term is decreasing in time); equal when t_x = T.
    with np.errstate(divide="ignore", invalid="ignore"):
        return l1 + np.log1p(-np.exp(np.minimum(l2 - l1, 0.0)))


def _pareto_parts(theta, x, tx, T) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log of the 'alive at T' term, log of the 'died in (t_x, T]' term, their log-sum) without the
    common factor Γ(r+x) α^r β^s / Γ(r)."""
    r, alpha, s, beta = theta
    alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    dead = np.log(s) - np.log(r + s + x) + _pareto_log_a0(theta, x, tx, T)
    return alive, dead, np.logaddexp(alive, dead)


class ParetoNBD(_PurchaseModel):
    """Pareto/NBD model (Schmittlein, Morrison & Colombo 1987), likelihood as in Fader, Hardie & Lee (2005),
    "A note on deriving the Pareto/NBD model and related expressions":

    L = Γ(r+x) α^r β^s / Γ(r) · [1 / ((α+T)^(r+x) (β+T)^s) + s/(r+s+x) · A₀].

    Parameters after ``fit``: ``r_``, ``alpha_`` (purchase rate ~ Gamma(r, α)), ``s_``, ``beta_`` (death
    rate ~ Gamma(s, β)). The gradient is taken numerically, so the fit is slower than BG/NBD's; pass distinct
    rows with weights.
    """

    _param_names = ("r", "alpha", "s", "beta")
    _model = "Pareto/NBD"
    _analytic_gradient = False

    def _fit_arrays(self, x, tx, t, w) -> None:
        def value(theta):
            r, alpha, s, beta = theta
            common = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) + s * np.log(beta)
            return float(w @ (common + _pareto_parts(theta, x, tx, t)[2]))

        def loglik(theta):
            ll = value(theta)
            grad = np.empty(4)
            for j in range(4):  # central differences on the log scale
                h = 1e-6
                up, down = theta.copy(), theta.copy()
                up[j] *= math.exp(h)
                down[j] *= math.exp(-h)
                grad[j] = (value(up) - value(down)) / (2 * h) / theta[j]
            return ll, grad

        self._fit_ml(loglik, np.ones(4), w.sum())

    def probability_alive(self, frequency, recency, T):
        """P(alive at T | x, t_x, T) = [1/((α+T)^(r+x)(β+T)^s)] / L-bracket (FHL 2005 note, eq. 18)."""
        self._check_fitted()
        x, tx, t = _rfm_arrays(frequency, recency, T)
        alive, _, total = _pareto_parts(self.params_.to_numpy(), x, tx, t)
        return _like(np.exp(alive - total), frequency, recency, T)

    def expected_purchases(self, t, frequency, recency, T):
        """E[Y(t) | x, t_x, T] = (r+x)(β+T) / ((α+T)(s−1)) · [1 − ((β+T)/(β+T+t))^(s−1)] · P(alive)
        (FHL 2005 note, eq. 20; the s → 1 limit (r+x)(β+T)/(α+T) · log(1 + t/(β+T)) is used near s = 1)."""
        self._check_fitted()
        x, tx, T_ = _rfm_arrays(frequency, recency, T)
        tt = np.broadcast_to(_array(t, "t"), x.shape).astype("float64")
        fail_if_any("t", "finite and ≥ 0", ~np.isfinite(tt) | (tt < 0), tt)
        r, alpha, s, beta = self.r_, self.alpha_, self.s_, self.beta_
        log_ratio = np.log1p(tt / (beta + T_))
        if abs(s - 1) < 1e-8:
            growth = log_ratio
        else:
            growth = -np.expm1(-(s - 1) * log_ratio) / (s - 1)
        alive = np.asarray(self.probability_alive(x, tx, T_), dtype="float64")
        out = (r + x) * (beta + T_) / (alpha + T_) * growth * alive
        return _like(out, frequency, recency, T)
