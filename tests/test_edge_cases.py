"""Real-data edge cases of the report domains: $0 orders, customers without orders, one cohort only, an
experiment arm without mature customers, and windows longer than the data.

Each expectation is computed independently (pandas on the raw rows) or follows from the published CDNOW
figures (Fader, Hardie & Lee 2005; see tests/test_clv.py), never copied from the code under test.
"""

from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import pytest

from pco_lib import clv, data
from pco_lib.stats.models import BGNBD, ClvError

CALIBRATION_END = "1997-09-30"


@pytest.fixture(scope="module")
def cdnow(cdnow_orders) -> pd.DataFrame:
    return cdnow_orders.copy()  # the session's frame stays as read


def _source(orders: pd.DataFrame, customers: pd.DataFrame | None = None):
    con = ibis.duckdb.connect()
    con.create_table("orders", orders)
    if customers is None:
        customers = pd.DataFrame({"customer_id": orders.customer_id.unique()})
    con.create_table("customers", customers)
    return data.connect(con=con)


def _with_zero_orders(cdnow: pd.DataFrame) -> pd.DataFrame:
    """CDNOW with more $0 orders: every 5th order (some on a day with a paid order, some alone) and every
    repeat order of 20 repeat customers (so their repeat purchases are all $0)."""
    o = cdnow.copy()
    o.loc[o.index % 5 == 0, "revenue"] = 0.0
    first = o.groupby("customer_id").ordered_at.transform("min")
    repeaters = o[o.ordered_at > first].customer_id.unique()[:20]
    o.loc[o.customer_id.isin(repeaters) & (o.ordered_at > first), "revenue"] = 0.0
    return o


def _by_hand(orders: pd.DataFrame, end: str) -> pd.DataFrame:
    """Per customer, in pandas: x (purchase days − 1), t_x and T in weeks, and the paid repeat days x⁺ with
    their mean revenue (the spend Gamma-Gamma should see)."""
    o = orders[orders.ordered_at.dt.normalize() <= pd.Timestamp(end)]
    days = o.assign(day=o.ordered_at.dt.normalize()).groupby(["customer_id", "day"], as_index=False).revenue.sum()
    days["first"] = days.groupby("customer_id").day.transform("min")
    g = days.groupby("customer_id")
    out = pd.DataFrame({"x": g.size() - 1, "tx": (g.day.max() - g.day.min()).dt.days / 7,
                        "T": (pd.Timestamp(end) - g.day.min()).dt.days / 7})
    paid = days[(days.day > days["first"]) & (days.revenue > 0)].groupby("customer_id").revenue
    out["paid_x"] = paid.size().reindex(out.index, fill_value=0)
    out["paid_mean"] = paid.mean().reindex(out.index)
    return out


# --------------------------------------------------------------------------------------------------
# clv: $0 orders and customers without orders
# --------------------------------------------------------------------------------------------------


