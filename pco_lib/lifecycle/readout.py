"""The ``lifecycle_segments`` report's readout: every part of the lifecycle view at ``as_of``, each left out with a note
when its data is missing, plus the summary points and headline keys.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.currencies import money
from ..data.privacy import DEFAULT_MIN_CELL_SIZE
from .common import ALL, SegmentError, _day, shared_views
from .lookalike import Lookalike, lookalike
from .rfm import SegmentProfile, measure_label, profile_top_segment, rfm_grid, rfm_segments
from .stages import StageRules, Transitions, stage_counts, stage_counts_by, stage_transitions
from .timing import (
    LeadTiming,
    contact_window,
    gap_summary,
    lead_conversion_table,
    lead_time_counts,
    lead_time_to_convert,
    repurchase_gap_counts,
)


@dataclass(frozen=True, repr=False)
class LifecycleReadout:
    """Everything the lifecycle report shows (customer-level lists only in ``contacts`` and
    ``lookalike.scores``, which go to CSV files)."""

    as_of: dt.date
    start: dt.date
    stages: pd.DataFrame
    stages_by_segment: pd.DataFrame | None
    transitions: Transitions
    rfm: pd.DataFrame
    rfm_grid: pd.DataFrame
    profile: SegmentProfile | None
    lookalike: Lookalike | None
    gaps: pd.DataFrame
    contacts: pd.DataFrame
    leads: pd.DataFrame | None
    lead_timing: LeadTiming | None
    segment: str | None
    lead_time_days: int
    notes: tuple[str, ...] = ()


def analyze(source, as_of: str = "", compare_days: int = 90, segment: str | None = "channel",
            lead_time_days: int = 14, rules: StageRules = StageRules(),
            min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> LifecycleReadout:
    """Stages now and ``compare_days`` ago with the transitions between them, RFM segments and a profile of
    the Champions, the lookalike model, repurchase gaps and contact windows per ``segment``, and lead
    conversion (when there is a leads table). ``as_of`` defaults to the last order day.

    A ``compare_days`` reaching back before the data (before the first conversion or order day) is
    shortened to start on that first day, with a note and ``parameters_used.compare_days``: before it every
    customer would be "not yet a customer", which compares nothing."""
    c, o = source.table("customers"), source.table("orders")
    leads = source.table("leads") if source.has("leads") else None
    events = source.table("events") if source.has("events") else None
    last = pd.Timestamp(o.ordered_at.max().to_pandas())
    day = _day(as_of, "as_of") if as_of else last.date()
    if not (isinstance(compare_days, int | np.integer) and compare_days >= 1):
        raise SegmentError(f"compare_days must be a whole number of days ≥ 1, not {compare_days!r}")
    start = day - dt.timedelta(days=compare_days)
    notes = []
    first = min(pd.Timestamp(c.converted_at.min().to_pandas()), pd.Timestamp(o.ordered_at.min().to_pandas())).date()
    if start < first < day:
        start = first
        notes.append(f"compare_days ({compare_days}) reaches back before the data, which starts on {first}; the "
                     f"comparison starts there instead ({(day - first).days} days before {day})")
    if segment and segment not in c.columns:
        raise SegmentError(f"customers has no column {segment!r}; its columns are {', '.join(c.columns)}")
    with shared_views():  # the per-customer views are computed once and shared by the sections
        if segment:
            stages, by_segment = stage_counts_by(c, o, day, segment, rules, leads=leads, min_cell_size=min_cell_size)
        else:
            stages, by_segment = stage_counts(c, o, day, rules, leads=leads, min_cell_size=min_cell_size), None
        transitions = stage_transitions(c, o, start, day, rules, leads=leads, min_cell_size=min_cell_size)
        categories = [x for x in dict.fromkeys([segment, "channel", "device"]) if x and x in c.columns]
        try:
            profile = profile_top_segment(c, o, day, categories=categories, events=events,
                                          min_cell_size=min_cell_size)
        except (SegmentError, ValueError) as exc:
            profile = None
            notes.append(f"the Champions could not be profiled: {exc}")
        try:
            model = lookalike(c, o, day, events=events, categorical=categories, min_cell_size=min_cell_size)
            if model.note:
                notes.append(model.note)
        except (SegmentError, ValueError) as exc:
            model = None
            notes.append(f"no lookalike model: {exc}")
        gaps = gap_summary(repurchase_gap_counts(o, day, c, by=segment or None, rules=rules), lead_time_days,
                           min_cell_size=min_cell_size)
        contacts = contact_window(o, day, gaps, c, by=segment or None, rules=rules)
        lead_table = lead_timing = None
        if leads is not None:
            from ..stats.survival import SurvivalError

            counts = lead_time_counts(leads, c)
            lead_table = lead_conversion_table(counts, min_cell_size=min_cell_size)
            try:
                lead_timing = lead_time_to_convert(counts, min_cell_size=min_cell_size)
            except SurvivalError:
                notes.append("no lead has converted yet, so time to convert cannot be estimated")
        rfm, grid = rfm_segments(o, day, min_cell_size), rfm_grid(o, day)
    return LifecycleReadout(day, start, stages, by_segment, transitions, rfm, grid, profile, model, gaps, contacts,
                            lead_table, lead_timing, segment or None, lead_time_days, tuple(notes))


def _contact_advice(gaps: pd.DataFrame) -> str:
    """Segments grouped by their contact day: "**day 7** after the last order for email and organic (they
    usually buy again after 13–14 days); **day 9** for paid_search (18 days)"."""
    if len(gaps) == 1 and str(gaps.segment.iloc[0]) == ALL:  # no segment: one piece of advice for everybody
        row = gaps.iloc[0]
        return (f"**day {row.contact_day:.0f}** after the last order (customers usually buy again after "
                f"{row.median_days:.0f} days)")
    parts = []
    for i, (day, rows) in enumerate(gaps.groupby("contact_day", sort=True)):
        names = rows.segment.astype(str).tolist()
        who = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        low, high = rows.median_days.min(), rows.median_days.max()
        gap = f"{low:.0f}" if round(low) == round(high) else f"{low:.0f}–{high:.0f}"
        after = " after the last order" if i == 0 else ""
        they = "they usually buy again after " if i == 0 else ""
        parts.append(f"**day {day:.0f}**{after} for {who} ({they}{gap} days)")
    return "; ".join(parts)


