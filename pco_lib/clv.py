"""Customer lifetime value: buy-till-you-die models on RFM summaries, spend, discounted CLV, contractual retention.

Non-contractual customers (no visible churn) are summarised by frequency–recency–age per customer in the
engine (:func:`rfm_table`) and modelled with

- :class:`BGNBD`: the beta-geometric/NBD model (Fader, Hardie & Lee 2005, "Counting your customers the easy
  way"): purchases at Poisson rate λ ~ Gamma(r, α) while alive, after each purchase the customer drops out
  with probability p ~ Beta(a, b);
- :class:`ParetoNBD`: the Pareto/NBD model (Schmittlein, Morrison & Colombo 1987; likelihood as in Fader,
  Hardie & Lee 2005, "A note on deriving the Pareto/NBD model"): exponential lifetimes with rate μ ~
  Gamma(s, β) instead of drop-out at purchases;
- :class:`GammaGamma`: average order value (Fader, Hardie & Lee 2005, "RFM and CLV"; Fader & Hardie 2013,
  "The Gamma-Gamma model of monetary value");
- :func:`clv`: discounted expected purchases over an explicit horizon × expected order value.

Contractual customers (churn is observed) get :class:`ShiftedBetaGeometric` (Fader & Hardie 2007, "How to
project customer retention"), with survival, retention rates and the discounted expected residual lifetime
(Fader & Hardie 2010, "Customer-base valuation in a contractual setting").

Time: ``x`` (frequency) = repeat purchase days, ``t_x`` (recency) and ``T`` (age) are measured in a time unit
of ``time_unit_days`` days (weeks by default), which is then also the unit of the fitted rate parameters
(α, β) and of ``t`` in the predictions. :func:`clv` takes its horizon in days and its discount rate per
year, so neither can be mixed up with the model's unit.

Fitters follow lifelines: ``__init__`` stores options, ``fit()`` validates, returns ``self`` and sets
attributes ending in ``_`` (parameters, ``log_likelihood_``, ``summary`` with standard errors from the
inverse Hessian). Log-likelihoods are summed with weights, so distinct (x, t_x, T) rows with a ``count``
give exactly the fit on one row per customer.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence

import ibis
import numpy as np
import pandas as pd
from scipy import optimize, special, stats

DAYS_PER_YEAR = 365.25
DAYS_PER_MONTH = DAYS_PER_YEAR / 12
_LOG_BOUND = 15.0  # parameters are searched on log scale in [e^-15, e^15]; a fit stuck at a bound is an error


class ClvError(ValueError):
    """Invalid input to a CLV model, or a model that cannot be fitted (no convergence, unidentified)."""


# --------------------------------------------------------------------------------------------------
# Engine summary
# --------------------------------------------------------------------------------------------------


def _day(value, name: str) -> dt.date:
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ClvError(f"{name} must be a date or timestamp, not {value!r}") from exc
    if ts is pd.NaT:
        raise ClvError(f"{name} must be a date or timestamp, not {value!r}")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.date()


def rfm_expr(orders, calibration_end, *, time_unit_days: float = 7.0, observed_from=None) -> ibis.Table:
    """Per-customer frequency/recency/age/spend as an Ibis expression (nothing is executed).

    Orders of one customer on the same calendar day (UTC) are merged into one purchase, their revenue summed.
    Only purchase days on or before ``calibration_end`` (a calendar day, inclusive) count; customers whose
    first purchase is later do not appear. With ``observed_from``, customers whose first purchase is before
    that day are left out (their history may start before the data does, so their first observed purchase
    need not be their first purchase).

    Columns: customer_id, first_purchase (date), frequency (x = purchase days − 1), recency_days
    (last − first purchase day), T_days (calibration_end − first purchase day), recency and T (the same in
    units of ``time_unit_days``), monetary (mean revenue of the x repeat purchases; null when x = 0).
    """
    if isinstance(orders, pd.DataFrame):
        orders = ibis.memtable(orders)
    missing = [c for c in ("customer_id", "ordered_at", "revenue") if c not in orders.columns]
    if missing:
        raise ClvError(f"orders needs the column(s) {', '.join(missing)}; it has {', '.join(orders.columns)}")
    _positive(time_unit_days, "time_unit_days")
    end = _day(calibration_end, "calibration_end")

    at = orders.ordered_at
    o = orders.select(customer_id=orders.customer_id.cast("string"), day=at if at.type().is_date() else at.date(),
                      revenue=orders.revenue.cast("float64"))
    o = o.filter(o.day <= end)
    days = o.group_by(["customer_id", "day"]).aggregate(revenue=o.revenue.sum())
    days = days.mutate(first=days.day.min().over(group_by=days.customer_id))
    per = days.group_by("customer_id").aggregate(
        first_purchase=days.day.min(),
        last_purchase=days.day.max(),
        purchase_days=days.count(),
        repeat_revenue=days.revenue.sum(where=days.day > days.first),
    )
    if observed_from is not None:
        per = per.filter(per.first_purchase >= _day(observed_from, "observed_from"))
    x = (per.purchase_days - 1).cast("int64")
    recency_days = per.last_purchase.delta(per.first_purchase, unit="day").cast("int64")
    t_days = ibis.literal(end).delta(per.first_purchase, unit="day").cast("int64")
    unit = float(time_unit_days)
    return per.select(
        customer_id=per.customer_id,
        first_purchase=per.first_purchase,
        frequency=x,
        recency_days=recency_days,
        T_days=t_days,
        recency=recency_days.cast("float64") / unit,
        T=t_days.cast("float64") / unit,
        monetary=ibis.ifelse(x > 0, per.repeat_revenue / x.cast("float64"), ibis.null("float64")),
    )


def rfm_table(orders, calibration_end, time_unit_days: float = 7.0, observed_from=None, *,
              per_customer: bool = False) -> pd.DataFrame:
    """Frequency–recency–age summary for the BG/NBD and Pareto/NBD fits, computed in the engine.

    ``orders``: Ibis table (or pandas frame) with customer_id, ordered_at, revenue. See :func:`rfm_expr`
    for how x, t_x, T and monetary are defined.

    Default: one row per distinct (frequency, recency, T) with ``count`` customers — the sufficient
    statistics of both models, to pass as ``weights``. Rows are grouped on whole days, so equal summaries
    are never split by floating-point noise.

    ``per_customer=True``: one row per customer (customer_id, first_purchase, frequency, recency, T,
    monetary; monetary is NaN when frequency = 0), for the Gamma-Gamma fit and for predictions.
    """
    expr = rfm_expr(orders, calibration_end, time_unit_days=time_unit_days, observed_from=observed_from)
    unit = float(time_unit_days)
    if per_customer:
        df = expr.order_by("customer_id").to_pandas()
        df = df.drop(columns=["recency_days", "T_days"])
        df["monetary"] = df["monetary"].astype("float64")
        return df.reset_index(drop=True)
    g = expr.group_by(["frequency", "recency_days", "T_days"]).aggregate(count=expr.count())
    df = g.order_by(["frequency", "recency_days", "T_days"]).to_pandas()
    out = pd.DataFrame({
        "frequency": df["frequency"].astype("int64"),
        "recency": df["recency_days"].astype("float64") / unit,
        "T": df["T_days"].astype("float64") / unit,
        "count": df["count"].astype("int64"),
    })
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# Shared fitting machinery
# --------------------------------------------------------------------------------------------------


def _array(values, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype="float64")
    except (TypeError, ValueError) as exc:
        raise ClvError(f"{name} must be numeric") from exc
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ClvError(f"{name} must be one-dimensional, not of shape {arr.shape}")
    return arr


def _fail(name: str, rule: str, bad: np.ndarray, values: np.ndarray) -> None:
    if bad.any():
        examples = ", ".join(f"{v:g}" for v in values[bad][:3])
        raise ClvError(f"{name} must be {rule}: {int(bad.sum())} value(s) are not (e.g. {examples})")


def _rfm_arrays(frequency, recency, T) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, tx, t = _array(frequency, "frequency"), _array(recency, "recency"), _array(T, "T")
    if not (len(x) == len(tx) == len(t)):
        raise ClvError(f"frequency, recency and T must have the same length ({len(x)}, {len(tx)}, {len(t)})")
    if len(x) == 0:
        raise ClvError("no customers: frequency, recency and T are empty")
    for name, arr in (("frequency", x), ("recency", tx), ("T", t)):
        _fail(name, "finite and ≥ 0", ~np.isfinite(arr) | (arr < 0), arr)
    _fail("frequency", "a whole number of repeat purchases", x != np.round(x), x)
    _fail("recency", "≤ T (the last purchase cannot be after the end of calibration)", tx > t * (1 + 1e-12), tx)
    _fail("recency", "0 when frequency is 0 (no repeat purchase, so no time between purchases)",
          (x == 0) & (tx > 0), tx)
    return x, tx, t


def _weights(weights, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = _array(weights, "weights")
    if len(w) != n:
        raise ClvError(f"weights must have one value per row ({n}), not {len(w)}")
    _fail("weights", "finite and ≥ 0", ~np.isfinite(w) | (w < 0), w)
    if w.sum() <= 0:
        raise ClvError("weights must not all be zero")
    return w


def _maximize(loglik: Callable[[np.ndarray], tuple[float, np.ndarray]], start: np.ndarray, scale: float,
              model: str, max_iter: int) -> np.ndarray:
    """Maximise ``loglik`` (value and gradient in the natural, positive parameters) over log-parameters.

    The objective is the mean negative log-likelihood (``scale`` = total weight), so tolerances do not
    depend on the number of customers."""

    def objective(phi):
        theta = np.exp(phi)
        ll, grad = loglik(theta)
        if not np.isfinite(ll) or not np.all(np.isfinite(grad)):
            return np.inf, np.zeros_like(phi)
        return -ll / scale, -grad * theta / scale

    with np.errstate(all="ignore"):
        res = optimize.minimize(objective, np.log(start), jac=True, method="L-BFGS-B",
                                bounds=[(-_LOG_BOUND, _LOG_BOUND)] * len(start),
                                options={"maxiter": max_iter, "ftol": 1e-15, "gtol": 1e-9, "maxcor": 30})
    if not res.success or not np.isfinite(res.fun):
        raise ClvError(f"{model} fit did not converge after {res.nit} iterations: {res.message}")
    if np.any(np.abs(res.x) > _LOG_BOUND - 1e-3):
        raise ClvError(f"{model} fit did not converge: a parameter ran to {np.exp(res.x)} — the data do not "
                       "identify the model (too few customers, or no repeat purchases?)")
    return np.exp(res.x)


def _hessian_se(loglik: Callable[[np.ndarray], tuple[float, np.ndarray]], theta: np.ndarray,
                analytic_gradient: bool = True) -> np.ndarray:
    """Standard errors from the inverse of the observed information: central differences of the analytic
    gradient, or (``analytic_gradient=False``) second differences of the log-likelihood itself."""
    k = len(theta)
    hess = np.empty((k, k))
    if analytic_gradient:
        for j in range(k):
            h = 1e-5 * theta[j]
            up, down = theta.copy(), theta.copy()
            up[j] += h
            down[j] -= h
            hess[:, j] = (loglik(up)[1] - loglik(down)[1]) / (2 * h)
    else:
        steps = 1e-4 * theta
        for i in range(k):
            for j in range(i, k):
                total = 0.0
                for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                    shifted = theta.copy()
                    shifted[i] += si * steps[i]
                    shifted[j] += sj * steps[j]
                    total += si * sj * loglik(shifted)[0]
                hess[i, j] = hess[j, i] = total / (4 * steps[i] * steps[j])
    info = -(hess + hess.T) / 2
    try:
        cov = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        return np.full(k, np.nan)
    diag = np.diag(cov)
    return np.where(diag > 0, np.sqrt(np.abs(diag)), np.nan)


class _Fitter:
    """lifelines-style base: parameters in ``_param_names``, each stored as ``<name>_`` after ``fit``."""

    _param_names: tuple[str, ...] = ()
    _model = "model"
    _analytic_gradient = True

    def __init__(self, max_iter: int = 1000):
        self.max_iter = max_iter

    def _store(self, theta: np.ndarray, loglik, n: float) -> None:
        for name, value in zip(self._param_names, theta, strict=True):
            setattr(self, f"{name}_", float(value))
        self.params_ = pd.Series(theta, index=list(self._param_names), name="coef")
        self.log_likelihood_ = float(loglik(theta)[0])
        self.n_ = float(n)
        se = _hessian_se(loglik, theta, self._analytic_gradient)
        z = stats.norm.ppf(0.975)
        self.summary = pd.DataFrame(
            {"coef": theta, "se(coef)": se, "lower 95% bound": theta - z * se, "upper 95% bound": theta + z * se},
            index=pd.Index(self._param_names, name="param"))

    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise ClvError(f"{type(self).__name__} is not fitted yet: call fit() first")

    def to_frame(self) -> pd.DataFrame:
        self._check_fitted()
        return self.summary.copy()

    def __repr__(self) -> str:
        if not hasattr(self, "params_"):
            return f"<{type(self).__name__}: not fitted>"
        params = ", ".join(f"{k}={v:.3g}" for k, v in self.params_.items())
        return f"<{type(self).__name__}: fitted on {self.n_:g} customers, {params}, LL={self.log_likelihood_:.1f}>"

    def _repr_html_(self) -> str:
        if not hasattr(self, "params_"):
            return f"<p>{type(self).__name__}: not fitted</p>"
        return (f"<p><b>{type(self).__name__}</b> fitted on {self.n_:g} customers, "
                f"log-likelihood {self.log_likelihood_:.2f}</p>" + self.summary.to_html(float_format="%.4f"))


def _like(result: np.ndarray, *inputs):
    """Return a Series when the first pandas input is a Series (same index), else the array (scalar for 0-d)."""
    for v in inputs:
        if isinstance(v, pd.Series) and len(v) == len(result):
            return pd.Series(result, index=v.index)
    if all(np.ndim(v) == 0 for v in inputs) and result.size == 1:
        return float(result[0])
    return result


# --------------------------------------------------------------------------------------------------
# BG/NBD
# --------------------------------------------------------------------------------------------------


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


class BGNBD(_Fitter):
    """Beta-geometric/NBD model (Fader, Hardie & Lee 2005), fitted by maximum likelihood.

    Parameters after ``fit``: ``r_``, ``alpha_`` (purchase rate λ ~ Gamma(shape r, rate α), α in the time
    unit of recency/T), ``a_``, ``b_`` (drop-out probability p ~ Beta(a, b)); ``log_likelihood_``,
    ``summary`` (coef, se(coef), 95% bounds from the inverse Hessian), ``n_`` (total weight).
    """

    _param_names = ("r", "alpha", "a", "b")
    _model = "BG/NBD"

    def fit(self, frequency, recency, T, weights=None) -> BGNBD:
        """Fit on x (repeat purchases), t_x (time of last purchase) and T (age), all in one time unit;
        ``weights`` = customers per row (e.g. the ``count`` of :func:`rfm_table`)."""
        x, tx, t = _rfm_arrays(frequency, recency, T)
        w = _weights(weights, len(x))
        keep = w > 0
        x, tx, t, w = x[keep], tx[keep], t[keep], w[keep]
        if not np.any(x > 0):
            raise ClvError("BG/NBD needs at least one customer with a repeat purchase (frequency > 0)")

        def loglik(theta):
            return _bgnbd_loglik(theta, x, tx, t, w)

        theta = _maximize(loglik, np.ones(4), w.sum(), self._model, self.max_iter)
        self._store(theta, loglik, w.sum())
        return self

    def _log_odds_dead(self, x, tx, T) -> np.ndarray:
        """log of δ(x>0) a/(b+x−1) ((α+T)/(α+t_x))^(r+x); −inf when x = 0."""
        r, alpha, a, b = self.r_, self.alpha_, self.a_, self.b_
        rep = x > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            val = (np.log(a) - np.log(b + np.where(rep, x - 1, 0))
                   + (r + x) * (np.log(alpha + T) - np.log(alpha + tx)))
        return np.where(rep, val, -np.inf)

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
        _fail("t", "finite and ≥ 0", ~np.isfinite(tt) | (tt < 0), tt)
        r, alpha, a, b = self.r_, self.alpha_, self.a_, self.b_
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
        _fail("t", "finite and ≥ 0", ~np.isfinite(tt) | (tt < 0), tt)
        r, alpha, a, b = self.r_, self.alpha_, self.a_, self.b_
        hyp = special.hyp2f1(r, b, a + b - 1, tt / (alpha + tt))
        out = (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + tt)) ** r * hyp)
        return _like(out, t)


# --------------------------------------------------------------------------------------------------
# Pareto/NBD
# --------------------------------------------------------------------------------------------------


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


class ParetoNBD(_Fitter):
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

    def fit(self, frequency, recency, T, weights=None) -> ParetoNBD:
        x, tx, t = _rfm_arrays(frequency, recency, T)
        w = _weights(weights, len(x))
        keep = w > 0
        x, tx, t, w = x[keep], tx[keep], t[keep], w[keep]
        if not np.any(x > 0):
            raise ClvError("Pareto/NBD needs at least one customer with a repeat purchase (frequency > 0)")

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

        theta = _maximize(loglik, np.ones(4), w.sum(), self._model, self.max_iter)
        self._store(theta, loglik, w.sum())
        return self

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
        _fail("t", "finite and ≥ 0", ~np.isfinite(tt) | (tt < 0), tt)
        r, alpha, s, beta = self.r_, self.alpha_, self.s_, self.beta_
        log_ratio = np.log1p(tt / (beta + T_))
        if abs(s - 1) < 1e-8:
            growth = log_ratio
        else:
            growth = -np.expm1(-(s - 1) * log_ratio) / (s - 1)
        alive = np.asarray(self.probability_alive(x, tx, T_), dtype="float64")
        out = (r + x) * (beta + T_) / (alpha + T_) * growth * alive
        return _like(out, frequency, recency, T)


# --------------------------------------------------------------------------------------------------
# Gamma-Gamma spend
# --------------------------------------------------------------------------------------------------


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
        _fail("frequency", "a whole number > 0 (fit Gamma-Gamma on repeat customers only)",
              ~np.isfinite(x) | (x <= 0) | (x != np.round(x)), x)
        _fail("monetary", "finite and > 0", ~np.isfinite(m) | (m <= 0), m)
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
        _fail("frequency", "finite and ≥ 0", ~np.isfinite(x) | (x < 0), x)
        rep = x > 0
        _fail("monetary", "finite and > 0 for customers with frequency > 0",
              rep & (~np.isfinite(m) | (m <= 0)), m)
        p, q = self.p_, self.q_
        own = np.where(rep, m, 0.0)
        weight = p * x / (p * x + q - 1)
        return _like((1 - weight) * mean + weight * own, frequency, monetary)


# --------------------------------------------------------------------------------------------------
# Discounted CLV
# --------------------------------------------------------------------------------------------------


def _positive(value, name: str, allow_zero: bool = False) -> float:
    ok = isinstance(value, int | float | np.integer | np.floating) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        rule = "≥ 0" if allow_zero else "> 0"
        raise ClvError(f"{name} must be a finite number {rule}, not {value!r}")
    return float(value)


def clv(bgnbd: BGNBD | ParetoNBD, gg: GammaGamma, frequency, recency, T, monetary, *, horizon_days: float,
        time_unit_days: float, discount_rate_per_year: float, step_days: float = DAYS_PER_MONTH):
    """Discounted expected revenue of each customer over the next ``horizon_days`` days.

    The horizon is cut into steps of ``step_days`` days (default one month, 365.25/12 days; the last step
    ends at the horizon). With step ends d_k = min(k·step_days, horizon_days), k = 1…K, and the purchase
    model's time unit u = ``time_unit_days`` (the unit recency and T were measured in when it was fitted):

        CLV = E[Z | x, m_x] · Σ_k (E[Y(d_k/u) | x, t_x, T] − E[Y(d_{k−1}/u) | x, t_x, T]) · (1 + d)^(−d_k/365.25)

    where E[Y(t) | …] is the purchase model's conditional expected number of purchases in the next t units
    (:meth:`BGNBD.expected_purchases`), E[Z | …] the Gamma-Gamma expected order value
    (:meth:`GammaGamma.expected_spend`) and d = ``discount_rate_per_year`` (e.g. 0.1 for 10% a year):
    purchases expected in a step are discounted from the end of that step. Hence horizon 0 gives 0, a zero
    rate gives E[Z] · E[Y(horizon/u)], and shorter steps approach continuous discounting.
    Returns revenue; multiply by a margin for profit.
    """
    horizon = _positive(horizon_days, "horizon_days", allow_zero=True)
    unit = _positive(time_unit_days, "time_unit_days")
    step = _positive(step_days, "step_days")
    if not (isinstance(discount_rate_per_year, int | float | np.integer | np.floating)
            and math.isfinite(discount_rate_per_year) and discount_rate_per_year > -1):
        raise ClvError(f"discount_rate_per_year must be a finite annual rate > −1 (e.g. 0.1), "
                       f"not {discount_rate_per_year!r}")
    x, tx, t = _rfm_arrays(frequency, recency, T)
    spend = np.asarray(gg.expected_spend(x, _array(monetary, "monetary")), dtype="float64")
    total = np.zeros(len(x))
    n_steps = math.ceil(horizon / step - 1e-9) if horizon > 0 else 0
    previous = np.zeros(len(x))
    for k in range(1, n_steps + 1):
        end_days = min(k * step, horizon)
        cumulative = np.asarray(bgnbd.expected_purchases(end_days / unit, x, tx, t), dtype="float64")
        total += (cumulative - previous) * (1 + discount_rate_per_year) ** (-end_days / DAYS_PER_YEAR)
        previous = cumulative
    return _like(total * spend, frequency, recency, T, monetary)


# --------------------------------------------------------------------------------------------------
# Shifted-beta-geometric (contractual retention)
# --------------------------------------------------------------------------------------------------


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
        _fail("alive", "finite and ≥ 0", ~np.isfinite(n) | (n < 0), n)
        lost = -np.diff(n)
        _fail("alive", "non-increasing (customers cannot come back)", np.r_[False, lost < 0], n)
        return self.fit_churn(lost, n[-1])

    def fit_churn(self, churned: Sequence[float], still_alive: float) -> ShiftedBetaGeometric:
        """Fit on the customers lost in each period 1…n and those still alive after period n (censored)."""
        lost = _array(churned, "churned")
        if len(lost) == 0:
            raise ClvError("churned needs at least one period")
        _fail("churned", "finite and ≥ 0", ~np.isfinite(lost) | (lost < 0), lost)
        survivors = float(_positive(still_alive, "still_alive", allow_zero=True))
        if lost.sum() == 0:
            raise ClvError("nobody churned: the sBG model cannot be fitted (retention is 100%)")
        periods = np.arange(1, len(lost) + 1, dtype="float64")
        horizon = float(len(lost))

        def loglik(theta):
            return _sbg_loglik(theta, periods, lost, survivors, horizon)

        theta = _maximize(loglik, np.ones(2), lost.sum() + survivors, self._model, self.max_iter)
        self._store(theta, loglik, lost.sum() + survivors)
        return self

    def survival(self, t):
        """S(t) = B(α, β+t)/B(α, β): the share of a cohort still a customer after t periods."""
        self._check_fitted()
        tt = _array(t, "t")
        _fail("t", "finite and ≥ 0", ~np.isfinite(tt) | (tt < 0), tt)
        out = np.exp(special.betaln(self.alpha_, self.beta_ + tt) - special.betaln(self.alpha_, self.beta_))
        return _like(out, t)

    def churn_probability(self, t):
        """P(T = t) = B(α+1, β+t−1)/B(α, β): the share of a cohort lost in period t ≥ 1."""
        self._check_fitted()
        tt = _array(t, "t")
        _fail("t", "whole and ≥ 1", ~np.isfinite(tt) | (tt < 1) | (tt != np.round(tt)), tt)
        out = np.exp(special.betaln(self.alpha_ + 1, self.beta_ + tt - 1) - special.betaln(self.alpha_, self.beta_))
        return _like(out, t)

    def retention_rate(self, t):
        """r_t = S(t)/S(t−1) = (β+t−1)/(α+β+t−1) for periods t ≥ 1."""
        self._check_fitted()
        tt = _array(t, "t")
        _fail("t", "≥ 1", ~np.isfinite(tt) | (tt < 1), tt)
        return _like((self.beta_ + tt - 1) / (self.alpha_ + self.beta_ + tt - 1), t)

    def derl(self, discount_rate: float, renewals: int = 0) -> float:
        """Discounted expected residual lifetime (Fader & Hardie 2010, eq. 6), in payments.

        For a customer who has made ``renewals`` = n−1 renewals and is at the end of period n, deciding
        whether to renew: DERL = Σ_{t≥n} S(t)/S(n−1) · (1+d)^{−(t−n)}
                                = (β+n−1)/(α+β+n−1) · ₂F₁(1, β+n; α+β+n; 1/(1+d)),
        with d the discount rate per period. The next renewal (at the decision point) is undiscounted;
        multiply by the payment per period for the expected residual lifetime value."""
        self._check_fitted()
        d = _positive(discount_rate, "discount_rate")
        if not (isinstance(renewals, int | np.integer) and renewals >= 0):
            raise ClvError(f"renewals must be a whole number ≥ 0, not {renewals!r}")
        n = renewals + 1
        al, be = self.alpha_, self.beta_
        return float((be + n - 1) / (al + be + n - 1) * special.hyp2f1(1, be + n, al + be + n, 1 / (1 + d)))
