"""Discounted customer value from a fitted purchase model and Gamma-Gamma: expected purchases over an
explicit horizon (days) discounted at an annual rate, times expected order value.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .base import (
    DAYS_PER_MONTH,
    DAYS_PER_YEAR,
    ClvError,
    _array,
    _distinct_rows,
    _like,
    _model_unit,
    _rfm_arrays,
    positive_number,
    resolve_unit,
    unit_of,
)
from .bgnbd import BGNBD
from .gamma_gamma import GammaGamma
from .pareto_nbd import ParetoNBD


def clv(bgnbd: BGNBD | ParetoNBD, gg: GammaGamma, frequency, recency, T, monetary, *, horizon_days: float,
        discount_rate_per_year: float, time_unit_days: float | None = None, step_days: float = DAYS_PER_MONTH,
        spend_frequency=None):
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
    Returns revenue; multiply by a margin for profit. ``spend_frequency``: the number of repeat purchases
    ``monetary`` is the mean of, when it differs from ``frequency`` (e.g. $0 purchases left out of spend);
    E[Z | …] is then computed with it.
    """
    horizon = positive_number(horizon_days, "horizon_days", allow_zero=True)
    unit = resolve_unit([("the purchase model", _model_unit(bgnbd)),
                          ("time_unit_days", unit_of(time_unit_days, "time_unit_days"))], "the purchase model")
    step = positive_number(step_days, "step_days")
    rate = _discount_rate(discount_rate_per_year)
    x, tx, t = _rfm_arrays(frequency, recency, T)
    spend_x = x if spend_frequency is None else _array(spend_frequency, "spend_frequency")
    spend = np.asarray(gg.expected_spend(spend_x, _array(monetary, "monetary")), dtype="float64")
    rows, codes = _distinct_rows(x, tx, t)  # the purchase model once per distinct history
    purchases = _discounted_purchases(bgnbd, x[rows], tx[rows], t[rows], horizon, unit, step, rate)
    return _like(purchases[codes] * spend, frequency, recency, T, monetary)


def _discount_rate(value) -> float:
    if not (isinstance(value, int | float | np.integer | np.floating) and math.isfinite(value) and value > -1):
        raise ClvError(f"discount_rate_per_year must be a finite annual rate > −1 (e.g. 0.1), not {value!r}")
    return float(value)


def _discounted_purchases(bgnbd, x, tx, t, horizon: float, unit: float, step: float, rate: float) -> np.ndarray:
    """The purchase part of :func:`clv` per row: Σ_k (E[Y(d_k/u)] − E[Y(d_{k−1}/u)]) · (1 + d)^(−d_k/365.25)."""
    total = np.zeros(len(x))
    previous = np.zeros(len(x))
    for k in range(1, (math.ceil(horizon / step - 1e-9) if horizon > 0 else 0) + 1):
        end_days = min(k * step, horizon)
        cumulative = np.asarray(bgnbd.expected_purchases(end_days / unit, x, tx, t), dtype="float64")
        total += (cumulative - previous) * (1 + rate) ** (-end_days / DAYS_PER_YEAR)
        previous = cumulative
    return total


def customer_value(bgnbd: BGNBD | ParetoNBD, gg: GammaGamma, customers: pd.DataFrame, *, horizon_days: float,
                   discount_rate_per_year: float, step_days: float = DAYS_PER_MONTH,
                   time_unit_days: float | None = None) -> pd.DataFrame:
    """Per-customer predictions from a per-customer frame of :func:`rfm_table` (``per_customer=True``).

    The units of the frame (``customers.attrs["time_unit_days"]`` or ``time_unit_days``) and of the model
    must agree (ClvError otherwise). Returns the frame's customer_id (if any), frequency, recency, T and
    monetary with p_alive (at the end of calibration), expected_purchases (undiscounted, over the horizon),
    expected_spend (Gamma-Gamma E[Z | x, m_x]) and clv (discounted revenue, see :func:`clv`). With a
    ``spend_frequency`` column (the repeat purchases ``monetary`` is the mean of), E[Z] uses it for x.
    """
    if not isinstance(customers, pd.DataFrame):
        raise ClvError("customers must be a pandas DataFrame from rfm_table(..., per_customer=True)")
    missing = [c for c in ("frequency", "recency", "T", "monetary") if c not in customers.columns]
    if missing:
        raise ClvError(f"customers needs the column(s) {', '.join(missing)} (use rfm_table(..., per_customer=True))")
    unit = resolve_unit([("the purchase model", _model_unit(bgnbd)),
                          ("the customers frame", unit_of(customers.attrs.get("time_unit_days"), "frame unit")),
                          ("time_unit_days", unit_of(time_unit_days, "time_unit_days"))], "the customers frame")
    horizon = positive_number(horizon_days, "horizon_days", allow_zero=True)
    keep = [c for c in ("customer_id", "frequency", "recency", "T", "monetary") if c in customers.columns]
    out = customers[keep].reset_index(drop=True).copy()
    args = (out.frequency.to_numpy(), out.recency.to_numpy(), out["T"].to_numpy())
    spend_x = (customers["spend_frequency"].to_numpy(dtype="float64") if "spend_frequency" in customers.columns
               else out.frequency.to_numpy())
    rows, codes = _distinct_rows(*args)  # once per distinct history
    distinct = [a[rows] for a in args]
    out["p_alive"] = np.asarray(bgnbd.probability_alive(*distinct), dtype="float64")[codes]
    out["expected_purchases"] = np.asarray(bgnbd.expected_purchases(horizon / unit, *distinct), dtype="float64")[codes]
    out["expected_spend"] = np.asarray(gg.expected_spend(spend_x, out.monetary.to_numpy()), dtype="float64")
    purchases = _discounted_purchases(bgnbd, *distinct, horizon, unit, positive_number(step_days, "step_days"),
                                      _discount_rate(discount_rate_per_year))
    out["clv"] = purchases[codes] * out["expected_spend"].to_numpy()  # = clv(), on the histories found above
    out.attrs["time_unit_days"] = unit
    return out
