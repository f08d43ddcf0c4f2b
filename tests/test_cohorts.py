"""Cohort retention and before/after analysis."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats import proportion as sm_proportion

from pco_lib import cohorts, data
from pco_lib.cohorts import compare_before_after, interrupted_time_series, summarize_cohorts
from pco_lib.data.currencies import money
from pco_lib.stats.inference import difference_in_means, difference_in_proportions

T = pd.Timestamp
CUSTOMERS = pd.DataFrame({
    "customer_id": ["A", "B", "C"],
    "converted_at": [T("2026-01-05"), T("2026-01-20"), T("2026-02-10")],
    "plan": ["pro", "basic", "pro"],
})
ORDERS = pd.DataFrame({
    "order_id": [f"o{i}" for i in range(8)],
    "customer_id": ["A", "A", "A", "B", "B", "B", "C", "C"],
    "ordered_at": [T("2026-01-05"), T("2026-02-10"), T("2026-03-20"),   # A: ages 0, 1 (36 d), 2 (74 d)
                   T("2026-01-20"), T("2026-01-25"), T("2026-03-25"),   # B: ages 0, 0, 2 (64 d)
                   T("2026-02-10"), T("2026-03-15")],                   # C: ages 0, 1 (33 d)
    "revenue": [10.0, 20.0, 30.0, 5.0, 5.0, 40.0, 7.0, 8.0],
})
AS_OF = T("2026-04-15")  # Jan cohort's last member (B) has 85 days: ages 0-1 elapsed; Feb (C) 64 days: 0-1


def _activity(orders):
    return orders.rename(columns={"ordered_at": "at"})[["customer_id", "at", "revenue"]]


@pytest.fixture
def summary():
    return summarize_cohorts(CUSTOMERS, _activity(ORDERS), "month", as_of=AS_OF)


def test_every_cell_of_a_small_retention_matrix(summary):
    jan, feb = T("2026-01-01"), T("2026-02-01")
    m = summary.matrix("retention")
    assert list(m.columns) == [0, 1, 2]
    # hand-computed: Jan age 1 = A only of {A, B}; age 2 has orders but has not elapsed -> empty
    assert m.loc[jan].tolist()[:2] == [1.0, 0.5] and np.isnan(m.loc[jan, 2])
    assert m.loc[feb].tolist()[:2] == [1.0, 1.0] and np.isnan(m.loc[feb, 2])
    orders = summary.matrix("orders_per_customer")
    assert orders.loc[jan, 0] == 1.5 and orders.loc[jan, 1] == 0.5 and orders.loc[feb, 1] == 1.0
    ltv = summary.matrix("cumulative_revenue_per_customer")
    assert ltv.loc[jan, 0] == 10.0 and ltv.loc[jan, 1] == 20.0 and np.isnan(ltv.loc[jan, 2])
    assert ltv.loc[feb, 0] == 7.0 and ltv.loc[feb, 1] == 15.0
    assert summary.sizes().to_dict() == {jan: 2, feb: 1}


def test_a_later_as_of_fills_the_elapsed_cells():
    later = summarize_cohorts(CUSTOMERS, _activity(ORDERS), "month", as_of=T("2026-05-01"))
    m = later.matrix("retention")
    assert m.loc[T("2026-01-01"), 2] == 1.0  # B: 101 days -> age 2 elapsed; A and B both ordered at age 2
    assert np.isnan(m.loc[T("2026-02-01"), 2])  # C: 80 days -> age 2 not elapsed


def test_small_cohorts_are_hidden(summary):
    m = summary.matrix("retention", min_cell_size=2)
    assert m.loc[T("2026-02-01")].isna().all() and m.loc[T("2026-01-01"), 0] == 1.0


def test_segments(summary):
    seg = summarize_cohorts(CUSTOMERS, _activity(ORDERS), "month", segment="plan", as_of=AS_OF)
    pro = seg.matrix("retention", segment="pro")
    assert pro.loc[T("2026-01-01"), 1] == 1.0 and pro.loc[T("2026-02-01"), 1] == 1.0
    pd.testing.assert_frame_equal(seg.matrix("retention"), summary.matrix("retention"))
    curves = seg.segment_curves()
    assert curves.loc["pro", 1] == 1.0 and curves.loc["basic", 1] == 0.0
    # LTV by segment, by hand: pro = A (Jan) and C (Feb); age 1 pools A's 10+20 and C's 7+8 over 2 customers,
    # age 2 only A's 60 (C's age 2 has not elapsed); basic = B: 10 at ages 0 and 1, age 2 not elapsed
    ltv = seg.segment_curves(value="cumulative_revenue_per_customer")
    assert ltv.loc["pro"].tolist() == [8.5, 22.5, 60.0]
    assert ltv.loc["basic", 0] == 10.0 and ltv.loc["basic", 1] == 10.0 and np.isnan(ltv.loc["basic", 2])


def test_pandas_input_and_parquet_through_duckdb_give_the_same_cells(summary, tmp_path):
    utc = {"converted_at": lambda d: d.converted_at.dt.tz_localize("UTC")}
    CUSTOMERS.assign(**utc).to_parquet(tmp_path / "customers.parquet")
    ORDERS.assign(ordered_at=ORDERS.ordered_at.dt.tz_localize("UTC")).to_parquet(tmp_path / "orders.parquet")
    source = data.connect(tmp_path)
    from_engine = summarize_cohorts(source.table("customers"), data.activity_table(source), "month", as_of=AS_OF)
    pd.testing.assert_frame_equal(from_engine.cells, summary.cells, check_dtype=False)


def test_difference_in_proportions_matches_statsmodels():
    # statsmodels' Wald interval and test for p1 - p2 with unpooled variance
    d = difference_in_proportions(x0=410, n0=1000, x1=460, n1=1010)
    low, high = sm_proportion.confint_proportions_2indep(460, 1010, 410, 1000, method="wald", compare="diff")
    test = sm_proportion.test_proportions_2indep(460, 1010, 410, 1000, method="wald", compare="diff")
    assert d.difference == pytest.approx(460 / 1010 - 0.41, abs=1e-12)
    assert (d.ci_low, d.ci_high) == pytest.approx((low, high), abs=1e-10)
    assert d.p_value == pytest.approx(test.pvalue, rel=1e-8)


def test_welch_from_sufficient_statistics_matches_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.gamma(2, 10, 300), rng.gamma(2.3, 10, 250)
    d = difference_in_means(len(a), a.sum(), (a**2).sum(), len(b), b.sum(), (b**2).sum())
    ref = stats.ttest_ind(b, a, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert d.p_value == pytest.approx(ref.pvalue, rel=1e-8)
    assert (d.ci_low, d.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-8)
    with pytest.raises(ValueError, match="zero variance"):
        difference_in_means(3, 3.0, 3.0, 3, 3.0, 3.0)


def _simulated_weeks(jump, trend, weeks=26, per_week=400, seed=0):
    """Weekly cohorts of 400 customers, retention 0.3 + trend·week + jump·after."""
    rng = np.random.default_rng(seed)
    week = np.arange(-weeks, weeks)
    p = 0.3 + trend * week + jump * (week >= 0)
    return pd.DataFrame({"week": week, "customers": per_week, "retained": rng.binomial(per_week, p)}), T("2026-01-05")


def test_the_cohort_regression_finds_a_real_jump():
    weekly, change = _simulated_weeks(jump=0.08, trend=0.001)
    its = interrupted_time_series(weekly, change)
    assert its.ci_low < 0.08 < its.ci_high and its.p_value < 0.001
    assert its.cohorts_before == its.cohorts_after == 26


def test_a_trend_is_not_mistaken_for_a_jump():
    weekly, change = _simulated_weeks(jump=0.0, trend=0.004)
    before, after = weekly[weekly.week < 0], weekly[weekly.week >= 0]
    naive = difference_in_proportions(before.retained.sum(), before.customers.sum(),
                                      after.retained.sum(), after.customers.sum())
    assert naive.p_value < 1e-6  # a before/after comparison alone sees the trend as an effect
    its = interrupted_time_series(weekly, change)
    assert its.ci_low < 0 < its.ci_high
    assert its.trend_before == pytest.approx(0.004, abs=0.001)


def test_weekly_change_window_matches_a_per_customer_count():
    customers = pd.DataFrame({"customer_id": ["a", "b", "c", "d"],
                              "converted_at": [T("2026-01-01"), T("2026-01-03"), T("2026-01-06"), T("2026-01-20")]})
    orders = pd.DataFrame({"customer_id": ["a", "a", "b", "c", "c", "d"],
                           "at": [T("2026-01-01"), T("2026-01-20"), T("2026-01-03"), T("2026-01-06"),
                                  T("2026-03-01"), T("2026-01-20")],
                           "revenue": [10.0, 5.0, 8.0, 4.0, 6.0, 7.0]})
    weekly = cohorts.summarize_change_window(customers, orders, "2026-01-05", days=30, window_days=30,
                                             as_of=T("2026-04-01")).set_index("week")
    # a, b convert in the week before the change (week -1); c in week 0; d in week 2. Repeat within 30
    # days: only a (c's second order is 54 days later). Revenue in 30 days: a 15, b 8, c 4, d 7.
    assert weekly.customers.to_dict() == {-1: 2, 0: 1, 2: 1}
    assert weekly.retained.to_dict() == {-1: 1, 0: 0, 2: 0}
    assert weekly.revenue.to_dict() == {-1: 23.0, 0: 4.0, 2: 7.0}
    assert weekly.revenue_sumsq[-1] == 15.0**2 + 8.0**2


@pytest.fixture(scope="module")
def business(tmp_path_factory):
    from pco_lib.data.sample import generate_sample

    out = tmp_path_factory.mktemp("cohorts") / "s"
    truth = generate_sample(out, customers=20_000, seed=5, progress=False)
    source = data.connect(out)
    return truth, source.table("customers"), data.activity_table(source), source


def test_recovers_the_onboarding_uplift_of_the_sample_business(business):
    truth, customers, activity, _ = business
    change = truth["onboarding_change"]
    readout = compare_before_after(customers, activity, change["date"], days=90, window_days=120)
    effect = change["true_effect_repeat_90d"]
    assert readout.retention.ci_low < effect < readout.retention.ci_high
    assert readout.retention.p_value < 0.01
    assert readout.its.ci_low < effect < readout.its.ci_high
    # a change of two shares is written in percentage points, the relative change beside it
    r = readout.retention
    text = " ".join(cohorts.summary_points(cohorts.summarize_cohorts(customers, activity, "month"), readout))
    assert f"a difference of **{r.difference * 100:+.1f} pts** ({r.after / r.before - 1:+.1%} relative" in text
    shown = readout.in_units().set_index("metric")
    assert shown.loc["retention at day 90", "difference"] == f"{r.difference * 100:+.1f} pts"
    assert shown.loc["retention at day 90", "before"] == f"{r.before:.1%}"
    assert shown.loc["retention jump (cohort regression)", "before"] == ""
    revenue = shown.loc["revenue per customer, first 90 days"]
    assert revenue.difference == money(readout.revenue.difference, "+,.2f")


def test_no_change_where_there_was_none(business):
    _, customers, activity, _ = business
    readout = compare_before_after(customers, activity, "2025-05-01", days=90, window_days=120)
    assert readout.its.ci_low < 0 < readout.its.ci_high
    assert readout.retention.ci_low < 0 < readout.retention.ci_high


def test_too_little_data_after_the_change_says_it_cannot_compare(business):
    _, customers, activity, _ = business
    readout = compare_before_after(customers, activity, "2026-09-20", days=90)
    assert not readout.compared and readout.retention is None and readout.its is None
    assert readout.warnings[0].startswith("Cannot compare before and after 2026-09-20: too few customers after")
    assert readout.to_frame().empty


def test_bad_arguments():
    with pytest.raises(ValueError, match="period must be one of"):
        summarize_cohorts(CUSTOMERS, _activity(ORDERS), "fortnight")
    with pytest.raises(data.DataError, match="no column 'colour'"):
        summarize_cohorts(CUSTOMERS, _activity(ORDERS), "month", segment="colour")


def test_revenue_retention(summary):
    m = summary.matrix("revenue_retention")
    assert m.loc[T("2026-01-01"), 1] == 20.0 / 20.0 and m.loc[T("2026-02-01"), 1] == 8.0 / 7.0


def test_subscription_activity_counts_live_periods():
    customers = CUSTOMERS.iloc[:2]
    subs = pd.DataFrame({"customer_id": ["A", "B"], "at": [T("2026-01-05"), T("2026-01-20")],
                         "until": [T("2026-02-20"), pd.NaT], "revenue": [0.0, 0.0]})
    s = summarize_cohorts(customers, subs, "month", as_of=T("2026-05-01"))
    m = s.matrix("retention")
    # A: live days 0-46 -> ages 0 and 1, not age 2 (60-90); B never ended -> every age. Jan: last member B
    # converted 01-20 -> 101 days -> ages 0-2 elapsed, age 3 not.
    assert m.loc[T("2026-01-01")].tolist()[:3] == [1.0, 1.0, 0.5]
    assert np.isnan(m.loc[T("2026-01-01"), 3])


def test_sample_subscription_retention_matches_a_direct_count(business):
    *_, source = business
    summary = summarize_cohorts(source.table("customers"), data.activity_table(source, "subscription"), "month",
                                horizon=3)
    cohort = T("2025-01-01")
    c = pd.read_parquet(source.data_dir / "customers.parquet")
    s = pd.read_parquet(source.data_dir / "subscriptions.parquet").merge(c, on="customer_id")
    s = s[s.converted_at.dt.tz_localize(None).dt.to_period("M").dt.to_timestamp() == cohort]
    start = s.converted_at + pd.Timedelta(days=30)  # age 1 = days 30-60 after conversion
    live = (s.started_at < start + pd.Timedelta(days=30)) & (s.ended_at.isna() | (s.ended_at > start))
    n = (c.converted_at.dt.tz_localize(None).dt.to_period("M").dt.to_timestamp() == cohort).sum()
    assert summary.matrix("retention").loc[cohort, 1] == pytest.approx(s[live].customer_id.nunique() / n, abs=1e-12)
    assert summary.matrix("retention").loc[cohort, 0] == pytest.approx(s.customer_id.nunique() / n, abs=1e-12)


def test_the_report_reads_the_engine_once_overall_is_the_segments_added_up(business):
    """cohort_retention summarizes by segment and takes the overall views from combined(): every cell, size
    and matrix equals the overall summary's own engine query (each customer is in one segment)."""
    _, customers, activity, _ = business
    overall = summarize_cohorts(customers, activity, "month", horizon=12)
    combined = summarize_cohorts(customers, activity, "month", segment="channel", horizon=12).combined()
    keys = ["cohort", "age"]
    columns = ["cohort", "age", "customers", "active", "orders", "revenue", "elapsed"]
    left, right = (s.cells[columns].sort_values(keys).reset_index(drop=True) for s in (overall, combined))
    pd.testing.assert_frame_equal(left, right, check_dtype=False)
    pd.testing.assert_series_equal(overall.sizes(), combined.sizes(), check_dtype=False)
    for value in ("retention", "revenue_retention", "orders_per_customer"):
        pd.testing.assert_frame_equal(overall.matrix(value, min_cell_size=10), combined.matrix(value, min_cell_size=10))
    assert overall.notes == combined.notes