def test_cdnow_zero_orders_are_first_purchases_and_leave_the_published_fits_alone(cdnow):
    # CDNOW's 8 $0 orders are all first purchases of their customers (no $0 repeat purchase in calibration),
    # so Gamma-Gamma on the 946 repeat customers is the published p 6.25, q 3.74, γ 15.44 however $0 repeat
    # purchases are treated; BG/NBD is r 0.243, α 4.414, a 0.793, b 2.426, LL −9582.4 (FHL 2005)
    hand = _by_hand(cdnow, CALIBRATION_END)
    assert (cdnow.revenue == 0).sum() == 8
    readout = clv.analyze(_source(cdnow), calibration_end=CALIBRATION_END, segment=None)
    assert readout.zero_revenue_orders == 8 and readout.zero_spend_customers == 0
    val = readout.validation
    assert val.gamma_gamma.n_ == (hand.paid_x > 0).sum() == (hand.x > 0).sum() == 946
    assert val.gamma_gamma.params_.to_dict() == pytest.approx({"p": 6.25, "q": 3.74, "gamma": 15.44}, abs=5e-3)
    assert val.model.params_.to_dict() == pytest.approx({"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426},
                                                        abs=5e-4)
    assert val.model.log_likelihood_ == pytest.approx(-9582.4, abs=0.05)
    _, hidden = clv.headlines(readout)
    assert hidden["data.zero_revenue_orders"] == 8 and hidden["data.zero_spend_customers"] == 0
    assert "8 orders have zero revenue" in clv.data_coverage(readout)
    assert "no repeat customer is left out of the spend model" in clv.data_coverage(readout)


@pytest.fixture(scope="module")
def zero_readout(cdnow):
    orders = _with_zero_orders(cdnow)
    never = pd.DataFrame({"customer_id": [f"never{i}" for i in range(7)]})
    customers = pd.concat([pd.DataFrame({"customer_id": cdnow.customer_id.unique()}), never])
    return orders, clv.analyze(_source(orders, customers), calibration_end=CALIBRATION_END, segment=None)


def test_zero_orders_are_purchases_for_the_purchase_model(zero_readout):
    orders, readout = zero_readout
    hand = _by_hand(orders, CALIBRATION_END)
    # the purchase model fitted on frequencies computed independently (pandas, one row per customer) ...
    independent = BGNBD().fit(hand.x, hand.tx, hand["T"], time_unit_days=7.0)
    val = readout.validation
    assert val.model.params_.to_dict() == pytest.approx(independent.params_.to_dict(), rel=1e-6)
    assert val.model.log_likelihood_ == pytest.approx(independent.log_likelihood_, rel=1e-9)
    # ... is the published one: $0 orders are purchases, so setting revenue to 0 changes nothing
    assert val.model.params_.to_dict() == pytest.approx({"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426},
                                                        abs=5e-4)
    assert val.model.log_likelihood_ == pytest.approx(-9582.4, abs=0.05)


def test_zero_orders_are_left_out_of_spend_and_counted(zero_readout):
    orders, readout = zero_readout
    hand = _by_hand(orders, CALIBRATION_END)
    per = clv.rfm_table(ibis.memtable(orders), CALIBRATION_END, per_customer=True).set_index("customer_id")
    paid = hand[hand.paid_x > 0]
    # the spend model sees only positive means, over the paid repeat purchases
    assert (per.monetary.dropna() > 0).all()
    assert per.spend_frequency.to_dict() == hand.paid_x.to_dict()
    np.testing.assert_allclose(per.loc[paid.index, "monetary"], paid.paid_mean, rtol=1e-12)
    assert val_n(readout) == len(paid)
    # customers whose repeat purchases are all $0 leave the spend model; they keep their purchases
    all_zero = hand[(hand.x > 0) & (hand.paid_x == 0)]
    assert len(all_zero) >= 20 and per.loc[all_zero.index, "monetary"].isna().all()
    # the counts reported (full data, to the last order day) against pandas
    full = _by_hand(orders, orders.ordered_at.max().strftime("%Y-%m-%d"))
    assert readout.zero_revenue_orders == int((orders.revenue == 0).sum())
    assert readout.zero_spend_customers == int(((full.x > 0) & (full.paid_x == 0)).sum()) > 0
    assert readout.gamma_gamma.n_ == int((full.paid_x > 0).sum())
    assert readout.customers_without_orders == 7 and len(readout.values) == orders.customer_id.nunique()
    _, hidden = clv.headlines(readout)
    assert (hidden["data.zero_revenue_orders"], hidden["data.zero_spend_customers"],
            hidden["data.customers_without_orders"], hidden["data.spend_model_customers"]) == (
        readout.zero_revenue_orders, readout.zero_spend_customers, 7, readout.gamma_gamma.n_)
    text = clv.data_coverage(readout)
    assert f"{readout.zero_revenue_orders:,} orders have zero revenue" in text
    assert f"{readout.zero_spend_customers:,} repeat customers whose repeat purchases all had zero revenue" in text
    assert "7 customers have no orders" in text
    # customers left out of spend get the population mean spend, never NaN
    assert np.isfinite(readout.values.expected_spend).all() and np.isfinite(readout.values.clv).all()


def val_n(readout) -> int:
    return int(readout.validation.gamma_gamma.n_)


# --------------------------------------------------------------------------------------------------
# clv: windows longer than the data
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_cdnow(cdnow):
    """The first 600 CDNOW customers (orders 1997-01-01 … 1998-06-30): quick to fit."""
    keep = sorted(cdnow.customer_id.unique())[:600]
    return cdnow[cdnow.customer_id.isin(keep)].reset_index(drop=True)


def test_holdout_longer_than_the_data_is_shortened_to_half_with_a_note(small_cdnow):
    first, last = small_cdnow.ordered_at.min(), small_cdnow.ordered_at.max()
    span = (last - first).days
    readout = clv.analyze(_source(small_cdnow), holdout_days=span + 100, segment=None)
    assert readout.validation.holdout_days == span // 2
    assert readout.validation.calibration_end == f"{last - pd.Timedelta(days=span // 2):%Y-%m-%d}"
    assert any(f"holdout_days ({span + 100})" in n and f"last {span // 2} days" in n for n in readout.notes)
    _, hidden = clv.headlines(readout)
    assert hidden["parameters_used.holdout_days"] == span // 2 and hidden["notes"] == list(readout.notes)
    assert any(p.startswith("Note: holdout_days") for p in clv.summary_points(readout))


def test_calibration_end_outside_the_data(small_cdnow):
    source = _source(small_cdnow)
    with pytest.raises(ClvError, match=r"calibration_end 1996-12-01 is on or before the first order day "
                                       r"\(1997-01-01\).*choose a date after it"):
        clv.analyze(source, calibration_end="1996-12-01", segment=None)
    late = clv.analyze(source, calibration_end="1999-01-01", segment=None)
    assert late.validation is None and any("leaves no holdout" in n for n in late.notes)
    assert clv.validation_period(late) == "No holdout period: the model is not validated."
    _, hidden = clv.headlines(late)
    assert "validation.holdout_days" not in hidden and hidden["notes"] == list(late.notes)


# --------------------------------------------------------------------------------------------------
# cohorts: one cohort only, customers without orders, a horizon longer than the data
# --------------------------------------------------------------------------------------------------


def _one_cohort(n=300, never=40, seed=3):
    """n customers converting in March 2026 (first order at conversion, more orders later) and ``never``
    more converting then without ever ordering; data until the last order."""
    rng = np.random.default_rng(seed)
    conv = pd.Timestamp("2026-03-01") + pd.to_timedelta(rng.integers(0, 28 * 24, n + never), unit="h")
    customers = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n + never)], "converted_at": conv})
    rows = []
    for i in range(n):
        rows.append((f"c{i}", conv[i], 10.0))
        rows += [(f"c{i}", conv[i] + pd.Timedelta(days=int(d)), 5.0) for d in rng.integers(1, 200, rng.poisson(2))]
    return customers, pd.DataFrame(rows, columns=["customer_id", "at", "revenue"])


