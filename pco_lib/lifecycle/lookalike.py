"""Lookalikes of the top segment.

**Lookalikes**: a logistic regression (statsmodels GLM, binomial) of "in a top RFM segment at ``as_of``"
on the first ``days`` after conversion (orders, revenue, events, channel and device dummies); trained on
the older customers, judged on the newer ones (AUC by the Mann–Whitney formula, a calibration table),
then applied to the recent customers whose label is not knowable yet.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..data.privacy import DEFAULT_MIN_CELL_SIZE, suppress_small_cells
from ..data.source import MISSING
from ..stats.scores import auc
from .common import SegmentError, _complete, _day, _min_cell, _Result
from .rfm import _top, early_behaviour_expr, rfm_expr


def lookalike_frame(customers, orders, as_of, *, events=None, days: int = 30, top: Sequence[str] = ("Champions",),
                    columns: Sequence[str] = ("channel", "device")) -> pd.DataFrame:
    """One row per customer whose first ``days`` are complete at ``as_of``: customer_id, converted (day),
    the early behaviours of :func:`early_behaviour_expr`, ``columns`` and label (1 = in a ``top`` RFM
    segment at ``as_of``)."""
    top = _top(top)
    day = _day(as_of, "as_of")
    e = early_behaviour_expr(customers, orders, events=events, days=days, columns=columns)
    e = e.filter(_complete(e, day, days))
    r = rfm_expr(orders, day)
    r = r.select(_rid=r.customer_id, _top=r.segment.isin(list(top)))
    j = e.left_join(r, e.customer_id == r._rid)
    out = j.select(*e.columns, label=j._top.fill_null(False).cast("int64")).order_by("customer_id").to_pandas()
    out["converted"] = pd.to_datetime(out["converted"]).dt.date
    return out


@dataclass(frozen=True, repr=False)
class Lookalike(_Result):
    """A fitted lookalike model and how well it ranks newer customers.

    ``coefficients``: term, coef, se, z, p_value, odds_ratio with its interval. ``auc``: holdout AUC
    (``auc_train`` in sample). ``calibration``: holdout deciles of the predicted probability (1 = lowest) with
    customers, mean_predicted, observed_rate, suppressed. ``scores``: recent customers (customer_id,
    converted, score) — ids, so for a CSV file, never a report page.
    """

    coefficients: pd.DataFrame
    auc: float
    auc_train: float
    calibration: pd.DataFrame
    scores: pd.DataFrame
    train_customers: int
    train_positive_rate: float
    holdout_customers: int
    holdout_positive_rate: float
    train_until: dt.date
    holdout_until: dt.date
    numeric: tuple[str, ...]
    levels: dict = field(default_factory=dict)  # categorical column -> non-reference levels
    params: pd.Series | None = None

    def to_frame(self) -> pd.DataFrame:
        return self.coefficients.copy()

    def __repr__(self) -> str:
        return (f"<Lookalike: holdout AUC {self.auc:.3f} on {self.holdout_customers:,} customers; "
                f"{len(self.scores):,} recent customers scored>")

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predicted probability of reaching the top segment for rows with the model's columns."""
        return _predict(self.params, frame, self.numeric, self.levels)


def _predict(params: pd.Series, frame: pd.DataFrame, numeric: Sequence[str], levels: dict) -> np.ndarray:
    if len(frame) == 0:
        return np.array([], dtype=float)
    x = _design(frame, numeric, levels)
    return 1 / (1 + np.exp(-(x.to_numpy(float) @ params.reindex(x.columns).to_numpy(float))))


def _design(frame: pd.DataFrame, numeric: Sequence[str], levels: dict) -> pd.DataFrame:
    x = pd.DataFrame({"const": 1.0}, index=frame.index)
    for col in numeric:
        x[col] = frame[col].astype(float)
    for col, values in levels.items():
        labels = frame[col].astype("object").where(frame[col].notna(), MISSING).astype(str)
        for v in values:
            x[f"{col}={v}"] = (labels == v).astype(float)
    return x


