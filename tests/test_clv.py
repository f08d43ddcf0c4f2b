"""Customer lifetime value models, checked against the published CDNOW and Fader & Hardie (2007) figures.

CDNOW data: tests/data/cdnow_sample.txt, a copy of lifetimes' CDNOW_sample.txt (the 1/10 sample used by Fader,
Hardie & Lee 2005): 6,919 transactions of 2,357 customers, calibration to 1997-09-30, weeks as time unit.
"""

import math
from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import pytest

from pco_lib import clv
from pco_lib.clv import BGNBD, ClvError, GammaGamma, ParetoNBD, ShiftedBetaGeometric

DATA = Path(__file__).parent / "data" / "cdnow_sample.txt"
CALIBRATION_END = "1997-09-30"
T = pd.Timestamp


@pytest.fixture(scope="module")
def cdnow_orders() -> pd.DataFrame:
    raw = pd.read_csv(DATA, sep=r"\s+", header=None, names=["master_id", "sample_id", "date", "cds", "value"],
                      dtype={"master_id": str, "sample_id": str, "date": str})
    return pd.DataFrame({"customer_id": raw.sample_id, "ordered_at": pd.to_datetime(raw.date, format="%Y%m%d"),
                         "revenue": raw.value.astype(float)})


@pytest.fixture(scope="module")
def rfm(cdnow_orders) -> pd.DataFrame:
    """Distinct (x, t_x, T) rows with a count, built in the engine from an in-memory Ibis table."""
    return clv.rfm_table(ibis.memtable(cdnow_orders), CALIBRATION_END)


@pytest.fixture(scope="module")
def customers(cdnow_orders) -> pd.DataFrame:
    return clv.rfm_table(ibis.memtable(cdnow_orders), CALIBRATION_END, per_customer=True)


@pytest.fixture(scope="module")
def bgnbd(rfm) -> BGNBD:
    return BGNBD().fit(rfm.frequency, rfm.recency, rfm["T"], weights=rfm["count"])


@pytest.fixture(scope="module")
def gamma_gamma(customers) -> GammaGamma:
    repeat = customers[customers.frequency > 0]
    return GammaGamma().fit(repeat.frequency, repeat.monetary)


# --------------------------------------------------------------------------------------------------
# rfm_table
# --------------------------------------------------------------------------------------------------

ORDERS = pd.DataFrame({
    "customer_id": ["A", "A", "A", "A", "B", "C", "C", "D"],
    "ordered_at": [T("2026-01-01 09:00"), T("2026-01-01 18:00"),  # A: same day -> one purchase of 30
                   T("2026-01-08 10:00"), T("2026-01-22 00:00"),  # A: repeats on days 7 and 21
                   T("2026-01-15 12:00"),                          # B: one purchase only
                   T("2026-01-29 08:00"), T("2026-02-05 08:00"),   # C: second order after calibration
                   T("2026-02-02 08:00")],                         # D: first purchase after calibration
    "revenue": [10.0, 20.0, 5.0, 15.0, 8.0, 4.0, 6.0, 1.0],
})


def test_rfm_per_customer_by_hand():
    df = clv.rfm_table(ibis.memtable(ORDERS), "2026-01-29", per_customer=True)
    assert df.customer_id.tolist() == ["A", "B", "C"]  # D starts after calibration_end: excluded
    a, b, c = (df.iloc[i] for i in range(3))
    # A: purchase days Jan 1, 8, 22 -> x = 2, t_x = 21 d = 3 weeks, T = 28 d = 4 weeks, repeat mean (5+15)/2
    assert (a.frequency, a.recency, a["T"], a.monetary) == (2, 3.0, 4.0, 10.0)
    assert (b.frequency, b.recency, b["T"]) == (0, 0.0, 2.0) and np.isnan(b.monetary)
    # C: the order on calibration_end (a calendar day, inclusive) counts, the later one does not
    assert (c.frequency, c.recency, c["T"]) == (0, 0.0, 0.0) and np.isnan(c.monetary)