def test_one_cohort_and_customers_who_never_ordered():
    from pco_lib import cohorts

    customers, activity = _one_cohort()
    s = cohorts.summarize_cohorts(customers, activity, "month", horizon=12)
    m = s.matrix("retention")
    assert list(m.index) == [pd.Timestamp("2026-03-01")]  # one cohort row
    # the 40 who never ordered are converted (in the size) and never active, at any age
    assert s.sizes().iloc[0] == len(customers) == 340
    assert m.iloc[0, 0] == pytest.approx(activity.customer_id.nunique() / 340)
    # age 1, by hand: an order 30–59 days after the customer's own conversion
    since = activity.merge(customers, on="customer_id").pipe(lambda f: (f["at"] - f.converted_at).dt.days)
    at_1 = activity.customer_id[(since // 30 == 1).to_numpy()].nunique()
    assert m.iloc[0, 1] == pytest.approx(at_1 / 340)
    points = cohorts.summary_points(s, None)
    assert any(f"**{at_1 / 340:.0%}** of customers ordered again (only 1 cohort has reached it" in p for p in points)


def test_a_horizon_longer_than_the_data_is_shortened_with_a_note():
    from pco_lib import cohorts

    customers, activity = _one_cohort()
    until = activity["at"].max()
    complete = (until - customers.converted_at.max()).days // 30  # complete ages of the (only) cohort
    s = cohorts.summarize_cohorts(customers, activity, "month", horizon=24)
    assert s.cells[s.cells.elapsed].age.max() == complete - 1
    note = (f"the horizon (24 months) is longer than the data: the oldest cohort has been followed for "
            f"{complete} full months to {until:%Y-%m-%d}, so ages 0–{complete - 1} are shown")
    assert s.notes == (note,)
    assert f"Note: {note}" in cohorts.summary_points(s, None)
    cards, hidden = cohorts.headlines(s, None, 24)
    assert hidden["notes"] == [note] and dict((k, v) for k, v, *_ in cards)["retention.age_12"] is None
    assert cohorts.summarize_cohorts(customers, activity, "month", horizon=complete - 1).notes == ()
    with pytest.raises(cohorts.CohortError, match="horizon must be a whole number"):
        cohorts.summarize_cohorts(customers, activity, "month", horizon=-1)


@pytest.mark.parametrize("change, side", [("2026-07-01", "after"), ("2026-01-15", "before")])
def test_a_change_with_one_side_empty_cannot_be_compared(change, side):
    from pco_lib import cohorts

    customers, activity = _one_cohort()
    s = cohorts.summarize_cohorts(customers, activity, "month", horizon=12)
    readout = cohorts.compare_before_after(customers, activity, change, "new onboarding", days=60)
    assert not readout.compared and readout.retention is None and readout.to_frame().empty
    assert readout.warnings[0].startswith(f"Cannot compare before and after {change}: too few customers {side} "
                                          "the change")
    assert {"before": readout.customers_before, "after": readout.customers_after}[side] == 0
    points = cohorts.summary_points(s, readout)
    assert any(p.startswith("**new onboarding**") and "Cannot compare" in p for p in points)
    cards, hidden = cohorts.headlines(s, readout, 12)
    assert hidden["change.compared"] is False and not any(k.startswith("change.") for k, *_ in cards)


def test_days_longer_than_the_data_after_the_change_say_when_to_read_again():
    from pco_lib import cohorts

    customers, activity = _one_cohort()
    # a change on 2026-03-15 splits the March cohort, but 400-day retention has elapsed for nobody
    readout = cohorts.compare_before_after(customers, activity, "2026-03-15", days=400)
    assert not readout.compared and readout.customers_before == readout.customers_after == 0
    assert "reach 400 days from 2027-04-19: read it again then, or use a shorter retention_days" \
        in readout.warnings[0]
    after_the_data = cohorts.compare_before_after(customers, activity, "2030-01-01")
    assert after_the_data.warnings[0].endswith("The change date is after the end of the data: check change_date.")


# --------------------------------------------------------------------------------------------------
# experiments: an arm without mature customers, a window longer than the data
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def young_treatment(tiny_sample, tmp_path_factory) -> Path:
    """The tiny sample with onboarding_email's treatment assignments moved into the last 10 days of the
    data: none of them has a 30-day window yet."""
    import shutil

    out = tmp_path_factory.mktemp("young") / "data"
    shutil.copytree(tiny_sample, out)
    a = pd.read_parquet(out / "assignments.parquet")
    end = pd.read_parquet(out / "orders.parquet").ordered_at.max()
    young = (a.experiment_id == "onboarding_email") & (a.variant == "treatment")
    rng = np.random.default_rng(0)
    a.loc[young, "assigned_at"] = (end - pd.to_timedelta(rng.uniform(0, 10, young.sum()), unit="D")).astype(
        a.assigned_at.dtype)
    a.to_parquet(out / "assignments.parquet")
    return out


def test_an_arm_without_mature_customers_keeps_running(young_treatment):
    from pco_lib import experiments

    source = data.connect(young_treatment)
    readout = experiments.read_experiment(source, "onboarding_email", ["repeat", "revenue"], window_days=30)
    a = pd.read_parquet(young_treatment / "assignments.parquet")
    a = a[a.experiment_id == "onboarding_email"]
    end = pd.read_parquet(young_treatment / "orders.parquet").ordered_at.max()
    mature = a[a.assigned_at + pd.Timedelta(days=30) <= end].variant.value_counts()
    assert "treatment" not in mature.index and mature["control"] > 100  # by hand: only control has any
    assigned = int((a.variant == "treatment").sum())
    first_end = a[a.variant == "treatment"].assigned_at.min().tz_localize(None) + pd.Timedelta(days=30)
    assert readout.verdict == "keep running" and readout.immature == ("treatment",)
    assert readout.reasons[0] == (f"Not enough mature customers in arm treatment: 0 of its {assigned:,} assigned "
                                  f"customers have had their 30-day window end, at least 2 are needed; its first "
                                  f"30-day window ends on {first_end:%Y-%m-%d}.")
    assert readout.effects.effect.isna().all() and list(readout.effects.metric) == ["repeat", "revenue"]
    tone, title, text = experiments.verdict_display(readout)
    assert (tone, title) == ("waiting", "Keep running") and text.startswith("Not enough mature customers in arm")
    assert not any("a change of" in p for p in experiments.summary_points(readout))  # no effect to state yet
    cards, hidden = experiments.headlines(readout)
    assert hidden["verdict"] == "keep running" and np.isnan(hidden["metrics.repeat.treatment.effect"])
    by_week = experiments.summarize_experiment(source, "onboarding_email", 30, segment="assignment_week")
    assert experiments.cumulative_effects(by_week, readout.control, "repeat").empty


def test_analyze_with_an_arm_nobody_was_assigned_to():
    from pco_lib import experiments

    weights = pd.DataFrame({"variant": ["control", "treatment"], "weight": [0.5, 0.5],
                            "is_control": [True, False]})
    arms = pd.DataFrame([{"variant": "control", "assigned": 3, "n": 3, "repeat_sum": 1.0, "repeat_sumsq": 1.0}])
    readout = experiments.analyze(arms, weights, ["repeat"], "exp")
    assert readout.verdict == "keep running" and readout.immature == ("treatment",)
    assert readout.reasons[0] == "Not enough mature customers in arm treatment: nobody has been assigned to it yet."
    assert readout.arms.set_index("variant").n.to_dict() == {"control": 3, "treatment": 0}
    # many customers in control and none in treatment is also a sample ratio mismatch: said, not hidden
    arms.loc[0, ["assigned", "n"]] = 5000
    readout = experiments.analyze(arms, weights, ["repeat"], "exp")
    assert readout.verdict == "keep running" and readout.srm.mismatch
    assert readout.reasons[-1].startswith("Also, the arm sizes do not match the planned split")


def test_a_window_longer_than_the_experiment_has_run(tiny_sample):
    from pco_lib import experiments

    source = data.connect(tiny_sample)
    a = pd.read_parquet(tiny_sample / "assignments.parquet").query("experiment_id == 'checkout_copy'")
    end = pd.read_parquet(tiny_sample / "orders.parquet").ordered_at.max()
    window = (end - a.assigned_at.min()).days + 10  # longer than anyone has been assigned
    readout = experiments.read_experiment(source, "checkout_copy", ["repeat"], window_days=window)
    assert readout.verdict == "keep running" and readout.immature == ("control", "treatment")
    assert readout.left_out == len(a) and readout.arms.n.sum() == 0
    for reason, variant in zip(readout.reasons, ("control", "treatment")):
        first = a[a.variant == variant].assigned_at.min().tz_localize(None)
        assert reason.endswith(f"its first {window}-day window ends on "
                               f"{first + pd.Timedelta(days=window):%Y-%m-%d}.")
    assert "choose a shorter window_days" in readout.reasons[2]


# --------------------------------------------------------------------------------------------------
# end to end: three notebook runs through the runner
# --------------------------------------------------------------------------------------------------


def _visible_text(html_path: Path) -> str:
    import html
    import re

    return html.unescape(re.sub(r"<[^>]+>", " ", html_path.read_text()))


def test_ab_test_report_with_an_arm_without_mature_customers(young_treatment, tmp_path):
    from pco_lib.report import run_report

    result = run_report("ab_test", data_dir=young_treatment, out_dir=tmp_path,
                        params={"experiment_id": "onboarding_email", "segments": ["channel"]})
    assert result.status == "succeeded", result.error
    assert result.results["verdict"] == "keep running"
    assert result.results["verdict_reasons"][0].startswith("Not enough mature customers in arm treatment")
    assert "Not enough mature customers in arm treatment" in _visible_text(result.folder / "report.html")


def test_cohort_report_on_one_cohort_with_customers_who_never_ordered(tmp_path):
    from pco_lib.report import run_report

    customers, activity = _one_cohort()
    folder = tmp_path / "data"
    folder.mkdir()
    customers.assign(converted_at=customers.converted_at.dt.tz_localize("UTC")).to_parquet(
        folder / "customers.parquet")
    activity.assign(order_id=[f"o{i}" for i in range(len(activity))], ordered_at=activity["at"].dt.tz_localize("UTC"))[
        ["order_id", "customer_id", "ordered_at", "revenue"]].to_parquet(folder / "orders.parquet")
    result = run_report("cohort_retention", data_dir=folder, out_dir=tmp_path / "out",
                        params={"segment": "", "change_date": "2026-07-01", "horizon": 12})
    assert result.status == "succeeded", result.error
    assert result.results["change"]["compared"] is False and result.results["retention"]["age_12"] is None
    assert result.results["notes"][0].startswith("the horizon (12 months) is longer than the data")
    text = _visible_text(result.folder / "report.html")
    assert "Cannot compare before and after 2026-07-01" in text and "the horizon (12 months)" in text


def test_clv_report_with_zero_orders_and_customers_without_orders(small_cdnow, tmp_path):
    from pco_lib.report import run_report

    orders = _with_zero_orders(small_cdnow)
    folder = tmp_path / "data"
    folder.mkdir()
    first = orders.groupby("customer_id", as_index=False).ordered_at.min()
    never = pd.DataFrame({"customer_id": ["n1", "n2", "n3"], "ordered_at": [first.ordered_at.min()] * 3})
    pd.concat([first, never]).rename(columns={"ordered_at": "converted_at"}).assign(
        converted_at=lambda f: f.converted_at.dt.tz_localize("UTC")).to_parquet(folder / "customers.parquet")
    orders.assign(order_id=[f"o{i}" for i in range(len(orders))],
                  ordered_at=orders.ordered_at.dt.tz_localize("UTC")).to_parquet(folder / "orders.parquet")
    result = run_report("clv", data_dir=folder, out_dir=tmp_path / "out", params={"segment": ""})
    assert result.status == "succeeded", result.error
    got = result.results["data"]
    zero = int((orders.revenue == 0).sum())
    assert got["zero_revenue_orders"] == zero and got["customers_without_orders"] == 3
    assert got["zero_spend_customers"] > 0
    text = _visible_text(result.folder / "report.html")
    assert f"{zero:,} orders have zero revenue" in text and "3 customers have no orders" in text


# --------------------------------------------------------------------------------------------------
# lifecycle: compare_days longer than the data
# --------------------------------------------------------------------------------------------------


def test_lifecycle_compare_days_longer_than_the_data_start_with_the_data():
    from pco_lib import lifecycle

    customers, activity = _one_cohort()
    orders = activity.rename(columns={"at": "ordered_at"}).assign(order_id=lambda f: [f"o{i}" for i in range(len(f))])
    con = ibis.duckdb.connect()
    con.create_table("customers", customers)
    con.create_table("orders", orders)
    source = data.connect(con=con)
    first = min(customers.converted_at.min(), orders.ordered_at.min()).date()
    last = orders.ordered_at.max().date()
    r = lifecycle.analyze(source, compare_days=3000, segment=None)
    assert r.start == first and r.as_of == last
    note = (f"compare_days (3000) reaches back before the data, which starts on {first}; the comparison starts "
            f"there instead ({(last - first).days} days before {last})")
    assert note in r.notes and f"Note: {note}" in lifecycle.summary_points(r)
    assert r.lookalike is not None and r.lookalike.note in r.notes  # 238 training customers, nearly separated
    assert r.lookalike.note.startswith("the lookalike model did not converge: ")
    _, hidden = lifecycle.headlines(r)
    assert hidden["parameters_used.compare_days"] == (last - first).days and note in hidden["notes"]
    # the 40 customers without orders are customers, counted in the stages
    assert r.stages.set_index("stage").drop(index="lead", errors="ignore").customers.sum() == len(customers)
    short = lifecycle.analyze(source, compare_days=30, segment=None)
    assert (short.as_of - short.start).days == 30 and not any("compare_days" in n for n in short.notes)
    with pytest.raises(lifecycle.SegmentError, match="compare_days must be a whole number"):
        lifecycle.analyze(source, compare_days=0, segment=None)
