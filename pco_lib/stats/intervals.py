"""Intervals for proportions and scores: Wilson's for a proportion, the multinomial interval of an NPS.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def wilson_interval(successes, n, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a proportion (same as statsmodels ``proportion_confint(method="wilson")``)."""
    k, n = np.asarray(successes, float), np.asarray(n, float)
    z = stats.norm.ppf(1 - alpha / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return centre - half, centre + half


def nps(promoters, detractors, answers, alpha: float = 0.05) -> tuple[float, float, float, float]:
    """NPS (−100…100), its standard error and interval from the counts (module docstring)."""
    n = np.asarray(answers, float)
    p, d = np.asarray(promoters, float) / n, np.asarray(detractors, float) / n
    score = 100 * (p - d)
    se = 100 * np.sqrt((p * (1 - p) + d * (1 - d) + 2 * p * d) / n)
    z = stats.norm.ppf(1 - alpha / 2)
    return score, se, score - z * se, score + z * se