def test_rfm_distinct_rows_carry_counts_and_observed_from_drops_early_customers():
    two_alike = pd.concat([ORDERS, ORDERS[ORDERS.customer_id == "B"].assign(customer_id="E")])
    df = clv.rfm_table(ibis.memtable(two_alike), "2026-01-29", time_unit_days=1.0)
    assert df.to_dict("list") == {"frequency": [0, 0, 2], "recency": [0.0, 0.0, 21.0], "T": [0.0, 14.0, 28.0],
                                  "count": [1, 2, 1]}
    later = clv.rfm_table(ibis.memtable(ORDERS), "2026-01-29", observed_from="2026-01-10", per_customer=True)
    assert later.customer_id.tolist() == ["B", "C"]  # A's first purchase predates the data window


def test_rfm_runs_on_a_duckdb_table_and_rejects_missing_columns():
    con = ibis.duckdb.connect()
    table = con.create_table("orders", ORDERS)
    df = clv.rfm_table(table, "2026-01-29")
    assert df["count"].sum() == 3
    # a date column (no time of day) works the same
    as_dates = ORDERS.assign(ordered_at=ORDERS.ordered_at.dt.date)
    pd.testing.assert_frame_equal(clv.rfm_table(ibis.memtable(as_dates), "2026-01-29"), df)
    with pytest.raises(ClvError, match="revenue"):
        clv.rfm_table(ibis.memtable(ORDERS.drop(columns="revenue")), "2026-01-29")
    with pytest.raises(ClvError, match="time_unit_days"):
        clv.rfm_table(ibis.memtable(ORDERS), "2026-01-29", time_unit_days=0)


def test_cdnow_summary_matches_the_published_construction(rfm, customers):
    # README / FHL 2005: 2,357 customers, 946 with repeat purchases in calibration
    assert rfm["count"].sum() == 2357 and len(customers) == 2357
    assert (customers.frequency > 0).sum() == 946
    # the example customer of FHL 2005 (x = 2, t_x = 30.43, T = 38.86) is customer 0001
    first = customers.set_index("customer_id").loc["0001"]
    assert first.frequency == 2 and round(first.recency, 2) == 30.43 and round(first["T"], 2) == 38.86


# --------------------------------------------------------------------------------------------------
# BG/NBD
# --------------------------------------------------------------------------------------------------


def test_bgnbd_reproduces_fader_hardie_lee_2005(bgnbd):
    # FHL 2005 "Counting your customers the easy way", section 5: r = 0.243, α = 4.414, a = 0.793, b = 2.426,
    # LL = −9582.4; checked to the printed digits (half a unit of the last digit).
    assert bgnbd.r_ == pytest.approx(0.243, abs=5e-4)
    assert bgnbd.alpha_ == pytest.approx(4.414, abs=5e-4)
    assert bgnbd.a_ == pytest.approx(0.793, abs=5e-4)
    assert bgnbd.b_ == pytest.approx(2.426, abs=5e-4)
    assert bgnbd.log_likelihood_ == pytest.approx(-9582.4, abs=0.05)
    assert bgnbd.n_ == 2357
    se = bgnbd.summary["se(coef)"]
    assert list(bgnbd.summary.index) == ["r", "alpha", "a", "b"] and (se > 0).all() and (se < bgnbd.params_).all()
    assert "alpha" in bgnbd._repr_html_() and "LL=-9582.4" in repr(bgnbd)


def test_bgnbd_conditional_predictions_of_the_example_customer(bgnbd):
    # FHL 2005, section 5: x = 2, t_x = 30.43, T = 38.86 -> 1.226 purchases in the next 39 weeks (eq. 10),
    # P(alive) = 0.7266; to the printed digits.
    assert bgnbd.expected_purchases(39, 2, 30.43, 38.86) == pytest.approx(1.226, abs=5e-4)
    assert bgnbd.probability_alive(2, 30.43, 38.86) == pytest.approx(0.7266, abs=5e-5)
    # no repeat purchase: alive with certainty under BG/NBD; no time, no purchases
    assert bgnbd.probability_alive(0, 0, 38.86) == 1.0
    assert bgnbd.expected_purchases(0, 2, 30.43, 38.86) == 0.0