def summary_points(r: LifecycleReadout) -> list[str]:
    """Plain-language bullet points for the top of the lifecycle report."""
    points = []
    s = r.stages.set_index("stage")
    customers = s.drop(index="lead", errors="ignore").customers.sum()
    shown = [k for k in ("new", "repeat", "vip", "at_risk", "lapsed") if pd.notna(s.loc[k, "customers"])]
    parts = [f"{s.loc[k, 'customers']:,.0f} {k.replace('_', ' ')}" for k in shown]
    points.append(f"On {r.as_of:%d %b %Y}, of {customers:,.0f} customers: " + ", ".join(parts) + ".")
    shares = r.transitions.shares
    if "new" in shares.index and shares.loc["new"].notna().any():
        row = shares.loc["new"].dropna().sort_values(ascending=False)
        moves = ", ".join(f"{v:.0%} {k.replace('_', ' ')}" for k, v in row.items() if v >= 0.05)
        points.append(f"Where the customers who were new on {r.start:%d %b} went: {moves}.")
    if "vip" in shares.index and "at_risk" in shares.columns and pd.notna(shares.loc["vip", "at_risk"]):
        points.append(f"{shares.loc['vip', 'at_risk']:.0%} of the VIPs of {r.start:%d %b} are now at risk of "
                      "lapsing — the first group to win back.")
    rfm = r.rfm.set_index("segment")
    if "Can't lose them" in rfm.index and pd.notna(rfm.loc["Can't lose them", "customers"]):
        row = rfm.loc["Can't lose them"]
        points.append(f"**{row.customers:,.0f} \"can't lose them\" customers** (frequent buyers gone quiet) brought "
                      f"{row.share_of_revenue:.0%} of all revenue.")
    if r.profile is not None and len(r.profile.measures):
        m = r.profile.measures.sort_values("cohens_d", key=np.abs, ascending=False).iloc[0]
        shown = (lambda v: money(v, ",.2f")) if m.measure.startswith("revenue") else (lambda v: f"{v:,.2f}")
        points.append(f"Champions stand out early — {measure_label(m.measure)}: {shown(m.top_mean)} on average "
                      f"vs {shown(m.rest_mean)} for the rest (effect size d = {m.cohens_d:.2f}).")
    if r.lookalike is not None and pd.notna(r.lookalike.auc):
        points.append(f"A lookalike model spots future Champions from their first 30 days with AUC "
                      f"{r.lookalike.auc:.2f} on newer customers; {len(r.lookalike.scores):,} recent customers are "
                      "scored in the CSV beside this report.")
    g = r.gaps.dropna(subset=["median_days"])
    if len(g):
        points.append(f"Remind customers shortly before they would typically buy again: {_contact_advice(g)}. "
                      f"{len(r.contacts):,} customers are inside their contact window now (listed in the CSV).")
    if r.leads is not None:
        lt = r.leads[r.leads.source != "all"].dropna(subset=["conversion_rate"])
        if len(lt):
            best, worst = lt.loc[lt.conversion_rate.idxmax()], lt.loc[lt.conversion_rate.idxmin()]
            points.append(f"Leads from {best.source} convert best ({best.conversion_rate:.1%}), from {worst.source} "
                          f"worst ({worst.conversion_rate:.1%}).")
    points += [f"Note: {n}" for n in r.notes]
    return points


def headlines(r: LifecycleReadout) -> tuple[list[tuple], dict]:
    """Headline cards and results.json values: ``stage_counts`` {stage: customers}, ``rfm_segments``
    {segment: {customers, share_of_revenue}}, ``lookalike_auc``, ``contact_days`` {segment: day},
    ``lead_conversion`` {source: rate}, ``notes`` and ``parameters_used.compare_days`` (the days compared:
    as_of − start)."""
    s = r.stages.set_index("stage").customers

    def clean(v):
        return None if pd.isna(v) else float(v)

    cards = [(f"stage.{k}", clean(s.get(k)), label, ",.0f") for k, label in
             (("repeat", "Repeat customers"), ("vip", "VIP"), ("at_risk", "At risk"), ("lapsed", "Lapsed"))]
    hidden = {"stage_counts": {k: clean(v) for k, v in s.items()},
              "rfm_segments": {row.segment: {"customers": clean(row.customers),
                                             "share_of_revenue": clean(row.share_of_revenue)}
                               for row in r.rfm.itertuples()},
              "contact_days": {row.segment: clean(row.contact_day) for row in r.gaps.itertuples()},
              "notes": list(r.notes), "parameters_used.compare_days": (r.as_of - r.start).days}
    if r.lookalike is not None:
        cards.append(("lookalike_auc", clean(r.lookalike.auc), "Lookalike AUC", ".2f"))
    if r.leads is not None:
        hidden["lead_conversion"] = {row.source: clean(row.conversion_rate) for row in r.leads.itertuples()}
    return cards, hidden
