"""Lifecycle stages, RFM, lookalikes, re-engagement timing and lead conversion: hand-built cases checked by
hand, statistics against scipy/statsmodels, and recovery of the sample business's truth."""

import itertools
import math
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pco_lib import data
from pco_lib import lifecycle as lc
from pco_lib.stats.inference import welch_test
from pco_lib.stats.intervals import wilson_interval
from pco_lib.stats.scores import auc, cohens_d, weighted_quantile

D = pd.Timestamp("2025-12-31")  # as_of in the hand-built cases


def at(days_before: float, hour: int = 12) -> pd.Timestamp:
    """A moment ``days_before`` calendar days before D (at noon by default)."""
    return (D - pd.Timedelta(days=days_before)).normalize() + pd.Timedelta(hours=hour)


def frames(spec: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """customers and orders from {customer_id: (conversion days before D, [(order days before D, revenue)])}."""
    customers = pd.DataFrame({"customer_id": list(spec), "converted_at": [at(v[0], 9) for v in spec.values()],
                              "channel": ["a" if i % 2 else "b" for i in range(len(spec))]})
    rows = [(cid, at(d), rev) for cid, (_, orders) in spec.items() for d, rev in orders]
    orders = pd.DataFrame(rows, columns=["customer_id", "ordered_at", "revenue"])
    orders.insert(0, "order_id", [f"o{i}" for i in range(len(orders))])
    return customers, orders


# --------------------------------------------------------------------------------------------------
# Lifecycle stages
# --------------------------------------------------------------------------------------------------

# Revenue kept equal (10 per order) so that, with the defaults, VIP = customers nobody out-spends by much:
# the VIP rule is checked separately below with vip_min_orders / ranked revenues.
STAGE_CASES = {
    # customer: (converted days ago, orders [(days ago, revenue)], expected stage)
    "new_10": (10, [(10, 10.0)], "new"),
    "new_89": (89, [(89, 10.0)], "new"),  # 89 < 90: still new
    "one_time_90": (90, [(90, 10.0)], "one_time"),  # 90 days: no longer new, quiet 90 is not > 90
    "risk_91": (91, [(91, 10.0)], "at_risk"),  # quiet 91 > 90
    "risk_180": (180, [(180, 10.0)], "at_risk"),  # quiet 180 is not > 180
    "lapsed_181": (181, [(181, 10.0)], "lapsed"),
    "signup_only_new": (5, [], "new"),  # no order yet, converted 5 days ago
    "signup_only_quiet": (95, [], "at_risk"),  # no order, quiet since conversion 95 days
    "repeat_40": (100, [(100, 10.0), (50, 10.0), (20, 10.0)], "repeat"),  # gap 40 → at risk after 60; quiet 20
    "gap_30_ok": (50, [(50, 10.0), (30, 10.0)], "repeat"),  # gap 20 → 1.5×20 = 30 → floor 30; quiet 30
    "gap_31_risk": (51, [(51, 10.0), (31, 10.0)], "at_risk"),  # same gap, quiet 31 > 30
    "gap_60_ok": (100, [(100, 10.0), (60, 10.0)], "repeat"),  # gap 40 → 60; quiet 60 is not > 60
    "gap_61_risk": (101, [(101, 10.0), (61, 10.0)], "at_risk"),  # quiet 61 > 60
    "slow_buyer": (400, [(400, 10.0), (200, 10.0), (91, 10.0)], "at_risk"),  # gap 154.5 → 90 caps; quiet 91
    "same_day_pair": (5, [(5, 10.0), (5, 10.0)], "repeat"),  # 2 orders (rows) = repeat, one purchase day
}


def test_every_stage_rule_and_its_boundaries():
    customers, orders = frames({k: v[:2] for k, v in STAGE_CASES.items()})
    later = pd.DataFrame({"order_id": ["late"], "customer_id": ["risk_91"], "ordered_at": [D + pd.Timedelta(days=1)],
                          "revenue": [10.0]})
    future = pd.DataFrame({"customer_id": ["future"], "converted_at": [D + pd.Timedelta(days=2)], "channel": ["a"]})
    rules = lc.StageRules(vip_min_orders=99)  # no VIP here; the VIP rule has its own test
    got = lc.customer_stages(pd.concat([customers, future]), pd.concat([orders, later]), D, rules)
    stages = got.set_index("customer_id")["stage"]
    assert "future" not in stages.index  # converts after as_of
    assert stages.to_dict() == {k: v[2] for k, v in STAGE_CASES.items()}
    row = got.set_index("customer_id").loc["repeat_40"]
    assert (row.orders, row.days_quiet, row.days_since_conversion, row.typical_gap_days) == (3, 20, 100, 40.0)
    assert got.set_index("customer_id").loc["risk_91", "orders"] == 1  # the order after as_of is ignored
    assert math.isnan(got.set_index("customer_id").loc["same_day_pair", "typical_gap_days"])


def test_the_rules_are_parameters():
    customers, orders = frames({k: v[:2] for k, v in STAGE_CASES.items()})
    rules = lc.StageRules(new_days=120, at_risk_gap_multiple=None, lapsed_days=500, at_risk_days=100,
                          vip_min_orders=99)
    stages = lc.customer_stages(customers, orders, D, rules).set_index("customer_id")["stage"]
    assert stages["risk_91"] == "new"  # 91 < 120
    assert stages["gap_61_risk"] == "repeat"  # without the gap rule the threshold is 100 days
    assert stages["lapsed_181"] == "at_risk" and stages["risk_180"] == "at_risk"
    with pytest.raises(lc.SegmentError, match="vip_share"):
        lc.StageRules(vip_share=1.5)
    with pytest.raises(lc.SegmentError, match="at_risk_days"):
        lc.StageRules(at_risk_days=200, lapsed_days=100)


def test_vip_is_the_top_share_of_buyers_in_the_window():
    # 20 active repeat buyers with window revenues 1..20, plus one big spender outside the window (lapsed)
    spec = {f"c{i:02d}": (300, [(300, 1.0), (10, float(i))]) for i in range(1, 21)}
    spec["old_whale"] = (700, [(700, 5000.0), (400, 5000.0)])
    customers, orders = frames(spec)
    stages = lc.customer_stages(customers, orders, D).set_index("customer_id")["stage"]
    # in the window (day > D − 365): c01..c20 only (their day-300 order counts too: revenue i + 1);
    # 20 buyers × 10% = 2: VIP when fewer than 2 buyers spent more → c20 and c19
    assert sorted(stages[stages == "vip"].index) == ["c19", "c20"]
    assert stages["old_whale"] == "lapsed" and stages["c18"] == "repeat"
    # ties at the boundary all get in: c18 now spends as much as c19
    orders.loc[(orders.customer_id == "c18") & (orders.revenue == 18.0), "revenue"] = 19.0
    stages = lc.customer_stages(customers, orders, D).set_index("customer_id")["stage"]
    assert sorted(stages[stages == "vip"].index) == ["c18", "c19", "c20"]
    # the alternative rule: at least N orders in the window
    stages = lc.customer_stages(customers, orders, D, lc.StageRules(vip_min_orders=2)).set_index("customer_id")
    assert (stages.loc[[f"c{i:02d}" for i in range(1, 21)], "stage"] == "vip").all()


def test_spend_is_exact_whatever_the_order_of_the_rows():
    # As floats, 0.1 + 0.2 + 0.3 and 0.3 + 0.2 + 0.1 differ in the last bit (0.6000000000000001 vs 0.6); the
    # engine sums in whatever order its threads see the rows, so float sums rank equal spenders apart at random
    # (the VIP boundary and RFM scores moved between runs on the sample). Spend is summed exactly (decimal).
    spec = {"x": (300, [(30, 0.1), (20, 0.2), (10, 0.3), (5, 0.7)]), "y": (300, [(30, 1.3)])}
    spec |= {f"c{i}": (300, [(30, 0.01), (10, 0.01 * i)]) for i in range(1, 9)}  # 10 buyers × 10%: 1 place
    customers, orders = frames(spec)
    seen = set()
    for perm in itertools.permutations(range(4)):
        rows = pd.concat([orders[orders.customer_id == "x"].iloc[list(perm)], orders[orders.customer_id != "x"]])
        stages = lc.customer_stages(customers, rows, D).set_index("customer_id")
        seen.add(stages.loc["x", "revenue_window"])
        assert sorted(stages.index[stages.stage == "vip"]) == ["x", "y"]  # x and y tie at 1.3
        rfm = lc.rfm_table(rows, D).set_index("customer_id")
        assert rfm.loc["x", "m_score"] == rfm.loc["y", "m_score"]
    assert seen == {1.3}


def test_leads_without_a_customer_yet_are_leads():
    customers, orders = frames({"x": (10, [(10, 5.0)]), "y": (-3, [])})  # y converts 3 days after D
    leads = pd.DataFrame({
        "lead_id": ["L1", "L2", "L3", "L4", "L5"],
        "created_at": [at(5), at(-1), at(20), at(30), at(400)],
        "source": ["s", "s", "t", "t", "s"],
        "customer_id": [None, None, "y", "x", None],
    })
    got = lc.customer_stages(customers, orders, D, leads=leads).set_index("key")
    assert got.loc["x", "stage"] == "new"  # L4 became customer x: not a lead
    assert got.loc["lead:L1", "stage"] == "lead" and pd.isna(got.loc["lead:L1", "customer_id"])
    assert got.loc["y", "stage"] == "lead"  # L3: its customer converts after as_of
    assert "lead:L2" not in got.index  # created after as_of
    assert got.loc["lead:L5", "stage"] == "lead"
    fresh = lc.customer_stages(customers, orders, D, lc.StageRules(lead_max_age_days=365), leads=leads)
    assert "lead:L5" not in set(fresh["key"])  # 400 days old: stale
    counts = lc.stage_counts(customers, orders, D, leads=leads, min_cell_size=1).set_index("stage")
    assert counts.loc["lead", "customers"] == 3 and counts.loc["new", "customers"] == 1
    assert list(counts.index) == list(lc.STAGES)
    by_source = lc.stage_counts(customers, orders, D, leads=leads, by="channel", lead_by="source", min_cell_size=1)
    leads_by = by_source[by_source.stage == "lead"].set_index("channel").customers.dropna()
    assert leads_by.to_dict() == {"s": 2, "t": 1}  # every open lead by its own source (L1, L5: s; L3: t)
    overall, by_channel = lc.stage_counts_by(customers, orders, D, "channel", leads=leads, min_cell_size=1)
    pd.testing.assert_frame_equal(overall, lc.stage_counts(customers, orders, D, leads=leads, min_cell_size=1))
    pd.testing.assert_frame_equal(by_channel, lc.stage_counts(customers, orders, D, by="channel", min_cell_size=1))


def test_stage_counts_by_segment_with_small_cells_suppressed():
    customers, orders = frames({k: v[:2] for k, v in STAGE_CASES.items()})
    rules = lc.StageRules(vip_min_orders=99)
    out = lc.stage_counts(customers, orders, D, rules, by="channel", min_cell_size=1)
    assert out.customers.sum() == len(STAGE_CASES)
    assert np.allclose(out.groupby("channel").share.sum(), 1.0)
    hidden = lc.stage_counts(customers, orders, D, rules, by="channel", min_cell_size=2)
    small = out.customers.fillna(0) < 2  # zero cells are hidden too (privacy.suppress_small_cells)
    assert hidden.suppressed.tolist() == small.tolist()
    assert hidden.loc[small, ["customers", "share"]].isna().all().all()
    assert (hidden.loc[~small, "customers"] == out.loc[~small, "customers"]).all()


def test_transition_matrix_by_hand():
    d1, d2 = D - pd.Timedelta(days=100), D
    # stages at d1 (as_of = D − 100) and at D:
    spec = {
        "n1": (110, [(110, 1.0)]),  # d1: new (10 days) → D: at_risk (quiet 110)
        "n2": (105, [(105, 1.0), (20, 1.0)]),  # d1: new → D: repeat (gap 85 → 90 cap; quiet 20)
        "r1": (300, [(300, 1.0), (200, 1.0), (150, 1.0), (5, 1.0)]),  # d1: repeat (gap 75, quiet 50) → repeat
        "l1": (400, [(400, 1.0)]),  # d1: lapsed (quiet 300) → lapsed
        "x1": (30, [(30, 1.0)]),  # converts after d1 → (not yet) → new
    }
    customers, orders = frames(spec)
    leads = pd.DataFrame({"lead_id": ["A", "B"], "created_at": [at(120), at(150)], "source": ["s", "s"],
                          "customer_id": ["x1", None]})
    tr = lc.stage_transitions(customers, orders, d1, d2, lc.StageRules(vip_min_orders=99), leads=leads,
                              min_cell_size=1)
    c = tr.counts
    assert c.loc["new", "at_risk"] == 1 and c.loc["new", "repeat"] == 1 and c.loc["new", "total"] == 2
    assert c.loc["repeat", "repeat"] == 1 and c.loc["lapsed", "lapsed"] == 1
    assert c.loc["lead", "new"] == 1  # lead A became customer x1
    assert c.loc["lead", "lead"] == 1  # lead B is still open
    assert np.nansum(c.drop(columns="total").to_numpy()) == 6  # empty cells are hidden like small ones
    assert tr.shares.loc["new", "at_risk"] == 0.5 and tr.shares.loc["new", "repeat"] == 0.5
    assert np.allclose(tr.shares.loc[["new", "repeat", "lapsed", "lead"]].sum(axis=1), 1.0)
    long = tr.to_frame()
    assert long.loc[(long.stage_from == "new") & (long.stage_to == "at_risk"), "customers"].item() == 1
    hidden = lc.stage_transitions(customers, orders, d1, d2, lc.StageRules(vip_min_orders=99), leads=leads,
                                  min_cell_size=2)
    assert np.isnan(hidden.counts.loc["new", "at_risk"]) and hidden.counts.loc["new", "total"] == 2
    assert np.isnan(hidden.shares.loc["new", "at_risk"])
    with pytest.raises(lc.SegmentError, match="after"):
        lc.stage_transitions(customers, orders, d2, d1)


@pytest.mark.parametrize("max_age", [None, 60])
def test_transitions_equal_matching_the_stage_rows_of_both_days(max_age):
    """The matrix equals an outer merge (pandas) of every customer's and open lead's key on both days, though
    the leads without a customer id are counted without a join."""
    rng = np.random.default_rng(8)
    n = 300
    spec = {f"c{i:03d}": (int(d), [(int(d) - k * int(g), 10.0) for k in range(int(m)) if int(d) - k * int(g) >= 0])
            for i, (d, g, m) in enumerate(zip(rng.integers(0, 400, n), rng.integers(5, 60, n),
                                              rng.integers(0, 6, n)))}
    customers, orders = frames(spec)
    m = 400
    cid = np.where(rng.uniform(size=m) < 0.3, rng.choice([*spec, "unknown"], m), None)
    leads = pd.DataFrame({"lead_id": [f"L{i}" for i in range(m)], "source": "s", "customer_id": cid,
                          "created_at": [at(int(d)) for d in rng.integers(-10, 500, m)]})
    d1, d2 = D - pd.Timedelta(days=45), D
    joined = [k for k, v in spec.items() if v[0] < 45][:5]  # leads 10 days before d1 of customers converting later
    leads = pd.concat([leads, pd.DataFrame({"lead_id": [f"J{k}" for k in joined], "source": "s",
                                            "customer_id": joined, "created_at": at(55)})], ignore_index=True)
    rules = lc.StageRules(lead_max_age_days=max_age)
    tr = lc.stage_transitions(customers, orders, d1, d2, rules, leads=leads, min_cell_size=1)
    then = lc.customer_stages(customers, orders, d1, rules, leads=leads)
    now = lc.customer_stages(customers, orders, d2, rules, leads=leads)
    both = then.merge(now, on="key", how="outer", suffixes=("_from", "_to"))
    ref = pd.crosstab(both.stage_from.fillna(lc.NOT_YET), both.stage_to.fillna(lc.GONE))
    got = tr.counts.drop(columns="total").fillna(0)
    assert ref.to_numpy().sum() == got.to_numpy().sum() > 0
    for (a, b), value in ref.stack().items():
        assert got.loc[a, b] == value, (a, b)
    assert ref.loc["lead", "lead"] > 0 and ref.loc[lc.NOT_YET, "lead"] > 0 and ref.loc["lead", "new"] > 0
    assert (max_age is None) == (lc.GONE not in ref.columns)  # leads age out only with a maximum age


# --------------------------------------------------------------------------------------------------
# RFM
# --------------------------------------------------------------------------------------------------


def test_rfm_segment_map_cell_by_cell():
    expected = {  # rows R = 5..1, columns F = 1..5: the R×F grid written out by hand
        5: ["New customers", "Potential loyalists", "Potential loyalists", "Champions", "Champions"],
        4: ["Promising", "Potential loyalists", "Potential loyalists", "Loyal", "Loyal"],
        3: ["About to sleep", "About to sleep", "Need attention", "Loyal", "Loyal"],
        2: ["Hibernating", "Hibernating", "At risk", "At risk", "Can't lose them"],
        1: ["Lost", "Hibernating", "At risk", "At risk", "Can't lose them"],
    }
    for r, row in expected.items():
        for f, name in zip(range(1, 6), row):
            assert lc.rfm_segment(r, f) == name, (r, f)
    with pytest.raises(lc.SegmentError):
        lc.rfm_segment(0, 3)


def test_rfm_scores_and_segments_by_hand():
    # 10 customers: last order days ago, number of orders, revenue per order
    spec = {
        "a": (1, 9, 50.0), "b": (2, 8, 40.0), "c": (3, 1, 500.0), "d": (10, 5, 10.0), "e": (10, 5, 10.0),
        "f": (30, 2, 5.0), "g": (60, 1, 5.0), "h": (90, 3, 20.0), "i": (200, 7, 30.0), "j": (300, 1, 1.0),
    }
    orders = pd.DataFrame([(cid, at(last + k), rev) for cid, (last, n, rev) in spec.items() for k in range(n)],
                          columns=["customer_id", "ordered_at", "revenue"])
    got = lc.rfm_table(orders, D).set_index("customer_id")
    # score = ⌊5 k / 10⌋ + 1, k = customers strictly worse (recency: more days quiet is worse)
    # recency days: a1 b2 c3 d10 e10 f30 g60 h90 i200 j300 → worse counts 9 8 7 5 5 4 3 2 1 0
    assert got.r_score.to_dict() == dict(a=5, b=5, c=4, d=3, e=3, f=3, g=2, h=2, i=1, j=1)
    # frequency: a9 b8 c1 d5 e5 f2 g1 h3 i7 j1 → worse counts 9 8 0 5 5 3 0 4 7 0
    assert got.f_score.to_dict() == dict(a=5, b=5, c=1, d=3, e=3, f=2, g=1, h=3, i=4, j=1)
    # monetary: a450 b320 c500 d50 e50 f10 g5 h60 i210 j1 → worse counts 8 7 9 3 3 2 1 5 6 0
    assert got.m_score.to_dict() == dict(a=5, b=4, c=5, d=2, e=2, f=2, g=1, h=3, i=4, j=1)
    assert got.loc["a", ["recency_days", "frequency", "monetary"]].tolist() == [1, 9, 450.0]
    assert got.segment.to_dict() == {
        "a": "Champions", "b": "Champions", "c": "Promising", "d": "Need attention", "e": "Need attention",
        "f": "About to sleep", "g": "Hibernating", "h": "At risk", "i": "At risk", "j": "Lost"}
    seg = lc.rfm_segments(orders, D, min_cell_size=2).set_index("segment")
    assert seg.loc["Champions", "customers"] == 2 and seg.loc["Champions", "frequency"] == 8.5
    assert seg.loc["Lost", "suppressed"] and np.isnan(seg.loc["Lost", "customers"])
    assert lc.rfm_grid(orders, D).loc[5, 5] == 2


def test_cohens_d_and_welch_match_scipy():
    rng = np.random.default_rng(3)
    x, y = rng.normal(1.0, 2.0, 40), rng.normal(0.2, 1.0, 65)
    t, df, p = welch_test(len(x), x.mean(), x.var(ddof=1), len(y), y.mean(), y.var(ddof=1))
    ref = stats.ttest_ind(x, y, equal_var=False)
    assert t == pytest.approx(ref.statistic, rel=1e-10) and p == pytest.approx(ref.pvalue, rel=1e-10)
    assert df == pytest.approx(ref.df, rel=1e-10)
    pooled = np.sqrt(((len(x) - 1) * x.var(ddof=1) + (len(y) - 1) * y.var(ddof=1)) / (len(x) + len(y) - 2))
    d = cohens_d(len(x), x.mean(), x.var(ddof=1), len(y), y.mean(), y.var(ddof=1))
    assert d == pytest.approx((x.mean() - y.mean()) / pooled, rel=1e-12)
    # through the profile (moments in) and the χ² test against scipy on the same table
    moments = pd.DataFrame({"measure": "m", "group": ["top", "rest"], "n": [len(x), len(y)],
                            "mean": [x.mean(), y.mean()], "var": [x.var(ddof=1), y.var(ddof=1)]})
    counts = pd.DataFrame({"column": "channel", "category": ["a", "a", "b", "b"], "group": ["top", "rest"] * 2,
                           "customers": [25, 20, 15, 45]})
    prof = lc.segment_profile(counts, moments, min_cell_size=10)
    row = prof.measures.iloc[0]
    assert row.cohens_d == pytest.approx(d) and row.p_value == pytest.approx(ref.pvalue)
    chi = stats.chi2_contingency([[25, 20], [15, 45]], correction=False)
    assert prof.chi_square.iloc[0].statistic == pytest.approx(chi.statistic)
    assert prof.chi_square.iloc[0].p_value == pytest.approx(chi.pvalue)
    cats = prof.categories.set_index("category")
    assert cats.loc["a", "top_share"] == pytest.approx(25 / 40)
    assert cats.loc["a", "rest_share"] == pytest.approx(20 / 65)
    assert cats.loc["a", "difference"] == pytest.approx(25 / 40 - 20 / 65)
    small = lc.segment_profile(counts, moments, min_cell_size=16)
    assert small.categories.set_index("category").loc["b", "suppressed"]  # 15 top customers in b


def test_early_behaviour_counts_the_first_days_after_conversion():
    customers = pd.DataFrame({"customer_id": ["a", "b"], "converted_at": [at(100, 9), at(20, 9)],
                              "channel": ["x", "y"]})
    orders = pd.DataFrame({"customer_id": ["a", "a", "a", "a", "b"],
                           "ordered_at": [at(100), at(71), at(70), at(101), at(20)],
                           "revenue": [10.0, 5.0, 7.0, 3.0, 4.0]})
    events = pd.DataFrame({"customer_id": ["a", "a", "b"], "occurred_at": [at(99), at(60), at(19)],
                           "event": ["login"] * 3})
    got = lc.early_behaviour_expr(customers, orders, events=events, days=30).to_pandas().set_index("customer_id")
    # a: day 0 and day 29 count, day 30 does not, an order before conversion does not
    assert got.loc["a", ["orders_30d", "revenue_30d", "events_30d"]].tolist() == [2, 15.0, 1]
    assert got.loc["b", ["orders_30d", "revenue_30d", "events_30d"]].tolist() == [1, 4.0, 1]
    frame = lc.lookalike_frame(customers, orders, D, events=events, days=30, columns=["channel"])
    assert frame.customer_id.tolist() == ["a"]  # b's first 30 days are not complete yet (days 0..20 seen)


# --------------------------------------------------------------------------------------------------
# Lookalike: AUC and calibration
# --------------------------------------------------------------------------------------------------


def test_auc_by_hand_and_against_mann_whitney():
    # positives 0.35, 0.8; negatives 0.1, 0.4: of 4 pairs 3 are ordered correctly
    assert auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert auc([0.5, 0.5], [1, 0]) == 0.5  # a tie counts one half
    assert math.isnan(auc([0.1, 0.2], [1, 1]))
    rng = np.random.default_rng(5)
    s = rng.integers(0, 20, 300).astype(float)  # many ties
    y = rng.uniform(size=300) < 0.2 + 0.03 * s
    u = stats.mannwhitneyu(s[y], s[~y]).statistic
    assert auc(s, y) == pytest.approx(u / (y.sum() * (~y).sum()), rel=1e-12)


def test_calibration_table_bins():
    p = np.linspace(0.01, 0.99, 100)
    y = (np.arange(100) % 2).astype(float)
    cal = lc.calibration_table(p, y, min_cell_size=1)
    assert cal.customers.tolist() == [10] * 10 and cal["bin"].tolist() == list(range(1, 11))
    assert cal.mean_predicted.iloc[0] == pytest.approx(p[:10].mean())
    assert (cal.observed_rate == 0.5).all()
    assert lc.calibration_table(p, y, min_cell_size=11).suppressed.all()


def _lookalike_input(n: int = 3000, seed: int = 11) -> pd.DataFrame:
    """A lookalike frame with a known logistic truth, conversion days with many ties, missing channels and an
    integer-coded device."""
    rng = np.random.default_rng(seed)
    orders = rng.poisson(1.5, n)
    revenue = np.round(rng.gamma(2.0, 20.0, n), 2) * (orders > 0)
    channel = rng.choice(["email", "paid", "organic", None], n, p=[0.3, 0.3, 0.35, 0.05])
    device = rng.choice([1, 2, 3], n)
    eta = -2 + 0.5 * orders + 0.01 * revenue + 0.6 * (channel == "email") - 0.4 * (device == 3)
    label = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype("int64")
    converted = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 300, n), unit="D")
    frame = pd.DataFrame({"customer_id": [f"c{i:05d}" for i in range(n)], "converted": converted,
                          "orders_30d": orders, "revenue_30d": revenue, "channel": channel, "device": device,
                          "label": label})
    return frame.sort_values(["converted", "customer_id"]).reset_index(drop=True)


