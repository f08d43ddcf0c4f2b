"""The modified BG/NBD (Batislam, Denizel & Filiztekin 2007): as BG/NBD, but a customer can also drop out
right after the first purchase (the sample business of :mod:`pco_lib.data.sample` is simulated that way).
"""

from __future__ import annotations

import numpy as np
from scipy import special

from .bgnbd import BGNBD


def _mbgnbd_loglik(theta, x, tx, T, w) -> tuple[float, np.ndarray]:
    """Weighted MBG/NBD log-likelihood and gradient (Batislam, Denizel & Filiztekin 2007):

    L = B(a, b+x+1)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+T)^(r+x))
        + B(a+1, b+x)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+t_x)^(r+x))      (for every x, including 0).
    """
    r, alpha, a, b = theta
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    a2 = special.betaln(a, b + x + 1) - special.betaln(a, b) - (r + x) * np.log(alpha + T)
    a3 = special.betaln(a + 1, b + x) - special.betaln(a, b) - (r + x) * np.log(alpha + tx)
    lse = np.logaddexp(a2, a3)
    w2, w3 = np.exp(a2 - lse), np.exp(a3 - lse)
    psi = special.digamma
    d_r = psi(r + x) - psi(r) + np.log(alpha) - w2 * np.log(alpha + T) - w3 * np.log(alpha + tx)
    d_alpha = r / alpha - (r + x) * (w2 / (alpha + T) + w3 / (alpha + tx))
    d_a = w2 * psi(a) + w3 * psi(a + 1) - psi(a + b + x + 1) - (psi(a) - psi(a + b))
    d_b = w2 * psi(b + x + 1) + w3 * psi(b + x) - psi(a + b + x + 1) - (psi(b) - psi(a + b))
    return float(w @ (a1 + lse)), np.array([w @ d_r, w @ d_alpha, w @ d_a, w @ d_b])


class ModifiedBGNBD(BGNBD):
    """MBG/NBD (Batislam, Denizel & Filiztekin 2007): the BG/NBD with drop-out possible right after the first
    purchase too, so a customer without repeat purchases is not certainly alive.

    The purchase rate λ ~ Gamma(r, α); after every purchase, the first included, the customer drops out with
    probability p ~ Beta(a, b). Same attributes and predictions as :class:`BGNBD`:
    P(alive | x, t_x, T) = 1 / (1 + a/(b+x) · ((α+T)/(α+t_x))^(r+x)); E[Y(t) | x, t_x, T] is eq. 10 of FHL
    2005 with b + 1 for b (the posterior of p given alive is Beta(a, b+x+1)) times P(alive).
    """

    _model = "MBG/NBD"
    _loglik = staticmethod(lambda theta, x, tx, T, w: _mbgnbd_loglik(theta, x, tx, T, w))
    _shift = 1

    def _log_odds_dead(self, x, tx, T) -> np.ndarray:
        """log of a/(b+x) ((α+T)/(α+t_x))^(r+x), for every x."""
        r, alpha, a, b = self.r_, self.alpha_, self.a_, self.b_
        return np.log(a) - np.log(b + x) + (r + x) * (np.log(alpha + T) - np.log(alpha + tx))
