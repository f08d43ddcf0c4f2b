"""Holdout validation of a purchase model: fit on the calibration period, predict the holdout, and compare
(MAE, totals, conditional expectations by frequency, Brier scores, spend).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.privacy import check_min_cell_size
from ..stats.models.base import ClvError
from ..stats.models.bgnbd import BGNBD
from ..stats.models.gamma_gamma import GammaGamma
from .engine import holdout_table


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

    ``model`` and ``gamma_gamma`` are the calibration fits (orders up to ``calibration_end`` only), with their
    parameters, standard errors (``summary``) and ``log_likelihood_``. ``holdout_days`` is the length actually
    used: ``holdout_end`` − ``calibration_end`` in days.

    ``customers``: per customer the calibration RFM, holdout_purchases / holdout_spend (actual) and
    predicted_purchases (E[Y(t) | x, t_x, T], t = holdout length), p_alive (at calibration_end), p_purchase
    (P(≥ 1 purchase in the holdout)), predicted_spend (predicted_purchases × Gamma-Gamma E[Z | x, m_x]).
    :func:`~pco_lib.clv.analyze` keeps ``customers`` without its rows (columns only): as long as the customer
    base, it held 2–3 GB at 10M customers for the rest of the report.
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
    calibration_start: str = ""  # the first purchase day of the calibration customers: where the period starts

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
                     min_cell_size: int = 10, observed_from=None, per_customer: bool = True) -> HoldoutValidation:
    """Fit BG/NBD (or the given unfitted ``model``, e.g. :class:`ModifiedBGNBD`) on the calibration period and
    compare its predictions with the holdout period (:func:`holdout_table` builds both in the engine).

    Per-customer MAE of holdout purchases, total predicted vs actual (relative error = predicted/actual − 1),
    the conditional-expectation table by calibration frequency, Brier scores (see :class:`HoldoutValidation`)
    and, with ``spend=True``, the same for holdout revenue with a Gamma-Gamma fit on the customers with a repeat
    purchase of revenue > 0 ($0 purchases count as purchases, not as spend; see :func:`rfm_expr`).
    "Purchase" = distinct purchase day of a customer, in calibration and holdout alike.

    ``per_customer=False``: the aggregates only (``customers`` is an empty frame with the columns but
    customer_id), which at 10M customers saves the ids (~0.7 GB) and the per-customer table afterwards."""
    min_cell = _min_cell(min_cell_size)
    if not (isinstance(max_frequency, int | np.integer) and max_frequency >= 1):
        raise ClvError(f"max_frequency must be a whole number ≥ 1, not {max_frequency!r}")
    table = holdout_table(orders, calibration_end, holdout_end, time_unit_days, observed_from,
                          customer_ids=per_customer)
    unit = table.attrs["time_unit_days"]
    t_star = table.attrs["holdout_days"] / unit
    model = BGNBD() if model is None else model
    if not isinstance(model, BGNBD):
        raise ClvError("model must be an unfitted BGNBD or ModifiedBGNBD")
    rows = table.groupby(["frequency", "recency", "T"], as_index=False).size().rename(columns={"size": "count"})
    rows.attrs["time_unit_days"] = unit
    model.fit_rfm(rows)

    c = table  # our own frame (holdout_table): columns are added to it, not to a copy
    args = (c.frequency.to_numpy(), c.recency.to_numpy(), c["T"].to_numpy())
    c["predicted_purchases"] = np.asarray(model.expected_purchases(t_star, *args), dtype="float64")
    c["p_alive"] = np.asarray(model.probability_alive(*args), dtype="float64")
    c["p_purchase"] = np.asarray(model.probability_purchase(t_star, *args), dtype="float64")
    bought = (c.holdout_purchases > 0).to_numpy(dtype="float64")
    rate = bought.mean()

    gg = None
    spend_fields = {}
    if spend:
        repeat = c[c.spend_frequency > 0]  # paid repeat purchases only: $0 ones are not spend
        if len(repeat) < 2:
            raise ClvError("fewer than two customers with a repeat purchase of revenue > 0 before calibration_end "
                           f"{table.attrs['calibration_end']}: spend per order cannot be modelled; choose a later "
                           "calibration_end (or a shorter holdout_days)")
        gg = GammaGamma().fit(repeat.spend_frequency, repeat.monetary)
        c["predicted_spend"] = c.predicted_purchases * np.asarray(
            gg.expected_spend(c.spend_frequency.to_numpy(), c.monetary.to_numpy()), dtype="float64")
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
        customers=c if per_customer else c.iloc[:0].copy(), by_frequency=by, model=model, gamma_gamma=gg,
        calibration_start=f"{pd.Timestamp(c.first_purchase.min()):%Y-%m-%d}",
        calibration_end=table.attrs["calibration_end"], holdout_end=table.attrs["holdout_end"],
        holdout_days=int(table.attrs["holdout_days"]), time_unit_days=unit, n_customers=len(c),
        actual_purchases=actual, predicted_purchases=predicted,
        relative_error=predicted / actual - 1 if actual > 0 else math.nan,
        mae=float(np.mean(np.abs(c.predicted_purchases - c.holdout_purchases))),
        brier_alive=float(np.mean((c.p_alive.to_numpy() - bought) ** 2)),
        brier_purchase=float(np.mean((c.p_purchase.to_numpy() - bought) ** 2)),
        brier_reference=float(rate * (1 - rate)), **spend_fields)
