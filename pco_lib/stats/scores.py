"""Effect sizes and model scores: Cohen's d, the AUC by the Mann–Whitney formula, weighted quantiles.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def cohens_d(n1: float, mean1: float, var1: float, n2: float, mean2: float, var2: float) -> float:
    """Standardized difference (mean1 − mean2) / pooled SD, pooled variance
    ((n1 − 1)·var1 + (n2 − 1)·var2) / (n1 + n2 − 2); sample variances in."""
    if n1 + n2 <= 2:
        return math.nan
    pooled = ((n1 - 1) * var1 + (n2 - 1) * var2) / (n1 + n2 - 2)
    return (mean1 - mean2) / math.sqrt(pooled) if pooled > 0 else math.nan


def auc(scores, labels) -> float:
    """Area under the ROC curve by the Mann–Whitney formula: (R₊ − n₊(n₊ + 1)/2) / (n₊ n₋), R₊ the sum of
    the positives' ranks among all scores (ties get average ranks, i.e. count one half). NaN without both
    classes."""
    s = np.asarray(scores, float)
    y = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = stats.rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def weighted_quantile(values, counts, q: float) -> float:
    """Quantile ``q`` of ``values`` repeated ``counts`` times, with linear interpolation (numpy's default,
    Hyndman–Fan type 7), without expanding the rows."""
    v = np.asarray(values, float)
    w = np.asarray(counts, np.int64)
    keep = w > 0
    v, w = v[keep], w[keep]
    if len(v) == 0:
        return math.nan
    order = np.argsort(v, kind="stable")
    v, cum = v[order], np.cumsum(w[order])
    h = (cum[-1] - 1) * q
    lo, hi = math.floor(h), math.ceil(h)
    v_lo = v[np.searchsorted(cum, lo, side="right")]
    v_hi = v[np.searchsorted(cum, hi, side="right")]
    return float(v_lo + (h - lo) * (v_hi - v_lo))
