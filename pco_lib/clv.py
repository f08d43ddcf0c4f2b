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
- :class:`ModifiedBGNBD`: the MBG/NBD (Batislam, Denizel & Filiztekin 2007), drop-out possible right after the
  first purchase too (the sample business of :mod:`pco_lib.sample` is simulated that way);
- :func:`clv` / :func:`customer_value`: discounted expected purchases over an explicit horizon × expected
  order value;
- :func:`validate_holdout`: calibration/holdout check (MAE, totals, conditional expectations by frequency,
  Brier scores, spend); :func:`value_segments`: deciles, top-20% share and profile with small cells hidden;
  :func:`simple_clv`: the back-of-envelope AOV × orders a year × years formula, for comparison.

Contractual customers (churn is observed) get :class:`ShiftedBetaGeometric` (Fader & Hardie 2007, "How to
project customer retention"), with survival, retention rates and the discounted expected residual lifetime
(Fader & Hardie 2010, "Customer-base valuation in a contractual setting").

Time: ``x`` (frequency) = repeat purchase days, ``t_x`` (recency) and ``T`` (age) are measured in a time unit
of ``time_unit_days`` days (weeks by default), which is then also the unit of the fitted rate parameters
(α, β) and of ``t`` in the predictions. :func:`rfm_table` records the unit in ``frame.attrs``; ``fit_rfm`` (or
``fit(..., time_unit_days=)``) stores it as ``time_unit_days_`` and :func:`clv` uses it (a contradicting unit
is an error). :func:`clv` takes its horizon in days and its discount rate per year, so neither can be mixed
up with the model's unit.

Fitters follow lifelines: ``__init__`` stores options, ``fit()`` validates, returns ``self`` and sets
attributes ending in ``_`` (parameters, ``log_likelihood_``, ``summary`` with standard errors from the
inverse Hessian). Log-likelihoods are summed with weights, so distinct (x, t_x, T) rows with a ``count``
give exactly the fit on one row per customer.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import ibis
import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from .data import MISSING, calendar_day
from .privacy import check_min_cell_size

DAYS_PER_YEAR = 365.25
DAYS_PER_MONTH = DAYS_PER_YEAR / 12
_LOG_BOUND = 15.0  # parameters are searched on log scale in [e^-15, e^15]; a fit stuck at a bound is an error


class ClvError(ValueError):
    """Invalid input to a CLV model, or a model that cannot be fitted (no convergence, unidentified)."""


# --------------------------------------------------------------------------------------------------
# Engine summary
# --------------------------------------------------------------------------------------------------


def _day(value, name: str) -> dt.date:
    return calendar_day(value, name, ClvError)


def _order_days(orders) -> ibis.Table:
    """customer_id (string), day (UTC calendar date) and revenue of each order, as an Ibis expression.

    Revenue is summed as a decimal with 6 places: exact, so the engine's parallel sums give the same spend
    every run and the fits that follow are reproducible to the last digit."""
    if isinstance(orders, pd.DataFrame):
        orders = ibis.memtable(orders)
    missing = [c for c in ("customer_id", "ordered_at", "revenue") if c not in orders.columns]
    if missing:
        raise ClvError(f"orders needs the column(s) {', '.join(missing)}; it has {', '.join(orders.columns)}")
    at = orders.ordered_at
    return orders.select(customer_id=orders.customer_id.cast("string"),
                         day=at if at.type().is_date() else at.date(), revenue=orders.revenue.cast("decimal(38, 6)"))


def rfm_expr(orders, calibration_end, *, time_unit_days: float = 7.0, observed_from=None) -> ibis.Table:
    """Per-customer frequency/recency/age/spend as an Ibis expression (nothing is executed).

    Orders of one customer on the same calendar day (UTC) are merged into one purchase, their revenue summed.
    Only purchase days on or before ``calibration_end`` (a calendar day, inclusive) count; customers whose
    first purchase is later do not appear. With ``observed_from``, customers whose first purchase is before
    that day are left out (their history may start before the data does, so their first observed purchase
    need not be their first purchase).

    Columns: customer_id, first_purchase (date), frequency (x = purchase days − 1), recency_days
    (last − first purchase day), T_days (calibration_end − first purchase day), recency and T (the same in
    units of ``time_unit_days``), monetary (mean revenue of the x repeat purchases; null when x = 0), revenue
    (total revenue of all purchase days up to ``calibration_end``, the first included).
    """
    _positive(time_unit_days, "time_unit_days")
    end = _day(calibration_end, "calibration_end")
    o = _order_days(orders)
    o = o.filter(o.day <= end)
    days = o.group_by(["customer_id", "day"]).aggregate(revenue=o.revenue.sum())
    days = days.mutate(first=days.day.min().over(group_by=days.customer_id))
    per = days.group_by("customer_id").aggregate(
        first_purchase=days.day.min(),
        last_purchase=days.day.max(),
        purchase_days=days.count(),
        repeat_revenue=days.revenue.sum(where=days.day > days.first),
        revenue=days.revenue.sum(),
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
        revenue=per.revenue,
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
    monetary, revenue; monetary is NaN when frequency = 0), for the Gamma-Gamma fit and for predictions.

    Both frames carry their time unit in ``frame.attrs["time_unit_days"]`` (and ``calibration_end``), which
    :meth:`BGNBD.fit_rfm` and :func:`customer_value` read, so a model cannot be fitted in one unit and
    used in another.
    """
    expr = rfm_expr(orders, calibration_end, time_unit_days=time_unit_days, observed_from=observed_from)
    unit = float(time_unit_days)
    if per_customer:
        df = expr.order_by("customer_id").to_pandas()
        df = df.drop(columns=["recency_days", "T_days"])
        df["monetary"] = df["monetary"].astype("float64")
        df["revenue"] = df["revenue"].astype("float64")
        return _with_unit(df.reset_index(drop=True), unit, calibration_end)
    g = expr.group_by(["frequency", "recency_days", "T_days"]).aggregate(count=expr.count())
    df = g.order_by(["frequency", "recency_days", "T_days"]).to_pandas()
    out = pd.DataFrame({
        "frequency": df["frequency"].astype("int64"),
        "recency": df["recency_days"].astype("float64") / unit,
        "T": df["T_days"].astype("float64") / unit,
        "count": df["count"].astype("int64"),
    })
    return _with_unit(out.reset_index(drop=True), unit, calibration_end)


def _with_unit(df: pd.DataFrame, unit: float, calibration_end) -> pd.DataFrame:
    df.attrs["time_unit_days"] = float(unit)
    df.attrs["calibration_end"] = str(_day(calibration_end, "calibration_end"))
    return df


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
    # L-BFGS-B stops "abnormally" when the line search cannot improve on a point that is already optimal to
    # machine precision (the tolerances are tight): accept it when the gradient there is negligible.
    at_optimum = np.isfinite(res.fun) and np.max(np.abs(res.jac)) < 1e-6
    if not (res.success or at_optimum) or not np.isfinite(res.fun):
        raise ClvError(f"{model} fit did not converge after {res.nit} iterations: {res.message}")
    if np.any(np.abs(res.x) > _LOG_BOUND - 1e-3):
        raise ClvError(f"{model} fit did not converge: a parameter ran to {np.exp(res.x)} — the data do not "
                       "identify the model (too few customers, or no repeat purchases?)")
    return np.exp(res.x)


def _hessian_cov(loglik: Callable[[np.ndarray], tuple[float, np.ndarray]], theta: np.ndarray,
                 analytic_gradient: bool = True) -> np.ndarray:
    """Covariance of the estimates, the inverse of the observed information: central differences of the
    analytic gradient, or (``analytic_gradient=False``) second differences of the log-likelihood itself."""
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
        return np.linalg.inv(info)
    except np.linalg.LinAlgError:
        return np.full((k, k), np.nan)


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
        cov = _hessian_cov(loglik, theta, self._analytic_gradient)
        names = list(self._param_names)
        self.covariance_ = pd.DataFrame(cov, index=names, columns=names)
        diag = np.diag(cov)
        se = np.where(diag > 0, np.sqrt(np.abs(diag)), np.nan)
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

    def _unit_text(self) -> str:
        unit = getattr(self, "time_unit_days_", None)
        return f", time unit {unit:g} days" if unit is not None else ""

    def __repr__(self) -> str:
        if not hasattr(self, "params_"):
            return f"<{type(self).__name__}: not fitted>"
        params = ", ".join(f"{k}={v:.3g}" for k, v in self.params_.items())
        return (f"<{type(self).__name__}: fitted on {self.n_:g} customers{self._unit_text()}, {params}, "
                f"LL={self.log_likelihood_:.1f}>")

    def _repr_html_(self) -> str:
        if not hasattr(self, "params_"):
            return f"<p>{type(self).__name__}: not fitted</p>"
        return (f"<p><b>{type(self).__name__}</b> fitted on {self.n_:g} customers{self._unit_text()}, "
                f"log-likelihood {self.log_likelihood_:.2f}</p>" + self.summary.to_html(float_format="%.4f"))


def _unit_of(value, name: str) -> float | None:
    return None if value is None else _positive(value, name)


def _resolve_unit(sources: Sequence[tuple[str, float | None]], what: str) -> float:
    """The one time unit (days) that all known sources agree on; ClvError on a conflict or when none is known."""
    known = [(label, float(v)) for label, v in sources if v is not None]
    if not known:
        raise ClvError(f"the time unit of {what} is unknown: pass time_unit_days= (days per unit of recency and "
                       "T, e.g. 7.0 for weeks) or use a frame from rfm_table(), which records its unit")
    first_label, first = known[0]
    for label, value in known[1:]:
        if not math.isclose(value, first, rel_tol=1e-9):
            raise ClvError(f"conflicting time units: {first_label} is in units of {first:g} days but {label} in "
                           f"units of {value:g} days")
    return first


class _PurchaseModel(_Fitter):
    """A purchase model fitted on (frequency, recency, T) that remembers its time unit (``time_unit_days_``)."""

    def _fit_arrays(self, x, tx, t, w):  # pragma: no cover - overridden
        """Maximise the likelihood on validated arrays (rows with weight > 0, at least one repeat buyer)."""
        raise NotImplementedError

    def fit(self, frequency, recency, T, weights=None, *, time_unit_days: float | None = None):
        """Fit on x (repeat purchases), t_x (time of last purchase) and T (age), all in one time unit;
        ``weights`` = customers per row (e.g. the ``count`` of :func:`rfm_table`). ``time_unit_days`` = days
        per unit of recency and T (7.0 for weeks); it is remembered as ``time_unit_days_`` and used by
        :func:`clv`. Without it the unit is unknown and must then be given to :func:`clv`."""
        unit = _unit_of(time_unit_days, "time_unit_days")
        x, tx, t = _rfm_arrays(frequency, recency, T)
        w = _weights(weights, len(x))
        keep = w > 0
        x, tx, t, w = x[keep], tx[keep], t[keep], w[keep]
        if not np.any(x > 0):
            raise ClvError(f"{self._model} needs at least one customer with a repeat purchase (frequency > 0)")
        self._fit_arrays(x, tx, t, w)
        self.time_unit_days_ = unit
        return self

    def fit_rfm(self, rfm: pd.DataFrame, *, time_unit_days: float | None = None):
        """Fit on a frame from :func:`rfm_table` (distinct rows with ``count``, or one row per customer),
        taking the time unit from ``rfm.attrs["time_unit_days"]`` (or ``time_unit_days``; both must agree)."""
        if not isinstance(rfm, pd.DataFrame):
            raise ClvError("fit_rfm needs a pandas DataFrame from rfm_table()")
        missing = [c for c in ("frequency", "recency", "T") if c not in rfm.columns]
        if missing:
            raise ClvError(f"the rfm frame needs the column(s) {', '.join(missing)}")
        unit = _resolve_unit([("the rfm frame", _unit_of(rfm.attrs.get("time_unit_days"), "rfm time unit")),
                              ("time_unit_days", _unit_of(time_unit_days, "time_unit_days"))], "the rfm frame")
        weights = rfm["count"] if "count" in rfm.columns else None
        return self.fit(rfm["frequency"], rfm["recency"], rfm["T"], weights=weights, time_unit_days=unit)


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
        _fail("t", "finite and ≥ 0", ~np.isfinite(tt) | (tt < 0), tt)
        alive = special.expit(-self._log_odds_dead(x, tx, T_))
        none = np.exp((self.r_ + x) * (np.log(self.alpha_ + T_) - np.log(self.alpha_ + T_ + tt)))
        return _like(alive * (1 - none), frequency, recency, T)

    def survival(self, t):
        """P(a new customer is still alive t time units after the first purchase) = E_p[(α/(α+p·t))^r]:
        drop-out at purchases with probability p thins the Poisson(λ) purchases, so the lifetime given (λ, p)
        is exponential with rate λp (plus, for MBG/NBD, drop-out at the first purchase with probability p)."""
        self._check_fitted()
        tt = _array(t, "t")
        _fail("t", "finite and ≥ 0", ~np.isfinite(tt) | (tt < 0), tt)
        r, alpha = self.r_, self.alpha_
        out = np.array([self._expect_p(lambda p, v=v: (alpha / (alpha + p * v)) ** r) for v in tt])
        return _like(out, t)

    def expected_lifetime(self, max_days: float) -> float:
        """Restricted mean lifetime of a new customer in days, ∫₀^H S(t) dt with the horizon H = ``max_days``
        (the mean itself is infinite unless r > 1 and a > 1). Needs the fitted time unit."""
        self._check_fitted()
        horizon = _positive(max_days, "max_days")
        unit = _resolve_unit([("the model", getattr(self, "time_unit_days_", None))], "the model")
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
        _fail("t", "finite and ≥ 0", ~np.isfinite(tt) | (tt < 0), tt)
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
        _fail("t", "finite and ≥ 0", ~np.isfinite(tt) | (tt < 0), tt)
        r, alpha, a, b = self.r_, self.alpha_, self.a_, self.b_ + self._shift
        hyp = special.hyp2f1(r, b, a + b - 1, tt / (alpha + tt))
        out = (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + tt)) ** r * hyp)
        if self._shift:  # MBG/NBD: only the share b/(a+b) survives the first purchase
            out = out * self.b_ / (a + self.b_)
        return _like(out, t)


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

        theta = _maximize(loglik, np.ones(4), w.sum(), self._model, self.max_iter)
        self._store(theta, loglik, w.sum())

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


def _model_unit(model) -> float | None:
    return getattr(model, "time_unit_days_", None)


def clv(bgnbd: BGNBD | ParetoNBD, gg: GammaGamma, frequency, recency, T, monetary, *, horizon_days: float,
        discount_rate_per_year: float, time_unit_days: float | None = None, step_days: float = DAYS_PER_MONTH):
    """Discounted expected revenue of each customer over the next ``horizon_days`` days.

    The horizon is cut into steps of ``step_days`` days (default one month, 365.25/12 days; the last step
    ends at the horizon). With step ends d_k = min(k·step_days, horizon_days), k = 1…K, and the purchase
    model's time unit u (the unit recency and T were measured in when it was fitted — ``bgnbd.time_unit_days_``,
    recorded by ``fit(..., time_unit_days=)`` or ``fit_rfm``; ``time_unit_days`` is only needed for a model
    fitted without a unit, and is an error if it contradicts the model's unit):

        CLV = E[Z | x, m_x] · Σ_k (E[Y(d_k/u) | x, t_x, T] − E[Y(d_{k−1}/u) | x, t_x, T]) · (1 + d)^(−d_k/365.25)

    where E[Y(t) | …] is the purchase model's conditional expected number of purchases in the next t units
    (:meth:`BGNBD.expected_purchases`), E[Z | …] the Gamma-Gamma expected order value
    (:meth:`GammaGamma.expected_spend`) and d = ``discount_rate_per_year`` (e.g. 0.1 for 10% a year):
    purchases expected in a step are discounted from the end of that step. Hence horizon 0 gives 0, a zero
    rate gives E[Z] · E[Y(horizon/u)], and shorter steps approach continuous discounting.
    Returns revenue; multiply by a margin for profit.
    """
    horizon = _positive(horizon_days, "horizon_days", allow_zero=True)
    unit = _resolve_unit([("the purchase model", _model_unit(bgnbd)),
                          ("time_unit_days", _unit_of(time_unit_days, "time_unit_days"))], "the purchase model")
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


def customer_value(bgnbd: BGNBD | ParetoNBD, gg: GammaGamma, customers: pd.DataFrame, *, horizon_days: float,
                   discount_rate_per_year: float, step_days: float = DAYS_PER_MONTH,
                   time_unit_days: float | None = None) -> pd.DataFrame:
    """Per-customer predictions from a per-customer frame of :func:`rfm_table` (``per_customer=True``).

    The units of the frame (``customers.attrs["time_unit_days"]`` or ``time_unit_days``) and of the model
    must agree (ClvError otherwise). Returns the frame's customer_id (if any), frequency, recency, T and
    monetary with p_alive (at the end of calibration), expected_purchases (undiscounted, over the horizon),
    expected_spend (Gamma-Gamma E[Z | x, m_x]) and clv (discounted revenue, see :func:`clv`).
    """
    if not isinstance(customers, pd.DataFrame):
        raise ClvError("customers must be a pandas DataFrame from rfm_table(..., per_customer=True)")
    missing = [c for c in ("frequency", "recency", "T", "monetary") if c not in customers.columns]
    if missing:
        raise ClvError(f"customers needs the column(s) {', '.join(missing)} (use rfm_table(..., per_customer=True))")
    unit = _resolve_unit([("the purchase model", _model_unit(bgnbd)),
                          ("the customers frame", _unit_of(customers.attrs.get("time_unit_days"), "frame unit")),
                          ("time_unit_days", _unit_of(time_unit_days, "time_unit_days"))], "the customers frame")
    horizon = _positive(horizon_days, "horizon_days", allow_zero=True)
    keep = [c for c in ("customer_id", "frequency", "recency", "T", "monetary") if c in customers.columns]
    out = customers[keep].reset_index(drop=True).copy()
    args = (out.frequency.to_numpy(), out.recency.to_numpy(), out["T"].to_numpy())
    out["p_alive"] = np.asarray(bgnbd.probability_alive(*args), dtype="float64")
    out["expected_purchases"] = np.asarray(bgnbd.expected_purchases(horizon / unit, *args), dtype="float64")
    out["expected_spend"] = np.asarray(gg.expected_spend(out.frequency.to_numpy(), out.monetary.to_numpy()),
                                       dtype="float64")
    out["clv"] = np.asarray(clv(bgnbd, gg, *args, out.monetary.to_numpy(), horizon_days=horizon,
                                discount_rate_per_year=discount_rate_per_year, time_unit_days=unit,
                                step_days=step_days), dtype="float64")
    out.attrs["time_unit_days"] = unit
    return out


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

    def expected_discounted_lifetime(self, discount_rate: float) -> float:
        """DEL of a customer just acquired, in payments, the first one included (Fader & Hardie 2010):
        Σ_{t≥0} S(t)·(1+d)^{−t} = ₂F₁(1, β; α+β; 1/(1+d)) = 1 + DERL(renewals=0)/(1+d)."""
        self._check_fitted()
        d = _positive(discount_rate, "discount_rate")
        return float(special.hyp2f1(1, self.beta_, self.alpha_ + self.beta_, 1 / (1 + d)))

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


# --------------------------------------------------------------------------------------------------
# Calibration / holdout validation
# --------------------------------------------------------------------------------------------------


def holdout_expr(orders, calibration_end, holdout_end, *, time_unit_days: float = 7.0,
                 observed_from=None) -> ibis.Table:
    """:func:`rfm_expr` of the calibration period plus, per customer, ``holdout_purchases`` (distinct purchase
    days in the holdout, after ``calibration_end`` up to ``holdout_end`` inclusive — the same "purchase" as x)
    and ``holdout_spend`` (revenue of the holdout orders); 0 for customers without holdout orders. Customers
    whose first purchase is in the holdout are not included. An Ibis expression (nothing is executed)."""
    end = _day(calibration_end, "calibration_end")
    h_end = _day(holdout_end, "holdout_end")
    if h_end <= end:
        raise ClvError(f"holdout_end ({h_end}) must be after calibration_end ({end})")
    cal = rfm_expr(orders, calibration_end, time_unit_days=time_unit_days, observed_from=observed_from)
    o = _order_days(orders)
    h = o.filter((o.day > end) & (o.day <= h_end))
    hold = h.group_by("customer_id").aggregate(h_purchases=h.day.nunique(), h_spend=h.revenue.sum())
    j = cal.left_join(hold, "customer_id")
    return j.select(*cal.columns, holdout_purchases=ibis.coalesce(j.h_purchases, 0).cast("int64"),
                    holdout_spend=ibis.coalesce(j.h_spend, 0.0).cast("float64"))


def holdout_table(orders, calibration_end, holdout_end=None, time_unit_days: float = 7.0,
                  observed_from=None) -> pd.DataFrame:
    """One row per customer (first purchase on or before ``calibration_end``): the calibration RFM columns
    of :func:`rfm_table` (``per_customer=True``) plus holdout_purchases and holdout_spend, computed in the
    engine (:func:`holdout_expr`). ``holdout_end`` defaults to the last order day in the data.

    ``attrs``: time_unit_days, calibration_end, holdout_end, holdout_days (holdout_end − calibration_end)."""
    end = _day(calibration_end, "calibration_end")
    if holdout_end is None:
        last = _order_days(orders).day.max().execute()
        if last is None or pd.isna(last):
            raise ClvError("orders is empty: no holdout period")
        holdout_end = pd.Timestamp(last).date()
    h_end = _day(holdout_end, "holdout_end")
    expr = holdout_expr(orders, end, h_end, time_unit_days=time_unit_days, observed_from=observed_from)
    df = expr.order_by("customer_id").to_pandas().drop(columns=["recency_days", "T_days"])
    for col in ("monetary", "revenue", "holdout_spend"):
        df[col] = df[col].astype("float64")
    df = _with_unit(df.reset_index(drop=True), float(time_unit_days), end)
    df.attrs["holdout_end"] = str(h_end)
    df.attrs["holdout_days"] = (h_end - end).days
    return df


def _frequency_bins(frequency: pd.Series, max_frequency: int) -> pd.Series:
    labels = [str(k) for k in range(max_frequency)] + [f"{max_frequency}+"]
    codes = np.minimum(frequency.to_numpy(dtype="int64"), max_frequency)
    return pd.Series(pd.Categorical.from_codes(codes, categories=labels), index=frequency.index)


def _suppress(frame: pd.DataFrame, small: np.ndarray, columns: Sequence[str]) -> pd.DataFrame:
    """Blank ``columns`` of rows describing fewer than min_cell_size customers; add a ``suppressed`` flag."""
    frame = frame.copy()
    for col in columns:
        if pd.api.types.is_integer_dtype(frame[col]):
            frame[col] = frame[col].astype("Int64")
        frame.loc[small, col] = pd.NA if str(frame[col].dtype) == "Int64" else np.nan
    frame["suppressed"] = np.asarray(small, dtype=bool)
    return frame


def _min_cell(value) -> int:
    return check_min_cell_size(value, ClvError)


class _Result:
    """Frozen result objects: ``to_frame()`` is the headline table, the HTML repr shows it."""

    def to_frame(self) -> pd.DataFrame:  # pragma: no cover - overridden
        raise NotImplementedError

    def _repr_html_(self) -> str:
        return f"<p><b>{type(self).__name__}</b></p>" + self.to_frame().to_html(float_format="%.4g")


@dataclass(frozen=True, repr=False)
class HoldoutValidation(_Result):
    """Out-of-sample check of BG/NBD (+ Gamma-Gamma) on a holdout period after the calibration period.

    ``customers``: per customer the calibration RFM, holdout_purchases / holdout_spend (actual) and
    predicted_purchases (E[Y(t) | x, t_x, T], t = holdout length), p_alive (at calibration_end), p_purchase
    (P(≥ 1 purchase in the holdout)), predicted_spend (predicted_purchases × Gamma-Gamma E[Z | x, m_x]).
    ``by_frequency``: mean actual vs mean predicted holdout purchases by calibration frequency 0, 1, …,
    ``max_frequency``+ (Fader, Hardie & Lee 2005, fig. 3), cells under ``min_cell_size`` customers blanked.

    Brier scores (mean squared difference between a probability and the 0/1 outcome "purchased in the
    holdout"): ``brier_alive`` scores P(alive) against that outcome — a *proxy*, because being alive is never
    observed and an alive customer may simply not buy in the holdout, so even a perfect P(alive) scores
    above 0 and too high; ``brier_purchase`` scores the forecast of that very outcome, P(≥ 1 purchase in the
    holdout); ``brier_reference`` = ȳ(1 − ȳ) is the score of the constant holdout purchase rate (a yardstick:
    lower is better, a useful forecast beats it).
    """

    customers: pd.DataFrame
    by_frequency: pd.DataFrame
    model: BGNBD
    gamma_gamma: GammaGamma | None
    calibration_end: str
    holdout_end: str
    holdout_days: int
    time_unit_days: float
    n_customers: int
    actual_purchases: int
    predicted_purchases: float
    relative_error: float
    mae: float
    brier_alive: float
    brier_purchase: float
    brier_reference: float
    actual_spend: float = math.nan
    predicted_spend: float = math.nan
    spend_relative_error: float = math.nan
    spend_mae: float = math.nan

    def to_frame(self) -> pd.DataFrame:
        names = ["n_customers", "holdout_days", "actual_purchases", "predicted_purchases", "relative_error", "mae",
                 "brier_alive", "brier_purchase", "brier_reference", "actual_spend", "predicted_spend",
                 "spend_relative_error", "spend_mae"]
        return pd.DataFrame({"metric": names, "value": [float(getattr(self, n)) for n in names]})

    def __repr__(self) -> str:
        return (f"<HoldoutValidation {self.calibration_end} → {self.holdout_end}: {self.n_customers} customers, "
                f"actual {self.actual_purchases} vs predicted {self.predicted_purchases:.1f} purchases "
                f"({self.relative_error:+.1%}), MAE {self.mae:.3f}>")

    def _repr_html_(self) -> str:
        return (f"<p><b>Holdout validation</b> {self.calibration_end} → {self.holdout_end} "
                f"({self.holdout_days} days)</p>" + self.to_frame().to_html(index=False, float_format="%.4g")
                + self.by_frequency.to_html(index=False, float_format="%.3f"))


def validate_holdout(orders, calibration_end, holdout_end=None, *, time_unit_days: float = 7.0,
                     model: BGNBD | None = None, spend: bool = True, max_frequency: int = 7,
                     min_cell_size: int = 10, observed_from=None) -> HoldoutValidation:
    """Fit BG/NBD (or the given unfitted ``model``, e.g. :class:`ModifiedBGNBD`) on the calibration period and
    compare its predictions with the holdout period (:func:`holdout_table` builds both in the engine).

    Per-customer MAE of holdout purchases, total predicted vs actual (relative error = predicted/actual − 1),
    the conditional-expectation table by calibration frequency, Brier scores (see :class:`HoldoutValidation`)
    and, with ``spend=True``, the same for holdout revenue with a Gamma-Gamma fit on the repeat customers.
    "Purchase" = distinct purchase day of a customer, in calibration and holdout alike."""
    min_cell = _min_cell(min_cell_size)
    if not (isinstance(max_frequency, int | np.integer) and max_frequency >= 1):
        raise ClvError(f"max_frequency must be a whole number ≥ 1, not {max_frequency!r}")
    table = holdout_table(orders, calibration_end, holdout_end, time_unit_days, observed_from)
    unit = table.attrs["time_unit_days"]
    t_star = table.attrs["holdout_days"] / unit
    model = BGNBD() if model is None else model
    if not isinstance(model, BGNBD):
        raise ClvError("model must be an unfitted BGNBD or ModifiedBGNBD")
    rows = table.groupby(["frequency", "recency", "T"], as_index=False).size().rename(columns={"size": "count"})
    rows.attrs["time_unit_days"] = unit
    model.fit_rfm(rows)

    c = table.copy()
    args = (c.frequency.to_numpy(), c.recency.to_numpy(), c["T"].to_numpy())
    c["predicted_purchases"] = np.asarray(model.expected_purchases(t_star, *args), dtype="float64")
    c["p_alive"] = np.asarray(model.probability_alive(*args), dtype="float64")
    c["p_purchase"] = np.asarray(model.probability_purchase(t_star, *args), dtype="float64")
    bought = (c.holdout_purchases > 0).to_numpy(dtype="float64")
    rate = bought.mean()

    gg = None
    spend_fields = {}
    if spend:
        repeat = c[c.frequency > 0]
        gg = GammaGamma().fit(repeat.frequency, repeat.monetary)
        c["predicted_spend"] = c.predicted_purchases * np.asarray(
            gg.expected_spend(c.frequency.to_numpy(), c.monetary.to_numpy()), dtype="float64")
        actual_spend = float(c.holdout_spend.sum())
        predicted_spend = float(c.predicted_spend.sum())
        spend_fields = dict(actual_spend=actual_spend, predicted_spend=predicted_spend,
                            spend_relative_error=predicted_spend / actual_spend - 1 if actual_spend > 0 else math.nan,
                            spend_mae=float(np.mean(np.abs(c.predicted_spend - c.holdout_spend))))

    bins = _frequency_bins(c.frequency, max_frequency)
    agg = {"customers": ("holdout_purchases", "size"), "actual": ("holdout_purchases", "mean"),
           "predicted": ("predicted_purchases", "mean")}
    if spend:
        agg |= {"actual_spend": ("holdout_spend", "mean"), "predicted_spend": ("predicted_spend", "mean")}
    by = c.groupby(bins.rename("frequency"), observed=False).agg(**agg).reset_index()
    by["frequency"] = by["frequency"].astype(str)
    by["customers"] = by["customers"].fillna(0).astype("int64")
    by = _suppress(by, (by.customers < min_cell).to_numpy(), [col for col in by.columns if col != "frequency"])

    actual = int(c.holdout_purchases.sum())
    predicted = float(c.predicted_purchases.sum())
    return HoldoutValidation(
        customers=c, by_frequency=by, model=model, gamma_gamma=gg,
        calibration_end=table.attrs["calibration_end"], holdout_end=table.attrs["holdout_end"],
        holdout_days=int(table.attrs["holdout_days"]), time_unit_days=unit, n_customers=len(c),
        actual_purchases=actual, predicted_purchases=predicted,
        relative_error=predicted / actual - 1 if actual > 0 else math.nan,
        mae=float(np.mean(np.abs(c.predicted_purchases - c.holdout_purchases))),
        brier_alive=float(np.mean((c.p_alive.to_numpy() - bought) ** 2)),
        brier_purchase=float(np.mean((c.p_purchase.to_numpy() - bought) ** 2)),
        brier_reference=float(rate * (1 - rate)), **spend_fields)


# --------------------------------------------------------------------------------------------------
# Value segments
# --------------------------------------------------------------------------------------------------


def _values(value, id_column: str, value_column: str) -> pd.Series:
    """Per-customer values as a float Series indexed by customer id (from a Series or a frame)."""
    if isinstance(value, pd.DataFrame):
        missing = [c for c in (id_column, value_column) if c not in value.columns]
        if missing:
            raise ClvError(f"the value frame needs the column(s) {', '.join(missing)}")
        s = pd.Series(value[value_column].to_numpy(), index=value[id_column].astype(str).to_numpy())
    elif isinstance(value, pd.Series):
        s = pd.Series(value.to_numpy(), index=value.index.astype(str))
    else:
        raise ClvError("value must be a pandas Series indexed by customer id, or a frame with id and value columns")
    try:
        s = s.astype("float64")
    except (TypeError, ValueError) as exc:
        raise ClvError("customer values must be numeric") from exc
    if len(s) == 0:
        raise ClvError("no customers: the values are empty")
    _fail("value", "finite", ~np.isfinite(s.to_numpy()), s.to_numpy())
    if s.index.has_duplicates:
        raise ClvError(f"customer ids must be unique; e.g. {s.index[s.index.duplicated()][0]!r} repeats")
    return s.rename_axis(id_column)


@dataclass(frozen=True, repr=False)
class ValueSegments(_Result):
    """How value is concentrated across customers and who the most valuable customers are.

    ``deciles``: decile 1 = the 10% most valuable customers … 10 = the least (customers ranked by value,
    ties broken by customer id; sizes differ by at most one), with customers, total value, share of value,
    cumulative share, mean/min/max value. ``top_value_share``: share of the total value held by the top
    ``top_share`` (20%) of customers (``top_customers`` = round(top_share · n)). ``categories``: per column and
    category the customers and the share of each group (top vs rest) in that category. ``measures``: mean of
    numeric columns (e.g. mean order value, frequency) in the top vs the rest (missing values skipped).
    Cells describing fewer than ``min_cell_size`` customers are blanked (NaN/NA) and ``suppressed`` is True.
    """

    deciles: pd.DataFrame
    categories: pd.DataFrame
    measures: pd.DataFrame
    n_customers: int
    total_value: float
    top_share: float
    top_customers: int
    top_value_share: float
    min_cell_size: int

    def to_frame(self) -> pd.DataFrame:
        return self.deciles.copy()

    def __repr__(self) -> str:
        return (f"<ValueSegments: {self.n_customers} customers, top {self.top_share:.0%} hold "
                f"{self.top_value_share:.1%} of the value>")

    def _repr_html_(self) -> str:
        return (f"<p><b>Value segments</b>: the top {self.top_share:.0%} of customers hold "
                f"{self.top_value_share:.1%} of the value</p>"
                + "".join(t.to_html(index=False, float_format="%.4g")
                          for t in (self.deciles, self.categories, self.measures) if len(t)))


def value_segments(value, customers: pd.DataFrame | None = None, *, categories: Sequence[str] = (),
                   measures: Sequence[str] = (), top_share: float = 0.2, min_cell_size: int = 10,
                   id_column: str = "customer_id", value_column: str = "clv") -> ValueSegments:
    """Deciles of per-customer value, the share of value held by the top ``top_share`` of customers and a
    profile of that top group vs the rest (see :class:`ValueSegments`).

    ``value``: Series indexed by customer id, or a frame with ``id_column`` and ``value_column`` (e.g. the
    output of :func:`customer_value`). ``customers``: frame with ``id_column`` and the profile columns —
    ``categories`` (e.g. channel, country; missing shown as MISSING) and numeric ``measures`` (e.g.
    monetary, frequency); customers without a row there count as missing."""
    min_cell = _min_cell(min_cell_size)
    if not (isinstance(top_share, int | float) and 0 < top_share < 1):
        raise ClvError(f"top_share must be between 0 and 1, not {top_share!r}")
    v = _values(value, id_column, value_column)
    total = float(v.sum())
    if total <= 0:
        raise ClvError("the total value must be > 0 to compute shares of value")
    order = pd.DataFrame({"id": v.index, "value": v.to_numpy()}).sort_values(["value", "id"],
                                                                             ascending=[False, True])
    n = len(order)
    position = np.arange(n)
    order["decile"] = position * 10 // n + 1
    k = int(round(top_share * n))
    order["top"] = position < k

    dec = order.groupby("decile").agg(customers=("value", "size"), value=("value", "sum"),
                                      mean_value=("value", "mean"), min_value=("value", "min"),
                                      max_value=("value", "max")).reindex(range(1, 11))
    dec["customers"] = dec["customers"].fillna(0).astype("int64")
    dec.insert(2, "share_of_value", dec["value"] / total)
    dec.insert(3, "cumulative_share", dec["share_of_value"].fillna(0).cumsum())
    dec = _suppress(dec.reset_index(), (dec.customers < min_cell).to_numpy(),
                    ["customers", "value", "share_of_value", "cumulative_share", "mean_value", "min_value",
                     "max_value"])
    top_value = float(order.loc[order.top, "value"].sum()) / total if k >= min_cell else math.nan

    profile = order.set_index("id")[["top"]]
    cols = list(categories) + list(measures)
    if cols:
        if customers is None:
            raise ClvError("categories and measures need the customers frame")
        missing = [c for c in [id_column, *cols] if c not in customers.columns]
        if missing:
            raise ClvError(f"customers needs the column(s) {', '.join(missing)}")
        attrs = customers.assign(**{id_column: customers[id_column].astype(str)}).drop_duplicates(id_column)
        profile = profile.join(attrs.set_index(id_column)[cols])
    groups = {"top": profile.top.to_numpy(), "rest": ~profile.top.to_numpy()}

    # each cell (group × category, group × measure) is blanked on its own when it describes fewer than
    # min_cell_size customers; ``suppressed`` flags rows with any blanked cell
    cat_rows = []
    for col in categories:
        labels = profile[col].astype("object").where(profile[col].notna(), MISSING).astype(str)
        for cat in sorted(labels.unique()):
            row = {"column": col, "category": cat, "suppressed": False}
            for g, mask in groups.items():
                count = int((labels[mask] == cat).sum())
                size = int(mask.sum())
                small = count < min_cell or size < min_cell
                row[f"{g}_customers"] = pd.NA if small else count
                row[f"{g}_share"] = math.nan if small else count / size
                row["suppressed"] |= small
            cat_rows.append(row)
    cats = pd.DataFrame(cat_rows, columns=["column", "category", "top_customers", "top_share", "rest_customers",
                                           "rest_share", "suppressed"])
    meas_rows = []
    for col in measures:
        values = pd.to_numeric(profile[col], errors="coerce")
        row = {"measure": col, "suppressed": False}
        for g, mask in groups.items():
            got = values[mask].dropna()
            small = len(got) < min_cell
            row[f"{g}_customers"] = pd.NA if small else len(got)
            row[f"{g}_mean"] = math.nan if small else float(got.mean())
            row["suppressed"] |= small
        meas_rows.append(row)
    meas = pd.DataFrame(meas_rows, columns=["measure", "top_customers", "top_mean", "rest_customers", "rest_mean",
                                            "suppressed"])
    for frame in (cats, meas):
        for col in ("top_customers", "rest_customers"):
            frame[col] = frame[col].astype("Int64")
        for col in [c for c in frame.columns if c.endswith(("_share", "_mean"))]:
            frame[col] = frame[col].astype("float64")
        frame["suppressed"] = frame["suppressed"].astype(bool)
    return ValueSegments(deciles=dec, categories=cats, measures=meas, n_customers=n, total_value=total,
                         top_share=float(top_share), top_customers=k, top_value_share=top_value,
                         min_cell_size=min_cell)


# --------------------------------------------------------------------------------------------------
# The simple formula
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class SimpleClv(_Result):
    """Average order value × orders per year × years as a customer, overall (segment "all") and per segment.

    ``table`` columns: segment, customers, aov, orders_per_year, years_as_customer, value (= the product),
    share_above / share_below (shares of the segment's customers whose own value, their revenue per year
    observed × years_as_customer, is above / at or below the segment's value), suppressed."""

    table: pd.DataFrame
    years_as_customer: float
    years_source: str

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def __repr__(self) -> str:
        overall = self.table.iloc[0]
        return (f"<SimpleClv: {overall.aov:.2f} per order × {overall.orders_per_year:.2f} orders a year × "
                f"{self.years_as_customer:.2f} years = {overall.value:.2f} ({self.years_source})>")


def simple_clv(customers: pd.DataFrame, years_as_customer: float | BGNBD, *, by: str | None = None,
               max_years: float = 5.0, min_cell_size: int = 10, time_unit_days: float | None = None) -> SimpleClv:
    """The back-of-envelope CLV: average order value × orders per year × expected years as a customer.

    ``customers``: one row per customer from :func:`rfm_table` (``per_customer=True``: frequency, T, revenue;
    its time unit from ``attrs`` or ``time_unit_days``), plus the ``by`` column for segments. Per segment:

    - orders = purchase days (x + 1, the first included); AOV = Σ revenue / Σ orders;
    - orders per year = Σ orders / Σ years observed, where a customer is observed from the first purchase
      to the end of calibration (T) and **customers observed less than a year count as one year** (their
      purchases so far stand for their first year), so recent customers do not get annualised from a few
      days — a lower bound for them;
    - years as a customer: either a number the user states (e.g. from their own retention figures), or a
      fitted BG/NBD: its restricted mean lifetime ∫₀^H S(t) dt over ``max_years`` (H, default 5 years),
      :meth:`BGNBD.expected_lifetime` — the mean itself is infinite for most fits, hence the cap. One value
      for all segments (fit a model per segment and call per segment for segment lifetimes).

    Caveats, why this is a benchmark and :func:`clv` the estimate: the observed rate already averages over
    customers who have stopped buying, so multiplying by a lifetime counts attrition twice (the value is
    low); no discounting; one rate for everybody. The shares above/below the average show how skewed value
    is: usually most customers are below it.
    """
    min_cell = _min_cell(min_cell_size)
    if not isinstance(customers, pd.DataFrame):
        raise ClvError("customers must be a pandas DataFrame from rfm_table(..., per_customer=True)")
    need = ["frequency", "T", "revenue"] + ([by] if by is not None else [])
    missing = [c for c in need if c not in customers.columns]
    if missing:
        raise ClvError(f"customers needs the column(s) {', '.join(missing)} (use rfm_table(..., per_customer=True))")
    if len(customers) == 0:
        raise ClvError("no customers")
    unit = _resolve_unit([("the customers frame", _unit_of(customers.attrs.get("time_unit_days"), "frame unit")),
                          ("time_unit_days", _unit_of(time_unit_days, "time_unit_days"))], "the customers frame")
    if isinstance(years_as_customer, BGNBD):
        years = years_as_customer.expected_lifetime(_positive(max_years, "max_years") * DAYS_PER_YEAR) / DAYS_PER_YEAR
        source = f"{years_as_customer._model} restricted mean lifetime over {max_years:g} years"
    else:
        years = _positive(years_as_customer, "years_as_customer")
        source = "given"
    orders = customers["frequency"].to_numpy(dtype="float64") + 1
    revenue = customers["revenue"].to_numpy(dtype="float64")
    _fail("revenue", "finite and ≥ 0", ~np.isfinite(revenue) | (revenue < 0), revenue)
    observed = np.maximum(customers["T"].to_numpy(dtype="float64") * unit / DAYS_PER_YEAR, 1.0)
    own = revenue / observed * years  # each customer's own value: revenue per year observed × years
    frame = pd.DataFrame({"orders": orders, "revenue": revenue, "observed": observed, "own": own})
    parts = [("all", frame)]
    if by is not None:
        labels = customers[by].astype("object").where(customers[by].notna(), MISSING).astype(str).to_numpy()
        parts += [(seg, frame[labels == seg]) for seg in sorted(set(labels))]
    rows = []
    for seg, f in parts:
        aov = f.revenue.sum() / f.orders.sum()
        rate = f.orders.sum() / f.observed.sum()
        value = aov * rate * years
        above = float((f.own > value * (1 + 1e-12)).mean())
        rows.append({"segment": seg, "customers": len(f), "aov": aov, "orders_per_year": rate,
                     "years_as_customer": years, "value": value, "share_above": above, "share_below": 1 - above})
    table = pd.DataFrame(rows)
    table = _suppress(table, (table.customers < min_cell).to_numpy(),
                      ["customers", "aov", "orders_per_year", "value", "share_above", "share_below"])
    return SimpleClv(table=table, years_as_customer=float(years), years_source=source)


# --------------------------------------------------------------------------------------------------
# The report's readout
# --------------------------------------------------------------------------------------------------

TIME_UNITS = {"day": 1.0, "week": 7.0, "month": DAYS_PER_MONTH}
MODELS = {"bgnbd": BGNBD, "mbgnbd": ModifiedBGNBD, "pareto": ParetoNBD}
PERIOD_DAYS = 30


def _last_order_day(orders: ibis.Table) -> pd.Timestamp:
    last = pd.Timestamp(orders.ordered_at.max().to_pandas())
    return (last.tz_convert("UTC").tz_localize(None) if last.tzinfo else last).normalize()


def subscription_value(subscriptions: pd.DataFrame, observed_until, discount_rate_per_year: float,
                       periods: int = 12, min_customers: int = 30) -> pd.DataFrame:
    """Contractual value per plan with the shifted-beta-geometric model (Fader & Hardie 2007, 2010).

    The cohort of each plan: subscriptions started at least ``periods`` × 30 days before ``observed_until``;
    the numbers still subscribed after 0…``periods`` periods are fitted with sBG, survival is projected to
    24 and 36 periods, and a new subscriber's discounted expected lifetime (DEL, in payments, the first
    included) times the plan's mean monthly revenue is their expected value. The per-period discount rate is
    (1 + annual rate)^(30/365.25) − 1. Plans with fewer than ``min_customers`` in the cohort are left out.
    """
    until = pd.Timestamp(observed_until)
    s = subscriptions.copy()
    for col in ("started_at", "ended_at"):
        s[col] = pd.to_datetime(s[col])
        if s[col].dt.tz is not None:
            s[col] = s[col].dt.tz_convert("UTC").dt.tz_localize(None)
    period = pd.Timedelta(days=PERIOD_DAYS)
    cohort = s[s.started_at <= until - periods * period]
    ended = cohort.ended_at.notna().to_numpy()
    lived = ((cohort.ended_at.fillna(until) - cohort.started_at) / period).to_numpy()  # in periods
    d = (1 + discount_rate_per_year) ** (PERIOD_DAYS / DAYS_PER_YEAR) - 1
    rows = []
    plans = cohort.plan.fillna(MISSING) if "plan" in cohort else pd.Series("all", index=cohort.index)
    for plan, idx in cohort.groupby(plans).groups.items():
        if len(idx) < min_customers:
            continue
        at = cohort.index.get_indexer(idx)
        # still subscribed after k periods: running, or ended after more than k periods
        alive = [int((~ended[at] | (lived[at] > k + 1e-6)).sum()) for k in range(periods + 1)]
        try:
            model = ShiftedBetaGeometric().fit(alive)
        except ClvError:  # e.g. nobody churned within the periods (an annual plan)
            continue
        mrr = float(cohort.loc[idx, "mrr"].mean()) if "mrr" in cohort else math.nan
        payments = model.expected_discounted_lifetime(d)
        rows.append({"plan": str(plan), "customers": len(idx), "alpha": model.alpha_, "beta": model.beta_,
                     f"observed_{periods}": alive[-1] / alive[0],
                     f"fitted_{periods}": float(model.survival(periods)),
                     "projected_24": float(model.survival(24)), "projected_36": float(model.survival(36)),
                     "payments": payments, "monthly_revenue": mrr, "value": payments * mrr,
                     "curve": [a / alive[0] for a in alive]})
    return pd.DataFrame(rows)


@dataclass(frozen=True, repr=False)
class ClvReadout:
    """Everything the CLV report shows."""

    model: BGNBD | ParetoNBD
    gamma_gamma: GammaGamma
    values: pd.DataFrame  # per customer: customer_id, p_alive, expected_purchases, expected_spend, clv, segment
    validation: HoldoutValidation | None
    segments: ValueSegments
    simple: SimpleClv
    contractual: pd.DataFrame | None
    model_name: str
    horizon_days: int
    time_unit: str
    discount_rate: float
    segment: str | None
    as_of: str
    notes: tuple[str, ...] = ()


def analyze(source, model: str = "bgnbd", horizon_days: int = 365, time_unit: str = "week",
            discount_rate: float = 0.1, calibration_end: str = "", holdout_days: int = 182,
            segment: str | None = "channel", min_cell_size: int = 10) -> ClvReadout:
    """Fit the purchase model and Gamma-Gamma on all orders up to the last order day and value every customer
    over ``horizon_days``; validate the same model on a calibration/holdout split (``calibration_end``,
    default ``holdout_days`` before the last order day); value segments, the simple formula and, when there
    are subscriptions, the contractual (sBG) value per plan."""
    if model not in MODELS:
        raise ClvError(f"model must be one of {', '.join(MODELS)}, not {model!r}")
    if time_unit not in TIME_UNITS:
        raise ClvError(f"time_unit must be one of {', '.join(TIME_UNITS)}, not {time_unit!r}")
    unit = TIME_UNITS[time_unit]
    o = source.table("orders")
    orders = o.select("customer_id", "ordered_at", "revenue")
    as_of = _last_order_day(o)
    notes = []
    cal_end = pd.Timestamp(calibration_end) if calibration_end else as_of - pd.Timedelta(days=holdout_days)
    validation = None
    if cal_end >= as_of:
        notes.append(f"calibration_end {cal_end:%Y-%m-%d} leaves no holdout before the last order "
                     f"({as_of:%Y-%m-%d}); the model is not validated")
    else:
        validation = validate_holdout(orders, cal_end, as_of, time_unit_days=unit, model=MODELS[model](),
                                      min_cell_size=min_cell_size)
    per = rfm_table(orders, as_of, unit, per_customer=True)
    fitted = MODELS[model]().fit_rfm(rfm_table(orders, as_of, unit))
    repeat = per[per.frequency > 0]
    if len(repeat) < 2:
        raise ClvError("fewer than two repeat customers: spend per order cannot be modelled")
    gg = GammaGamma().fit(repeat.frequency, repeat.monetary)
    values = customer_value(fitted, gg, per, horizon_days=horizon_days, discount_rate_per_year=discount_rate)
    c = source.table("customers")
    categories = [segment] if segment else []
    if segment and segment not in c.columns:
        raise ClvError(f"customers has no column {segment!r}; its columns are {', '.join(c.columns)}")
    profile = c.select("customer_id", *categories).to_pandas() if categories else None
    if profile is not None:
        profile[segment] = profile[segment].astype("string").fillna(MISSING)
        values = values.merge(profile, on="customer_id", how="left")
    measures = values.assign(purchases=values.frequency + 1)[["customer_id", "purchases", "monetary"]]
    prof = measures if profile is None else measures.merge(profile, on="customer_id", how="left")
    segments = value_segments(values, prof, categories=categories, measures=["purchases", "monetary"],
                              min_cell_size=min_cell_size)
    simple_frame = per.merge(profile, on="customer_id", how="left") if profile is not None else per
    simple_frame.attrs = per.attrs
    simple = simple_clv(simple_frame, fitted, by=segment or None, min_cell_size=min_cell_size)
    contractual = None
    if source.has("subscriptions"):
        subs = source.table("subscriptions").to_pandas()
        contractual = subscription_value(subs, as_of + pd.Timedelta(days=1), discount_rate)
        if contractual.empty:
            notes.append("no plan has enough subscriptions observed for 12 periods to fit the contractual model")
            contractual = None
    return ClvReadout(fitted, gg, values, validation, segments, simple, contractual, model, horizon_days, time_unit,
                      discount_rate, segment or None, f"{as_of:%Y-%m-%d}", tuple(notes))


def model_parameters(readout: ClvReadout) -> pd.DataFrame:
    """Fitted parameters with standard errors of the purchase model and Gamma-Gamma, for the report."""
    parts = []
    for name, fitted in ((readout.model_name, readout.model), ("gamma_gamma", readout.gamma_gamma)):
        s = fitted.summary.copy()
        s.insert(0, "parameter", [str(i) for i in s.index])
        parts.append(s.assign(model=name)[["model", "parameter", "coef", "se(coef)"]])
    return pd.concat(parts, ignore_index=True)


def summary_points(readout: ClvReadout) -> list[str]:
    """Plain-language bullet points for the top of the CLV report."""
    v = readout.values
    years = readout.horizon_days / DAYS_PER_YEAR
    horizon = ("year" if round(years) == 1 else f"{years:.0f} years") if abs(years - round(years)) < 0.05 \
        else f"{readout.horizon_days} days"
    points = [f"An average customer is worth **{v.clv.mean():,.2f}** in revenue over the next {horizon} "
              f"(discounted at {readout.discount_rate:.0%} a year): {v.expected_purchases.mean():.2f} expected "
              f"purchases at {v.expected_spend.mean():,.2f} each. All {len(v):,} customers together: "
              f"{v.clv.sum():,.0f}."]
    seg = readout.segments
    points.append(f"Value is concentrated: the top {seg.top_share:.0%} of customers hold "
                  f"**{seg.top_value_share:.0%}** of the expected value; {(v.p_alive < 0.5).mean():.0%} of "
                  "customers are more likely gone than still buying.")
    if readout.segment and len(seg.categories):
        cat = seg.categories.dropna(subset=["top_share", "rest_share"])
        if len(cat):
            lift = cat.assign(diff=cat.top_share - cat.rest_share).sort_values("diff", ascending=False).iloc[0]
            points.append(f"The most valuable customers come more often from {readout.segment} "
                          f"**{lift.category}** ({lift.top_share:.0%} of the top group vs {lift.rest_share:.0%} "
                          "of the rest).")
    val = readout.validation
    if val is not None:
        quality = "close" if abs(val.relative_error) < 0.1 else "rough"
        points.append(f"Checked on the last {val.holdout_days} days, held out from the fit: the model predicted "
                      f"{val.predicted_purchases:,.0f} purchases against {val.actual_purchases:,} actual "
                      f"({val.relative_error:+.0%}, a {quality} fit; mean error per customer "
                      f"{val.mae:.2f} purchases).")
    s = readout.simple.table.iloc[0]
    points.append(f"Back of the envelope: {s.aov:,.2f} per order × {s.orders_per_year:.2f} orders a year × "
                  f"{s.years_as_customer:.1f} years ≈ {s.value:,.0f} per customer (a benchmark: it ignores "
                  "discounting and counts attrition twice).")
    if readout.contractual is not None:
        best = readout.contractual.sort_values("value", ascending=False).iloc[0]
        points.append(f"Subscriptions: a new **{best.plan}** subscriber is worth about {best.value:,.0f} "
                      f"({best.payments:.1f} discounted payments of {best.monthly_revenue:,.0f}); "
                      f"{best.projected_24:.0%} are projected to still subscribe after two years.")
    points += [f"Note: {n}" for n in readout.notes]
    return points


def headlines(readout: ClvReadout) -> tuple[list[tuple], dict]:
    """Headline cards and results.json values: ``mean_clv``, ``total_clv``, ``top20_share``, ``parameters``
    {model: {name: value}}, ``log_likelihood``, ``holdout`` {mae, relative_error, actual, predicted,
    brier_purchase} and ``contractual`` {plan: value}."""
    v = readout.values
    cards = [("mean_clv", float(v.clv.mean()), f"Mean CLV, {readout.horizon_days} days", ",.2f"),
             ("total_clv", float(v.clv.sum()), "Total CLV", ",.0f"),
             ("top20_share", readout.segments.top_value_share, "Value held by the top 20%", ".0%")]
    hidden = {
        "parameters": {readout.model_name: {k: float(x) for k, x in readout.model.params_.items()},
                       "gamma_gamma": {k: float(x) for k, x in readout.gamma_gamma.params_.items()}},
        "log_likelihood": {readout.model_name: float(readout.model.log_likelihood_),
                           "gamma_gamma": float(readout.gamma_gamma.log_likelihood_)},
        "time_unit_days": TIME_UNITS[readout.time_unit],
    }
    val = readout.validation
    if val is not None:
        cards.append(("holdout.relative_error", val.relative_error, "Holdout error (purchases)", "+.0%"))
        hidden |= {"holdout.mae": val.mae, "holdout.actual": val.actual_purchases,
                   "holdout.predicted": val.predicted_purchases, "holdout.brier_purchase": val.brier_purchase}
    if readout.contractual is not None:
        hidden["contractual"] = {r.plan: {"value": r.value, "payments": r.payments, "alpha": r.alpha,
                                          "beta": r.beta} for r in readout.contractual.itertuples()}
    return cards, hidden
