"""The modified BG/NBD (Batislam, Denizel & Filiztekin 2007): as BG/NBD, but a customer can also drop out
right after the first purchase (the sample business of :mod:`pco_lib.data.sample` is simulated that way).
"""

from __future__ import annotations

import numpy as np
from scipy import special

from .bgnbd import BGNBD, _bg_family_loglik, _Rows


def _mbgnbd_terms(a, b, x):
    """MBG/NBD drop-out terms per distinct x: ℓ₂ = log B(a, b+x+1)/B(a, b) (alive at T) and
    ℓ₃ = log B(a+1, b+x)/B(a, b) (dropped out right after the last purchase, for every x including 0), with
    their derivatives (∂a, ∂b)."""
    psi = special.digamma
    l2 = special.betaln(a, b + x + 1) - special.betaln(a, b)
    l3 = special.betaln(a + 1, b + x) - special.betaln(a, b)
    s, d_a0, d_b0 = psi(a + b + x + 1), psi(a) - psi(a + b), psi(b) - psi(a + b)
    return l2, l3, (psi(a) - s - d_a0, psi(b + x + 1) - s - d_b0), (psi(a + 1) - s - d_a0, psi(b + x) - s - d_b0)


def _mbgnbd_loglik(theta, rows: _Rows) -> tuple[float, np.ndarray]:
    """Weighted MBG/NBD log-likelihood and gradient (Batislam, Denizel & Filiztekin 2007):

    L = B(a, b+x+1)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+T)^(r+x))
        + B(a+1, b+x)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+t_x)^(r+x))      (for every x, including 0).
    """
    return _bg_family_loglik(theta, rows, _mbgnbd_terms)


class ModifiedBGNBD(BGNBD):
    """MBG/NBD (Batislam, Denizel & Filiztekin 2007): the BG/NBD with drop-out possible right after the first
    purchase too, so a customer without repeat purchases is not certainly alive.

    The purchase rate λ ~ Gamma(r, α); after every purchase, the first included, the customer drops out with
    probability p ~ Beta(a, b). Same attributes and predictions as :class:`BGNBD`:
    P(alive | x, t_x, T) = 1 / (1 + a/(b+x) · ((α+T)/(α+t_x))^(r+x)); E[Y(t) | x, t_x, T] is eq. 10 of FHL
    2005 with b + 1 for b (the posterior of p given alive is Beta(a, b+x+1)) times P(alive).
    """

    _model = "MBG/NBD"
    _loglik = staticmethod(lambda theta, rows: _mbgnbd_loglik(theta, rows))
    _shift = 1

    def _log_odds_dead(self, x, tx, T) -> np.ndarray:
        """log of a/(b+x) ((α+T)/(α+t_x))^(r+x), for every x."""
        r, alpha, a, b = self.r_, self.alpha_, self.a_, self.b_
        return np.log(a) - np.log(b + x) + (r + x) * (np.log(alpha + T) - np.log(alpha + tx))
