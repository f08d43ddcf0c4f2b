"""Customer feedback: Net Promoter Score, CSAT and response rates, and whether satisfaction predicts churn.

- NPS = 100·(P − D) with P, D the shares of promoters (9–10) and detractors (0–6). The answer is one draw
  from three categories, so Var(P − D) = [P(1 − P) + D(1 − D) + 2PD] / n (multinomial); the interval is
  NPS ± z·100·√Var. Two groups differ by NPS_a − NPS_b with Var_a + Var_b; whether the mix of categories
  differs across all groups is a χ² test of the category × group table.
- CSAT = share of answers 4–5 on the 1–5 scale, with a Wilson interval; also the mean score.
- Response rate = customers who answered / customers who could have (converted at least
  ``response_window_days`` before the last answer in the data).
- Satisfaction and churn: subscriptions live when the customer answered are followed from the answer to
  their end (censored at the end of the data); Kaplan–Meier per category and a Cox hazard ratio of
  detractors and passives against promoters (:mod:`pco_lib.stats.survival`).
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis
import numpy as np
import pandas as pd
from scipy import stats

from .data.privacy import suppress_small_cells
from .data.source import MISSING, DataError, DataSource
from .data.summaries import contractual_lifetimes
from .stats.intervals import nps, wilson_interval

CATEGORIES = ("promoter", "passive", "detractor")


def _category(score) -> ibis.Value:
    return ibis.cases((score >= 9, "promoter"), (score >= 7, "passive"), else_="detractor")


def survey_counts(source: DataSource, segment: str | None = None, period: str | None = None) -> pd.DataFrame:
    """Answers aggregated in the engine: per segment (customer column) and/or period (``"month"``/``"quarter"``
    of the answer) the counts answers, promoters, passives, detractors, csat_answers, csat_satisfied
    (4–5) and csat_sum."""
    if not source.has("surveys"):
        raise DataError("customer feedback needs the surveys table")
    s = source.table("surveys")
    keys = {}
    if segment:
        c = source.table("customers")
        if segment not in c.columns:
            raise DataError(f"customers has no column {segment!r}; its columns are {', '.join(c.columns)}")
        s = s.join(c.select("customer_id", _segment=c[segment].cast("string").fill_null(MISSING)), "customer_id")
        keys["segment"] = s._segment
    if period:
        if period not in ("month", "quarter"):
            raise ValueError(f"period must be month or quarter, not {period!r}")
        keys["period"] = s.answered_at.truncate({"month": "M", "quarter": "Q"}[period])
    s = s.mutate(_category=_category(s.nps), **keys)
    has_csat = "csat" in s.columns
    agg = dict(
        answers=s.count(),
        promoters=(s._category == "promoter").cast("int64").sum(),
        passives=(s._category == "passive").cast("int64").sum(),
        detractors=(s._category == "detractor").cast("int64").sum(),
        csat_answers=s.csat.notnull().cast("int64").sum() if has_csat else ibis.literal(0),
        csat_satisfied=(s.csat >= 4).cast("int64").sum() if has_csat else ibis.literal(0),
        csat_sum=s.csat.sum() if has_csat else ibis.literal(0),
    )
    if keys:
        out = s.group_by(list(keys)).aggregate(**agg).order_by(list(keys)).to_pandas()
    else:
        out = s.aggregate(**agg).to_pandas()
    for col in agg:
        out[col] = out[col].fillna(0).astype("int64")
    return out


def nps_table(counts: pd.DataFrame, alpha: float = 0.05, min_cell_size: int = 10) -> pd.DataFrame:
    """NPS with interval, category shares and CSAT per row of :func:`survey_counts`; groups with fewer
    than ``min_cell_size`` answers are suppressed."""
    out = counts.copy()
    out["nps"], out["nps_se"], out["nps_ci_low"], out["nps_ci_high"] = nps(out.promoters, out.detractors,
                                                                           out.answers, alpha)
    for cat, col in zip(CATEGORIES, ("promoters", "passives", "detractors")):
        out[f"{cat}_share"] = out[col] / out.answers
    with np.errstate(divide="ignore", invalid="ignore"):
        out["csat"] = np.where(out.csat_answers > 0, out.csat_satisfied / out.csat_answers, np.nan)
        out["csat_mean"] = np.where(out.csat_answers > 0, out.csat_sum / out.csat_answers, np.nan)
    out["csat_ci_low"], out["csat_ci_high"] = wilson_interval(out.csat_satisfied, out.csat_answers, alpha)
    keys = [c for c in ("segment", "period") if c in out]
    values = [c for c in out.columns if c not in keys and c != "answers"]
    return suppress_small_cells(out, "answers", min_cell_size, value_columns=values)


def segment_differences(counts: pd.DataFrame, alpha: float = 0.05, reference: str | None = None,
                        min_cell_size: int = 10) -> tuple[pd.DataFrame, float]:
    """NPS of each segment minus the reference segment (default: the one with most answers), with interval
    and p-value; and the χ² p-value for any difference in the category mix across segments."""
    counts = counts[counts.answers >= min_cell_size]
    if len(counts) < 2:
        raise ValueError("comparing segments needs at least two segments with enough answers")
    table = counts[["promoters", "passives", "detractors"]].to_numpy()
    table = table[:, table.sum(axis=0) > 0]
    chi2_p = float(stats.chi2_contingency(table).pvalue) if table.shape[1] > 1 else float("nan")
    ref = reference or counts.loc[counts.answers.idxmax(), "segment"]
    score, se, _, _ = nps(counts.promoters, counts.detractors, counts.answers, alpha)
    frame = counts[["segment", "answers"]].assign(nps=score, se=se).set_index("segment")
    base = frame.loc[ref]
    z = stats.norm.ppf(1 - alpha / 2)
    out = frame.drop(index=ref).assign(reference=ref)
    diff_se = np.sqrt(out.se**2 + base.se**2)
    out["difference"] = out.nps - base.nps
    out["ci_low"], out["ci_high"] = out.difference - z * diff_se, out.difference + z * diff_se
    out["p_value"] = 2 * stats.norm.sf(np.abs(out.difference) / diff_se)
    return out.drop(columns="se").reset_index(), chi2_p


def response_rates(source: DataSource, segment: str | None = None, response_window_days: int = 40,
                   alpha: float = 0.05, min_cell_size: int = 10) -> pd.DataFrame:
    """Customers who answered at least once / customers converted at least ``response_window_days`` before
    the last answer, per segment, with a Wilson interval."""
    c, s = source.table("customers"), source.table("surveys")
    last = pd.Timestamp(s.answered_at.max().to_pandas())
    eligible = c.filter(c.converted_at <= (last - pd.Timedelta(days=response_window_days)).to_pydatetime())
    answered = s.select("customer_id").distinct().mutate(answered=ibis.literal(1))
    j = eligible.left_join(answered, eligible.customer_id == answered.customer_id)
    seg = j[segment].cast("string").fill_null(MISSING) if segment else ibis.literal("all")
    j = j.mutate(segment=seg, answered=j.answered.fill_null(0))
    out = j.group_by("segment").aggregate(customers=j.count(), responded=j.answered.sum()).order_by("segment")
    out = out.to_pandas()
    out["response_rate"] = out.responded / out.customers
    out["ci_low"], out["ci_high"] = wilson_interval(out.responded, out.customers, alpha)
    return suppress_small_cells(out, "customers", min_cell_size)


def lifetimes_after_answer(source: DataSource) -> pd.DataFrame:
    """Subscriptions live when the customer answered, followed from the (first) answer: counts of distinct
    (days, churned, nps_category). Lifetime as in :func:`pco_lib.data.summaries.contractual_lifetimes`."""
    if not source.has("subscriptions"):
        raise DataError("linking satisfaction to churn needs the subscriptions table")
    s, sub = source.table("surveys"), source.table("subscriptions")
    first = s.group_by("customer_id").aggregate(answered_at=s.answered_at.min())
    first = first.join(s, [first.customer_id == s.customer_id, first.answered_at == s.answered_at])
    first = first.select(customer_id=first.customer_id, answered_at=first.answered_at,
                         nps_category=_category(first.nps)).distinct(on=["customer_id"], keep="first")
    until = max(pd.Timestamp(sub.started_at.max().to_pandas()), pd.Timestamp(sub.ended_at.max().to_pandas()))
    j = sub.join(first, "customer_id")
    live = j.filter((j.started_at <= j.answered_at) & (j.ended_at.isnull() | (j.ended_at > j.answered_at)))
    followed = live.select(customer_id=live.customer_id, started_at=live.answered_at, ended_at=live.ended_at,
                           nps_category=live.nps_category)
    return contractual_lifetimes(followed, columns=["nps_category"], observed_until=until)


@dataclass(frozen=True, repr=False)
class FeedbackReadout:
    """Everything the feedback report shows."""

    overall: pd.Series  # one row of nps_table
    trend: pd.DataFrame
    by_segment: pd.DataFrame | None
    differences: pd.DataFrame | None
    chi2_p: float | None
    churn_counts: pd.DataFrame | None
    churn: object | None  # survival.CoxResult of NPS category, promoters as reference
    segment: str | None
    alpha: float
    notes: tuple[str, ...] = ()


def analyze(source: DataSource, segment: str | None = "channel", period: str = "month", alpha: float = 0.05,
            min_cell_size: int = 10) -> FeedbackReadout:
    """NPS and CSAT overall, over time and by segment, segment differences, and the link to churn (when there
    are subscriptions); each part that the data cannot support is skipped with a note."""
    from .stats.cox import fit_cox
    from .stats.survival import SurvivalError

    notes = []
    overall = nps_table(survey_counts(source), alpha, min_cell_size).iloc[0]
    if overall.suppressed:
        raise DataError(f"fewer than {min_cell_size} survey answers: too few to report satisfaction")
    trend = nps_table(survey_counts(source, period=period), alpha, min_cell_size)
    by_segment = differences = chi2_p = None
    if segment:
        counts = survey_counts(source, segment)
        by_segment = nps_table(counts, alpha, min_cell_size)
        if (counts.answers >= min_cell_size).sum() > 1:
            differences, chi2_p = segment_differences(counts, alpha, min_cell_size=min_cell_size)
        else:
            notes.append(f"fewer than two {segment} values have {min_cell_size} answers: no comparison")
    churn_counts = churn = None
    if source.has("subscriptions"):
        churn_counts = lifetimes_after_answer(source)
        try:
            churn = fit_cox(churn_counts, ["nps_category"], alpha)
        except SurvivalError as exc:
            notes.append(f"the link between satisfaction and churn cannot be measured here: {exc}")
    return FeedbackReadout(overall, trend, by_segment, differences, chi2_p, churn_counts, churn, segment or None,
                           alpha, tuple(notes))


def _plain(value):
    return None if value is None or pd.isna(value) else float(value)


def summary_points(r: FeedbackReadout) -> list[str]:
    """Plain-language bullet points for the top of the feedback report."""
    overall, trend, differences, chi2_p = r.overall, r.trend, r.differences, r.chi2_p
    segment, churn, alpha = r.segment, r.churn, r.alpha
    points = [f"Net Promoter Score **{overall.nps:+.0f}** (95% interval {overall.nps_ci_low:+.0f} to "
              f"{overall.nps_ci_high:+.0f}) from {overall.answers:,.0f} answers: {overall.promoter_share:.0%} "
              f"promoters, {overall.passive_share:.0%} passives, {overall.detractor_share:.0%} detractors."]
    if pd.notna(overall.csat):
        points.append(f"CSAT: {overall.csat:.0%} of customers rate their experience 4 or 5 out of 5 "
                      f"(mean {overall.csat_mean:.1f}).")
    recent = trend.dropna(subset=["nps"])
    if len(recent) >= 6:
        last, before = recent.tail(3), recent.iloc[-6:-3]
        now = 100 * (last.promoters.sum() - last.detractors.sum()) / last.answers.sum()
        then = 100 * (before.promoters.sum() - before.detractors.sum()) / before.answers.sum()
        points.append(f"Over the last three months the NPS was {now:+.0f}, against {then:+.0f} in the three "
                      "months before.")
    if differences is not None and len(differences) and chi2_p is not None:
        clear = differences[differences.p_value < alpha]
        if chi2_p < alpha and len(clear):
            parts = [f"{r.segment} {r.difference:+.0f} points ({r.ci_low:+.0f} to {r.ci_high:+.0f})"
                     for r in clear.itertuples()]
            points.append(f"By {segment}, satisfaction differs (χ² p = {chi2_p:.2g}); against "
                          f"{clear.reference.iloc[0]}: " + "; ".join(parts) + ".")
        else:
            points.append(f"No {segment} stands out: the differences in NPS are within what chance produces "
                          f"(χ² p = {chi2_p:.2g}).")
    if churn is not None:
        hr = churn.summary.set_index("level")
        if "detractor" in hr.index:
            d = hr.loc["detractor"]
            sure = "clearly" if d.p_value < 0.001 else "probably" if d.p_value < alpha else "not detectably"
            points.append(f"Satisfaction predicts churn: detractors' subscriptions end {sure} faster than "
                          f"promoters' (hazard ratio **{d.hazard_ratio:.2f}**, {d.ci_low:.2f}–{d.ci_high:.2f}). "
                          "Following up detractors is a retention lever, not just a courtesy.")
    points += [f"Note: {n}" for n in r.notes]
    return points


def headlines(r: FeedbackReadout) -> tuple[list[tuple], dict]:
    """Headline cards and further results.json values: ``nps`` {score, ci_low, ci_high, answers},
    ``nps_by_segment`` {segment: {nps, ci_low, ci_high, answers}} (suppressed groups left out), ``csat`` and
    ``churn_hazard_ratio`` {category: {hazard_ratio, ci_low, ci_high, p_value}} against promoters."""
    overall, by_segment, churn = r.overall, r.by_segment, r.churn
    cards = [("nps.score", _plain(overall.nps), "Net Promoter Score", "+.0f",
              (_plain(overall.nps_ci_low), _plain(overall.nps_ci_high))),
             ("nps.answers", int(overall.answers), "Answers", ",d"),
             ("csat", _plain(overall.csat), "CSAT (4–5 of 5)", ".0%")]
    hidden = {"nps.ci_low": _plain(overall.nps_ci_low), "nps.ci_high": _plain(overall.nps_ci_high)}
    if by_segment is not None:
        hidden["nps_by_segment"] = {
            r.segment: {"nps": r.nps, "ci_low": r.nps_ci_low, "ci_high": r.nps_ci_high, "answers": int(r.answers)}
            for r in by_segment.itertuples() if not r.suppressed}
    if churn is not None:
        hr = churn.summary.set_index("level")
        hidden["churn_hazard_ratio"] = {
            level: {"hazard_ratio": r.hazard_ratio, "ci_low": r.ci_low, "ci_high": r.ci_high, "p_value": r.p_value}
            for level, r in hr.iterrows()}
        if "detractor" in hr.index:
            cards.append(("detractor_hazard_ratio", float(hr.loc["detractor", "hazard_ratio"]),
                          "Detractor churn hazard vs promoters", ".2f"))
    return cards, hidden