def test_bgnbd_unconditional_expectation_is_consistent(bgnbd):
    # E[X(t)] is increasing from 0; for a brand-new customer (x = t_x = T = 0) eq. 10 reduces to eq. 9
    e = bgnbd.expected_purchases_new([0.0, 10.0, 39.0, 78.0])
    assert e[0] == 0.0 and np.all(np.diff(e) > 0)
    assert bgnbd.expected_purchases(39.0, 0, 0, 0) == pytest.approx(e[2], rel=1e-10)


def test_weighted_fit_on_distinct_rows_equals_one_row_per_customer(rfm, customers, bgnbd):
    per_customer = BGNBD().fit(customers.frequency, customers.recency, customers["T"])
    assert len(rfm) < len(customers)
    np.testing.assert_allclose(per_customer.params_, bgnbd.params_, rtol=1e-6)
    assert per_customer.log_likelihood_ == pytest.approx(bgnbd.log_likelihood_, abs=1e-8)


def test_predictions_return_a_series_for_series_input(bgnbd, customers):
    head = customers.head(5).set_index("customer_id")
    alive = bgnbd.probability_alive(head.frequency, head.recency, head["T"])
    assert isinstance(alive, pd.Series) and list(alive.index) == list(head.index)


@pytest.mark.parametrize("frequency, recency, T_, match", [
    ([], [], [], "empty"),
    ([-1, 1], [0, 1], [2, 2], "frequency must be finite and ≥ 0"),
    ([1.5, 1], [1, 1], [2, 2], "whole number"),
    ([1, 1], [3, 1], [2, 2], "recency must be ≤ T"),
    ([0, 1], [1, 1], [2, 2], "0 when frequency is 0"),
    ([1, np.nan], [1, 1], [2, 2], "finite"),
    ([1, 1], [1, 1], [2], "same length"),
    ([0, 0], [0, 0], [2, 3], "at least one customer with a repeat purchase"),
])
def test_bgnbd_rejects_invalid_input(frequency, recency, T_, match):
    with pytest.raises(ClvError, match=match):
        BGNBD().fit(frequency, recency, T_)


def test_bgnbd_errors_for_bad_weights_no_convergence_and_unfitted_models(rfm):
    args = (rfm.frequency, rfm.recency, rfm["T"])
    with pytest.raises(ClvError, match="weights"):
        BGNBD().fit(*args, weights=-rfm["count"])
    with pytest.raises(ClvError, match="did not converge"):
        BGNBD(max_iter=2).fit(*args, weights=rfm["count"])
    with pytest.raises(ClvError, match="not fitted"):
        BGNBD().probability_alive(1, 1, 2)
    assert issubclass(ClvError, ValueError)


# --------------------------------------------------------------------------------------------------
# Pareto/NBD
# --------------------------------------------------------------------------------------------------


def test_pareto_nbd_reproduces_the_published_cdnow_fit(rfm):
    # Fader, Hardie & Lee 2005 (BG/NBD paper, Pareto/NBD comparison): r = 0.553, α = 10.578, s = 0.606,
    # β = 11.669, LL = −9595.0; to the printed digits, except β (flat likelihood in β, se ≈ 6) to 0.01.
    m = ParetoNBD().fit(rfm.frequency, rfm.recency, rfm["T"], weights=rfm["count"])
    assert m.r_ == pytest.approx(0.553, abs=5e-4)
    assert m.alpha_ == pytest.approx(10.578, abs=5e-3)
    assert m.s_ == pytest.approx(0.606, abs=5e-4)
    assert m.beta_ == pytest.approx(11.669, abs=1e-2)
    assert m.log_likelihood_ == pytest.approx(-9595.0, abs=0.05)
    alive = m.probability_alive([0, 2, 2], [0, 30.43, 2.0], [38.86, 38.86, 38.86])
    assert 0 < alive[2] < alive[1] < 1 and 0 < alive[0] < 1  # a long silence lowers P(alive)
    assert m.expected_purchases(39, 2, 30.43, 38.86) > m.expected_purchases(39, 2, 2.0, 38.86) > 0