def calibration_table(predicted, observed, bins: int = 10,
                      min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> pd.DataFrame:
    """Predicted vs observed rate per quantile bin of the prediction (bin 1 = lowest predictions; equal
    sizes, ties broken by position): bin, customers, mean_predicted, observed_rate, suppressed."""
    p = np.asarray(predicted, float)
    y = np.asarray(observed, float)
    columns = ["bin", "customers", "mean_predicted", "observed_rate"]
    if len(p) == 0:
        return pd.DataFrame(columns=[*columns, "suppressed"])
    k = min(bins, len(p))
    order = np.argsort(p, kind="stable")
    b = np.empty(len(p), dtype=int)
    b[order] = np.arange(len(p)) * k // len(p) + 1
    out = (pd.DataFrame({"bin": b, "p": p, "y": y}).groupby("bin")
           .agg(customers=("p", "size"), mean_predicted=("p", "mean"), observed_rate=("y", "mean")).reset_index())
    return suppress_small_cells(out, "customers", _min_cell(min_cell_size), ["mean_predicted", "observed_rate"])


def fit_lookalike(frame: pd.DataFrame, as_of, *, recent_days: int = 90, train_share: float = 0.7,
                  numeric: Sequence[str] | None = None, categorical: Sequence[str] = ("channel", "device"),
                  alpha: float = 0.05, min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> Lookalike:
    """Logistic regression (statsmodels GLM, binomial) of ``label`` on the early behaviours of
    :func:`lookalike_frame` and dummies of ``categorical`` (reference = the most common level in training).

    Customers converted at least ``recent_days`` before ``as_of`` have had time to reach the top segment:
    the oldest ``train_share`` of them (by conversion day) train the model, the newer ones are the holdout.
    Customers converted within the last ``recent_days`` are scored.
    """
    from statsmodels.genmod.families import Binomial  # not statsmodels.api: it imports all of statsmodels (0.7 s)
    from statsmodels.genmod.generalized_linear_model import GLM

    min_cell = _min_cell(min_cell_size)
    if not 0 < train_share < 1:
        raise SegmentError("train_share must be between 0 and 1")
    day = _day(as_of, "as_of")
    numeric = tuple(numeric) if numeric is not None else tuple(
        c for c in frame.columns if c.split("_")[0] in ("orders", "revenue", "events") and c.endswith("d"))
    missing = [c for c in ("customer_id", "converted", "label", *numeric, *categorical) if c not in frame.columns]
    if missing:
        raise SegmentError(f"the lookalike frame needs the column(s) {', '.join(missing)}")
    converted = pd.to_datetime(frame["converted"])
    cutoff = pd.Timestamp(day - dt.timedelta(days=recent_days))
    mature = frame[converted <= cutoff].assign(_c=converted[converted <= cutoff]).sort_values(["_c", "customer_id"])
    recent = frame[converted > cutoff]
    n_train = int(round(train_share * len(mature)))
    train, holdout = mature.iloc[:n_train], mature.iloc[n_train:]
    if n_train < 2 or train["label"].nunique() < 2:
        raise SegmentError(f"cannot train the lookalike model: {n_train} training customers with "
                           f"{int(train['label'].sum()) if n_train else 0} in the top segment; use an earlier "
                           "recent_days cut, a larger top segment or more data")
    levels = {}
    for col in categorical:
        labels = train[col].astype("object").where(train[col].notna(), MISSING).astype(str)
        sizes = labels.value_counts()
        levels[col] = sorted(v for v in sizes.index if v != sizes.index[0])
    x = _design(train, numeric, levels)
    x = x.loc[:, (x != 0).any() | (x.columns == "const")]
    try:
        fit = GLM(train["label"].astype(float), x, family=Binomial()).fit()
    except Exception as exc:  # perfect separation, singular design: say so plainly
        raise SegmentError(f"the lookalike model could not be fitted ({exc})") from None
    ci = fit.conf_int(alpha)
    with np.errstate(over="ignore"):  # a near-separated level's interval reaches e^700+: an odds ratio of inf
        coefs = pd.DataFrame({"term": x.columns, "coef": fit.params.to_numpy(), "se": fit.bse.to_numpy(),
                              "z": fit.tvalues.to_numpy(), "p_value": fit.pvalues.to_numpy(),
                              "odds_ratio": np.exp(fit.params.to_numpy()),
                              "odds_ratio_ci_low": np.exp(ci[0].to_numpy()),
                              "odds_ratio_ci_high": np.exp(ci[1].to_numpy())})
    levels = {col: [v for v in vals if f"{col}={v}" in x.columns] for col, vals in levels.items()}
    p_train = _predict(fit.params, train, numeric, levels)
    p_hold = _predict(fit.params, holdout, numeric, levels)
    calibration = calibration_table(p_hold, holdout["label"].to_numpy(), min_cell_size=min_cell)
    scores = pd.DataFrame({"customer_id": recent["customer_id"].to_numpy(), "converted": recent["converted"].to_numpy(),
                           "score": _predict(fit.params, recent, numeric, levels)})
    scores = scores.sort_values(["score", "customer_id"], ascending=[False, True]).reset_index(drop=True)
    return Lookalike(
        coefficients=coefs, auc=auc(p_hold, holdout["label"]), auc_train=auc(p_train, train["label"]),
        calibration=calibration, scores=scores, train_customers=len(train),
        train_positive_rate=float(train["label"].mean()), holdout_customers=len(holdout),
        holdout_positive_rate=float(holdout["label"].mean()) if len(holdout) else math.nan,
        train_until=train["_c"].max().date(), holdout_until=holdout["_c"].max().date() if len(holdout) else day,
        numeric=numeric, levels=levels, params=fit.params)


def lookalike(customers, orders, as_of, *, events=None, days: int = 30, top: Sequence[str] = ("Champions",),
              categorical: Sequence[str] = ("channel", "device"), recent_days: int = 90, train_share: float = 0.7,
              min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> Lookalike:
    """:func:`lookalike_frame` then :func:`fit_lookalike`."""
    frame = lookalike_frame(customers, orders, as_of, events=events, days=days, top=top, columns=categorical)
    return fit_lookalike(frame, as_of, recent_days=recent_days, train_share=train_share, categorical=categorical,
                         min_cell_size=min_cell_size)