def _newton_logit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum likelihood logistic regression by Newton–Raphson: β ← β + (XᵀWX)⁻¹ Xᵀ(y − p); SE = √diag((XᵀWX)⁻¹)."""
    beta = np.zeros(x.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-x @ beta))
        info = x.T @ (x * (p * (1 - p))[:, None])
        step = np.linalg.solve(info, x.T @ (y - p))
        beta += step
        if np.abs(step).max() < 1e-12:
            break
    p = 1 / (1 + np.exp(-x @ beta))
    return beta, np.sqrt(np.diag(np.linalg.inv(x.T @ (x * (p * (1 - p))[:, None]))))


def test_lookalike_fit_matches_newton_raphson_and_ignores_row_order():
    frame = _lookalike_input()
    as_of = "2025-12-31"
    model = lc.fit_lookalike(frame, as_of, categorical=["channel", "device"], min_cell_size=1)
    # the split by hand: converted ≥ 90 days before as_of is mature; its oldest 70% (by day, then id) train
    mature = frame[frame.converted <= pd.Timestamp("2025-10-02")]
    train = mature.iloc[:round(0.7 * len(mature))]
    assert model.train_customers == len(train) and model.holdout_customers == len(mature) - len(train)
    assert model.train_until == train.converted.max().date()
    # the design by hand: reference = the most common training level (organic; device 1, 2 or 3 by count)
    channel = train.channel.fillna("(missing)")
    device = train.device.astype(str)
    ref_c, ref_d = channel.value_counts().index[0], device.value_counts().index[0]
    assert ref_c == "organic"
    terms = {"const": np.ones(len(train)), "orders_30d": train.orders_30d, "revenue_30d": train.revenue_30d}
    terms |= {f"channel={v}": (channel == v) for v in sorted(set(channel) - {ref_c})}
    terms |= {f"device={v}": (device == v) for v in sorted(set(device) - {ref_d})}
    x = np.column_stack([np.asarray(v, float) for v in terms.values()])
    beta, se = _newton_logit(x, train.label.to_numpy(float))
    coefs = model.coefficients.set_index("term")
    assert list(coefs.index) == list(terms)
    np.testing.assert_allclose(coefs.coef, beta, rtol=1e-8, atol=1e-10)  # IRLS and Newton: the same MLE
    np.testing.assert_allclose(coefs.se, se, rtol=1e-6)
    holdout = mature.iloc[len(train):]
    assert model.auc == pytest.approx(auc(model.predict(holdout), holdout.label), rel=1e-12)
    # the same model from shuffled rows (another index), and the same from date objects for "converted"
    shuffled = frame.sample(frac=1, random_state=3).set_index(np.arange(len(frame))[::-1] * 7)
    again = lc.fit_lookalike(shuffled, as_of, categorical=["channel", "device"], min_cell_size=1)
    pd.testing.assert_frame_equal(again.coefficients, model.coefficients, rtol=1e-10)
    assert again.auc == model.auc and again.auc_train == model.auc_train
    pd.testing.assert_frame_equal(again.calibration, model.calibration, rtol=1e-10)
    pd.testing.assert_frame_equal(again.scores, model.scores, rtol=1e-10)
    as_dates = lc.fit_lookalike(frame.assign(converted=frame.converted.dt.date), as_of,
                                categorical=["channel", "device"], min_cell_size=1)
    pd.testing.assert_frame_equal(as_dates.scores, model.scores)


def test_lookalike_leaves_out_a_measure_that_is_zero_for_every_training_customer():
    frame = _lookalike_input().assign(revenue_30d=0.0)  # $0 orders only
    model = lc.fit_lookalike(frame, "2025-12-31", categorical=["channel"], min_cell_size=1)
    assert "revenue_30d" not in set(model.coefficients.term) and model.numeric == ("orders_30d",)
    assert np.isfinite(model.scores.score).all() and 0.5 < model.auc < 1
    assert np.isfinite(model.predict(frame)).all()


def test_a_lookalike_that_does_not_converge_says_which_term_separates_instead_of_warning():
    frame = _lookalike_input()
    frame.loc[frame.channel == "paid", "label"] = 0  # no paid customer is a Champion: its coefficient runs to −∞
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # statsmodels' ConvergenceWarning would fail here
        model = lc.fit_lookalike(frame, "2025-12-31", categorical=["channel"], min_cell_size=1)
    assert model.note.startswith("the lookalike model did not converge: channel=paid (nearly) separates the top "
                                 "segment from the rest")
    paid = model.coefficients.set_index("term").loc["channel=paid"]
    assert paid.coef < -10 and paid.se > 100  # what the note reads from the fit
    assert np.isfinite(model.scores.score).all() and 0.5 < model.auc < 1
    assert lc.fit_lookalike(_lookalike_input(), "2025-12-31", categorical=["channel"], min_cell_size=1).note == ""


# --------------------------------------------------------------------------------------------------
# Re-engagement timing
# --------------------------------------------------------------------------------------------------


def test_repurchase_gaps_by_hand():
    customers = pd.DataFrame({"customer_id": ["a", "b", "c"], "converted_at": [at(30), at(10), at(3)],
                              "channel": ["x", "y", "x"]})
    orders = pd.DataFrame({
        "customer_id": ["a", "a", "a", "a", "b", "b", "c", "a"],
        "ordered_at": [at(30), at(20, 8), at(20, 18), at(5), at(10), at(9), at(3), D + pd.Timedelta(days=3)],
        "revenue": 1.0})
    # purchase days: a: D−30, D−20 (twice), D−5 → gaps 10, 15; b: 1; c: none; a's order after D ignored
    gaps = lc.repurchase_gap_expr(orders, D).to_pandas()
    assert sorted(gaps.gap_days) == [1, 10, 15]
    counts = lc.repurchase_gap_counts(orders, D, customers, by="channel")
    assert counts[["segment", "gap_days", "n", "customers"]].values.tolist() == [["x", 10, 1, 1], ["x", 15, 1, 1],
                                                                                 ["y", 1, 1, 1]]
    summary = lc.gap_summary(lc.repurchase_gap_counts(orders, D), lead_time_days=3, min_cell_size=1).iloc[0]
    assert summary.median_days == 10 and summary.q1_days == np.quantile([1, 10, 15], 0.25)
    assert summary.q3_days == np.quantile([1, 10, 15], 0.75) and summary.contact_day == 7
    assert summary.window_end_day == 20 and summary.gaps == 3 and summary.customers == 2
    # a lead time of 14 days is capped at half the median gap: 10 − min(14, 5) = 5, not day 1
    assert lc.gap_summary(lc.repurchase_gap_counts(orders, D), min_cell_size=1).contact_day.item() == 5
    assert lc.gap_summary(lc.repurchase_gap_counts(orders, D), lead_time_days=0,
                          min_cell_size=1).contact_day.item() == 10


def test_weighted_quantile_equals_numpy_on_expanded_rows():
    rng = np.random.default_rng(1)
    v, w = rng.integers(1, 60, 25), rng.integers(0, 7, 25)
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        assert weighted_quantile(v, w, q) == pytest.approx(np.quantile(np.repeat(v, w), q))


def test_contact_window_membership_by_hand():
    # last purchase day per customer: 6, 7, 20, 21 days before D; typical gap (segment "all") 10 → contact
    # day 10 − 3 = 7, window end 2 × 10 = 20: only the customers quiet 7 and 20 days are inside
    orders = pd.DataFrame({"customer_id": ["p", "q", "r", "s", "p"],
                           "ordered_at": [at(6), at(7), at(20), at(21), at(16)], "revenue": 1.0})
    summary = pd.DataFrame({"segment": ["all"], "contact_day": [7.0], "window_end_day": [20.0],
                            "suppressed": [False]})
    got = lc.contact_window(orders, D, summary)
    assert got[["customer_id", "days_since_last_order"]].values.tolist() == [["r", 20], ["q", 7]]
    assert set(got.segment) == {"all"}
    # by segment: each customer compared with their own segment's window; suppressed segments left out
    customers = pd.DataFrame({"customer_id": ["p", "q", "r", "s"], "converted_at": at(30), "channel": list("xxyy")})
    summary = pd.DataFrame({"segment": ["x", "y"], "contact_day": [5.0, 21.0], "window_end_day": [6.0, 30.0],
                            "suppressed": [False, True]})
    got = lc.contact_window(orders, D, summary, customers, by="channel")
    assert got.customer_id.tolist() == ["p"]


# --------------------------------------------------------------------------------------------------
# Lead conversion
# --------------------------------------------------------------------------------------------------


def test_wilson_interval_matches_statsmodels():
    from statsmodels.stats.proportion import proportion_confint

    for k, n in [(0, 10), (3, 10), (10, 10), (57, 1000), (12, 45)]:
        lo, hi = wilson_interval(k, n, 0.05)
        ref = proportion_confint(k, n, alpha=0.05, method="wilson")
        assert (float(lo), float(hi)) == pytest.approx(ref, abs=1e-12)
    lo, hi = wilson_interval(3, 10, 0.1)
    assert (float(lo), float(hi)) == pytest.approx(proportion_confint(3, 10, alpha=0.1, method="wilson"))


def test_lead_time_to_convert_censors_open_leads():
    t0 = pd.Timestamp("2025-06-01 08:00")
    until = t0 + pd.Timedelta(days=10, hours=4, minutes=48)  # 10.2 days
    h = pd.Timedelta(hours=1)
    leads = pd.DataFrame({
        "lead_id": ["A", "B", "C", "D", "E", "F"],
        "created_at": [t0, t0, t0, until + h, t0, t0],
        "source": ["x", "x", "x", "x", "x", "y"],
        "customer_id": ["ca", None, "cc", None, "ce", "cf"],
    })
    customers = pd.DataFrame({"customer_id": ["ca", "cc", "ce", "cf"],
                              "converted_at": [t0 + pd.Timedelta(days=2.5), until + h, t0 + h, t0 + 3 * h]})
    rows = lc.lead_expr(leads, customers, until).to_pandas().set_index("lead_id")
    assert "D" not in rows.index  # created after the end of the data
    assert rows.loc["A", ["days", "converted"]].tolist() == [3, 1]  # ⌊2.5⌋ + 1
    assert rows.loc["B", ["days", "converted"]].tolist() == [11, 0]  # open: censored at ⌊10.2⌋ + 1
    assert rows.loc["C", ["days", "converted"]].tolist() == [11, 0]  # converts after the end: still open
    assert rows.loc["E", ["days", "converted"]].tolist() == [1, 1]
    counts = lc.lead_time_counts(leads, customers, observed_until=until)
    assert counts.query("source == 'x'")[["days", "converted", "n"]].values.tolist() == [[1, 1, 1], [3, 1, 1],
                                                                                          [11, 0, 2]]
    timing = lc.lead_time_to_convert(counts, horizons=(2, 7, 30), min_cell_size=1)
    x = timing.table.set_index("source").loc["x"]
    # Kaplan–Meier: day 1: 4 at risk, 1 converts → S = 3/4; day 3: 3 at risk, 1 converts → S = 1/2; B and C
    # censored at 11, so S stays 1/2 (not 1/4 as it would if open leads were dropped or counted as failures)
    assert x.converted_by_2d == pytest.approx(0.25) and x.converted_by_7d == pytest.approx(0.5)
    assert np.isnan(x.converted_by_30d)  # beyond the data
    assert (x.leads, x.converted, x.median_days_converted) == (4, 2, 2.0)
    conv = lc.lead_conversion(leads, customers, observed_until=until, min_cell_size=1)
    pd.testing.assert_frame_equal(lc.lead_conversion_table(counts, min_cell_size=1), conv)  # the report's path
    conv = conv.set_index("source")
    assert conv.loc["x", ["leads", "converted"]].tolist() == [4, 2] and conv.loc["all", "leads"] == 5
    lo, hi = wilson_interval(2, 4)
    assert conv.loc["x", "ci_low"] == pytest.approx(lo) and conv.loc["x", "ci_high"] == pytest.approx(hi)
    assert lc.lead_conversion(leads, customers, observed_until=until, min_cell_size=2).set_index("source").loc[
        "y", "suppressed"]


# --------------------------------------------------------------------------------------------------
# The sample business: recovery of the truth
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from pco_lib.data.sample import generate_sample

    out = tmp_path_factory.mktemp("segments") / "sample"
    truth = generate_sample(out, customers=20_000, seed=17, progress=False)
    return data.connect(out), truth


def test_lead_conversion_rates_recover_the_truth(sample):
    source, truth = sample
    conv = lc.lead_conversion(source.table("leads"), source.table("customers")).set_index("source")
    for channel, spec in truth["channels"].items():
        row = conv.loc[channel]
        assert row.ci_low <= spec["lead_conversion_rate"] <= row.ci_high, channel
    counts = lc.lead_time_counts(source.table("leads"), source.table("customers"))
    timing = lc.lead_time_to_convert(counts).table.set_index("source")
    # by 90 days nearly every converting lead has converted (mean delays 3–8 days)
    for channel, spec in truth["channels"].items():
        assert timing.loc[channel, "converted_by_90d"] == pytest.approx(spec["lead_conversion_rate"], rel=0.1)


def test_median_repurchase_gap_follows_the_purchase_rate(sample):
    source, truth = sample
    counts = lc.repurchase_gap_counts(source.table("orders"), "2026-09-30", source.table("customers"), by="channel")
    summary = lc.gap_summary(counts).set_index("segment")
    rate = {c: v["bgnbd"]["r"] / v["bgnbd"]["alpha"] for c, v in truth["channels"].items()}  # mean λ per week
    channels = sorted(rate)
    rho = stats.spearmanr([rate[c] for c in channels], [summary.loc[c, "median_days"] for c in channels]).statistic
    assert rho < -0.8  # faster buyers, shorter gaps
    fastest, slowest = max(rate, key=rate.get), min(rate, key=rate.get)
    assert summary.loc[fastest, "median_days"] < summary.loc[slowest, "median_days"]
    inside = lc.contact_window(source.table("orders"), "2026-09-30", summary.reset_index(), source.table("customers"),
                               by="channel")
    joined = inside.merge(summary, left_on="segment", right_index=True)
    assert len(inside) and (joined.days_since_last_order >= joined.contact_day_y).all()


def test_sample_stages_rfm_profile_and_lookalike_hang_together(sample):
    source, _ = sample
    c, o, e, leads = (source.table(n) for n in ("customers", "orders", "events", "leads"))
    as_of = "2026-06-30"
    counts = lc.stage_counts(c, o, as_of)
    n_customers = int(c.filter(c.converted_at.date() <= pd.Timestamp(as_of).date()).count().to_pandas())
    assert counts.customers.sum() == n_customers
    tr = lc.stage_transitions(c, o, "2026-03-31", as_of, leads=leads, min_cell_size=1)
    # every customer and open lead at the end comes from some row
    at_end = lc.stage_counts(c, o, as_of, leads=leads, min_cell_size=1).set_index("stage").customers
    assert (tr.counts.drop(columns="total").sum().reindex(at_end.index) == at_end).all()
    prof = lc.profile_top_segment(c, o, as_of, events=e)
    m = prof.measures.set_index("measure")
    assert m.loc["orders_30d", "cohens_d"] > 0 and m.loc["orders_30d", "p_value"] < 1e-6
    chi = prof.chi_square.set_index("column")
    assert chi.loc["channel", "p_value"] < 1e-6  # channels differ in purchase rates by design
    model = lc.lookalike(c, o, as_of, events=e)
    assert 0.6 < model.auc < 1 and model.calibration.customers.sum() == model.holdout_customers
    assert list(model.scores.columns) == ["customer_id", "converted", "score"]
    assert model.scores.score.between(0, 1).all() and model.scores.customer_id.is_unique


def test_report_readout_on_the_tiny_sample(tiny_sample):

    readout = lc.analyze(data.connect(tiny_sample), compare_days=60, segment="channel",
                         rules=lc.StageRules(lead_max_age_days=90))
    stages = readout.stages.set_index("stage").customers
    customers = pd.read_parquet(tiny_sample / "customers.parquet")
    assert stages.drop(index="lead").fillna(0).sum() <= len(customers)
    cards, hidden = lc.headlines(readout)
    assert set(hidden) >= {"stage_counts", "rfm_segments", "contact_days", "lead_conversion"}
    assert hidden["lead_conversion"]["all"] == pytest.approx(len(customers) / len(
        pd.read_parquet(tiny_sample / "leads.parquet")), rel=1e-9)
    text = " ".join(lc.summary_points(readout))
    assert not any(cid in text for cid in customers.customer_id)
    assert set(readout.contacts.columns) >= {"customer_id", "segment", "days_since_last_order"}


def test_contact_advice_groups_segments_by_their_contact_day():
    from pco_lib.lifecycle.readout import _contact_advice

    gaps = pd.DataFrame({"segment": ["email", "organic", "social"], "median_days": [14.0, 13.0, 21.0],
                         "contact_day": [7.0, 7.0, 10.0]})
    assert _contact_advice(gaps) == ("**day 7** after the last order for email and organic (they usually buy again "
                                     "after 13–14 days); **day 10** for social (21 days)")
    assert lc.measure_label("revenue_30d") == "revenue in the first 30 days"
    everybody = pd.DataFrame({"segment": ["all"], "median_days": [34.0], "contact_day": [20.0]})  # no segment
    assert _contact_advice(everybody) == "**day 20** after the last order (customers usually buy again after 34 days)"


def test_a_report_computes_each_per_customer_view_once_and_the_same_as_alone(tiny_sample, monkeypatch):
    """analyze() keeps the purchase days, RFM scores and early behaviour, one each (they were recomputed from
    the orders 10×, 4× and 2×), as Parquet files that are gone when it ends; every section equals the function
    called on its own."""
    from pco_lib.lifecycle import common

    source = data.connect(tiny_sample)
    c, o = source.table("customers"), source.table("orders")
    backend = o._find_backend()
    made, names, folders = [], [], []

    def views() -> set[str]:
        rows = backend.con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
        return {name for (name,) in rows}

    keep, mkdtemp = common._keep, tempfile.mkdtemp

    def watched(view):
        table, release = keep(view)
        made.append(sorted(view.columns))
        names.append(table.get_name())
        assert table.get_name() in views()  # (so the check below can fail)
        return table, release

    monkeypatch.setattr(common, "_keep", watched)
    monkeypatch.setattr(tempfile, "mkdtemp", lambda **kw: folders.append(mkdtemp(**kw)) or folders[-1])
    readout = lc.analyze(source, as_of="2026-05-31", segment="channel")
    assert sorted(map(tuple, made)) == sorted([
        ("customer_id", "day", "orders", "revenue"),
        ("customer_id", "f_score", "frequency", "m_score", "monetary", "r_score", "recency_days", "segment"),
        ("channel", "converted", "customer_id", "device", "events_30d", "orders_30d", "revenue_30d"),
        ("_k1", "stage_from"), ("_k2", "stage_to")])  # and the transitions' stages of both days, for their join
    monkeypatch.setattr(common, "_keep", keep)
    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    day, events = readout.as_of, source.table("events")
    pd.testing.assert_frame_equal(readout.rfm, lc.rfm_segments(o, day))
    pd.testing.assert_frame_equal(readout.stages_by_segment, lc.stage_counts(c, o, day, by="channel"))
    pd.testing.assert_frame_equal(readout.stages, lc.stage_counts(c, o, day, leads=source.table("leads")))
    alone = lc.lookalike(c, o, day, events=events, categorical=["channel", "device"])
    assert readout.lookalike.auc == alone.auc
    pd.testing.assert_frame_equal(readout.lookalike.coefficients, alone.coefficients)
    profile = lc.profile_top_segment(c, o, day, categories=["channel", "device"], events=events)
    pd.testing.assert_frame_equal(readout.profile.measures, profile.measures)
    assert not set(names) & views()  # the views are dropped when analyze() ends
    assert len(folders) == 5 and not any(Path(f).exists() for f in folders)  # and their files removed