# --------------------------------------------------------------------------------------------------
# Gamma-Gamma
# --------------------------------------------------------------------------------------------------


def test_gamma_gamma_reproduces_fader_hardie_lee_rfm_and_clv(gamma_gamma):
    # FHL 2005 "RFM and CLV" (946 repeat customers, mean value of calibration repeat purchases):
    # p = 6.25, q = 3.74, γ = 15.44; to the printed digits.
    assert gamma_gamma.n_ == 946
    assert gamma_gamma.p_ == pytest.approx(6.25, abs=5e-3)
    assert gamma_gamma.q_ == pytest.approx(3.74, abs=5e-3)
    assert gamma_gamma.gamma_ == pytest.approx(15.44, abs=5e-3)
    # README: p·γ/(q − 1) ≈ 35.22 from the rounded parameters; the unrounded fit gives 35.17
    assert 6.25 * 15.44 / (3.74 - 1) == pytest.approx(35.22, abs=5e-3)
    assert gamma_gamma.mean_spend() == pytest.approx(35.17, abs=5e-3)


def test_gamma_gamma_expected_spend_shrinks_towards_the_population_mean(gamma_gamma):
    p, q, g = gamma_gamma.p_, gamma_gamma.q_, gamma_gamma.gamma_
    spend = gamma_gamma.expected_spend([0, 1, 10], [np.nan, 100.0, 100.0])
    assert spend[0] == pytest.approx(gamma_gamma.mean_spend())
    # Fader & Hardie 2013: E[Z | x, m_x] = p (γ + x m_x) / (p x + q − 1), by hand for x = 1, m = 100
    assert spend[1] == pytest.approx(p * (g + 100.0) / (p + q - 1), rel=1e-12)
    assert gamma_gamma.mean_spend() < spend[1] < spend[2] < 100.0


def test_gamma_gamma_weights_equal_repeated_rows(customers):
    repeat = customers[customers.frequency > 0].head(300)
    twice = pd.concat([repeat, repeat])
    weighted = GammaGamma().fit(repeat.frequency, repeat.monetary, weights=np.full(len(repeat), 2.0))
    doubled = GammaGamma().fit(twice.frequency, twice.monetary)
    np.testing.assert_allclose(weighted.params_, doubled.params_, rtol=1e-6)
    assert weighted.log_likelihood_ == pytest.approx(doubled.log_likelihood_, rel=1e-12)


def test_gamma_gamma_rejects_non_repeat_customers_and_non_positive_spend():
    with pytest.raises(ClvError, match="repeat customers only"):
        GammaGamma().fit([0, 2], [np.nan, 10.0])
    with pytest.raises(ClvError, match="monetary must be finite and > 0"):
        GammaGamma().fit([1, 2], [0.0, 10.0])
    with pytest.raises(ClvError, match="empty"):
        GammaGamma().fit([], [])


# --------------------------------------------------------------------------------------------------
# Discounted CLV
# --------------------------------------------------------------------------------------------------


class _LinearPurchases:
    """A purchase model with E[Y(t)] = rate · t, so discounted sums can be done by hand."""

    def __init__(self, rate):
        self.rate = rate

    def expected_purchases(self, t, frequency, recency, T):
        return self.rate * t * np.ones(len(np.atleast_1d(frequency)))


class _FixedSpend:
    def expected_spend(self, frequency, monetary):
        return np.full(len(np.atleast_1d(frequency)), 10.0)


def test_clv_by_hand_with_monthly_discounting():
    # 0.5 purchases a week × 10 per purchase; one year in 12 steps of 365.25/12 days, each step's purchases
    # (0.5 · 30.4375/7) discounted from its end at 10% a year: Σ_k v^k with v = 1.1^(−1/12) = v(1 − 1/1.1)/(1 − v)
    v = 1.1 ** (-1 / 12)
    expected = 10 * 0.5 * 30.4375 / 7 * v * (1 - 1 / 1.1) / (1 - v)
    assert expected == pytest.approx(247.8588, abs=1e-4)
    got = clv.clv(_LinearPurchases(0.5), _FixedSpend(), [1], [1.0], [2.0], [10.0], horizon_days=365.25,
                  time_unit_days=7, discount_rate_per_year=0.1)
    assert got[0] == pytest.approx(expected, rel=1e-12)
    undiscounted = clv.clv(_LinearPurchases(0.5), _FixedSpend(), [1], [1.0], [2.0], [10.0], horizon_days=365.25,
                           time_unit_days=7, discount_rate_per_year=0.0)
    assert undiscounted[0] == pytest.approx(10 * 0.5 * 365.25 / 7, rel=1e-12)
    # a horizon that is not a whole number of steps: the last, shorter step ends at the horizon
    partial = clv.clv(_LinearPurchases(1.0), _FixedSpend(), [0], [0.0], [1.0], [np.nan], horizon_days=40,
                      time_unit_days=1, discount_rate_per_year=0.05, step_days=30)
    assert partial[0] == pytest.approx(10 * (30 * 1.05 ** (-30 / 365.25) + 10 * 1.05 ** (-40 / 365.25)))


def test_clv_on_cdnow(bgnbd, gamma_gamma, customers):
    c = customers.head(200)
    args = (bgnbd, gamma_gamma, c.frequency, c.recency, c["T"], c.monetary)
    zero = clv.clv(*args, horizon_days=0, time_unit_days=7, discount_rate_per_year=0.1)
    assert isinstance(zero, pd.Series) and (zero == 0).all()
    year = clv.clv(*args, horizon_days=365, time_unit_days=7, discount_rate_per_year=0.1)
    two_years = clv.clv(*args, horizon_days=730, time_unit_days=7, discount_rate_per_year=0.1)
    assert (year > 0).all() and (two_years > year).all()
    # no discounting: expected spend × expected purchases over the whole horizon
    plain = clv.clv(*args, horizon_days=365, time_unit_days=7, discount_rate_per_year=0.0)
    by_hand = (gamma_gamma.expected_spend(c.frequency, c.monetary)
               * bgnbd.expected_purchases(365 / 7, c.frequency, c.recency, c["T"]))
    np.testing.assert_allclose(plain, by_hand, rtol=1e-10)
    assert (year < plain).all()


def test_clv_does_not_depend_on_the_time_unit_of_the_fit(cdnow_orders, bgnbd, gamma_gamma, customers):
    # Refit in days: α scales by 7, r, a, b are unchanged, and CLV over 180 days is the same.
    days = clv.rfm_table(ibis.memtable(cdnow_orders), CALIBRATION_END, time_unit_days=1.0)
    daily = BGNBD().fit(days.frequency, days.recency, days["T"], weights=days["count"])
    assert daily.alpha_ == pytest.approx(7 * bgnbd.alpha_, rel=1e-4) and daily.r_ == pytest.approx(bgnbd.r_, rel=1e-4)
    c = customers.head(50)
    weekly = clv.clv(bgnbd, gamma_gamma, c.frequency, c.recency, c["T"], c.monetary, horizon_days=180,
                     time_unit_days=7, discount_rate_per_year=0.08)
    in_days = clv.clv(daily, gamma_gamma, c.frequency, c.recency * 7, c["T"] * 7, c.monetary, horizon_days=180,
                      time_unit_days=1, discount_rate_per_year=0.08)
    np.testing.assert_allclose(in_days, weekly, rtol=1e-3)


@pytest.mark.parametrize("kwargs, match", [
    ({"horizon_days": -1}, "horizon_days"),
    ({"time_unit_days": 0}, "time_unit_days"),
    ({"discount_rate_per_year": -1.0}, "discount_rate_per_year"),
    ({"discount_rate_per_year": math.inf}, "discount_rate_per_year"),
    ({"step_days": 0}, "step_days"),
])
def test_clv_rejects_invalid_units(bgnbd, gamma_gamma, kwargs, match):
    args = {"horizon_days": 365, "time_unit_days": 7, "discount_rate_per_year": 0.1} | kwargs
    with pytest.raises(ClvError, match=match):
        clv.clv(bgnbd, gamma_gamma, [1], [1.0], [2.0], [10.0], **args)


# --------------------------------------------------------------------------------------------------
# Shifted-beta-geometric
# --------------------------------------------------------------------------------------------------

# Fader & Hardie (2007) "How to project customer retention", customers alive at years 0..7 out of 1000.
# Published fits (their Table/Figure; recomputed here by fitting, same to three decimals):
# regular α = 0.704, β = 1.182; high end α = 0.668, β = 3.806.
REGULAR = [1000, 631, 468, 382, 326, 289, 262, 241]
HIGH_END = [1000, 869, 743, 653, 593, 551, 517, 491]


@pytest.mark.parametrize("alive, alpha, beta", [(REGULAR, 0.704, 1.182), (HIGH_END, 0.668, 3.806)])
def test_sbg_reproduces_fader_hardie_2007(alive, alpha, beta):
    m = ShiftedBetaGeometric().fit(alive)
    assert m.alpha_ == pytest.approx(alpha, abs=5e-4)  # to the printed digits
    assert m.beta_ == pytest.approx(beta, abs=5e-4)
    # the log-likelihood equals F&H 2007 eq. 7 written out with the recursion P(1) = α/(α+β),
    # P(t) = (β+t−2)/(α+β+t−1) P(t−1), S(t) = S(t−1) − P(t)
    a, b = m.alpha_, m.beta_
    p, s, ll = a / (a + b), 1.0, 0.0
    for t in range(1, len(alive)):
        if t > 1:
            p *= (b + t - 2) / (a + b + t - 1)
        s -= p
        ll += (alive[t - 1] - alive[t]) * math.log(p)
    ll += alive[-1] * math.log(s)
    assert m.log_likelihood_ == pytest.approx(ll, rel=1e-10)
    assert m.survival(len(alive) - 1) == pytest.approx(s, rel=1e-10)


def test_sbg_survival_retention_churn_and_derl_agree():
    m = ShiftedBetaGeometric().fit(REGULAR)
    t = np.arange(1, 12)
    s = m.survival(np.arange(0, 12))
    assert s[0] == 1.0
    np.testing.assert_allclose(m.retention_rate(t), s[1:] / s[:-1], rtol=1e-12)
    np.testing.assert_allclose(m.churn_probability(t), s[:-1] - s[1:], rtol=1e-10)
    assert np.all(np.diff(m.retention_rate(t)) > 0)  # retention rises with tenure (heterogeneity)
    # DERL (Fader & Hardie 2010, eq. 6) equals the direct sum Σ_{t≥n} S(t)/S(n−1) (1+d)^−(t−n), n = renewals + 1
    d, renewals = 0.1, 3
    n = renewals + 1
    tt = np.arange(n, 4000)
    direct = float(np.sum(m.survival(tt) / m.survival(n - 1) * (1 + d) ** -(tt - n)))
    assert m.derl(d, renewals) == pytest.approx(direct, rel=1e-9)
    assert m.derl(d, 10) > m.derl(d, 0)  # survivors are the more loyal customers


def test_sbg_churn_counts_and_invalid_input():
    from_alive = ShiftedBetaGeometric().fit(HIGH_END)
    lost = -np.diff(HIGH_END)
    from_churn = ShiftedBetaGeometric().fit_churn(lost, HIGH_END[-1])
    np.testing.assert_allclose(from_churn.params_, from_alive.params_, rtol=1e-12)
    with pytest.raises(ClvError, match="non-increasing"):
        ShiftedBetaGeometric().fit([1000, 600, 700])
    with pytest.raises(ClvError, match="nobody churned"):
        ShiftedBetaGeometric().fit([100, 100, 100])
    with pytest.raises(ClvError, match="at least one later count"):
        ShiftedBetaGeometric().fit([100])
