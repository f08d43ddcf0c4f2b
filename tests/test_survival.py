"""Survival-based churn: censoring rules, aggregated = per-customer fits, reference values, recovery."""

import numpy as np
import pandas as pd
import pytest

from pco_lib import churn, data
from pco_lib.stats.cox import (
    _overall_km,
    churn_risk,
    design_matrix,
    fit_cox,
    proportional_hazards_test,
    weighted_concordance,
)
from pco_lib.stats.survival import SurvivalError, kaplan_meier, logrank_tests, merge_small_segments, rmst, rmst_table

T0 = pd.Timestamp("2025-01-01")
UNTIL = pd.Timestamp("2025-12-31")


def _days(n: float) -> pd.Timestamp:
    return (T0 + pd.Timedelta(days=n)).round("s")


def _expand(counts: pd.DataFrame) -> pd.DataFrame:
    return counts.loc[counts.index.repeat(counts["n"])].drop(columns="n").reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# Censoring rules on hand-built customers
# --------------------------------------------------------------------------------------------------


def test_contractual_lifetimes_follow_the_censoring_rules():
    subs = pd.DataFrame({
        "customer_id": ["a", "b", "c", "d"],
        "started_at": [_days(0), _days(10), _days(300), UNTIL],
        "ended_at": [_days(30), pd.NaT, _days(300.2), pd.NaT],
        "plan": ["basic", "pro", "basic", "pro"],
    })
    customers = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "channel": ["x", "y", "x", None]})
    rows = data.contractual_lifetimes(subs, customers, ["plan", "channel"], observed_until=UNTIL, per_customer=True)
    got = rows.set_index("customer_id")
    assert got.loc["a", ["days", "churned"]].tolist() == [30, 1]  # ended after 30 days
    assert got.loc["b", ["days", "churned"]].tolist() == [(UNTIL - _days(10)).days, 0]  # running: censored at the end
    assert got.loc["c", ["days", "churned"]].tolist() == [1, 1]  # ended the same day: at least one day
    assert "d" not in got.index  # started at the very end: nothing observed yet
    assert got.loc["b", "channel"] == "y" and got.loc["a", "plan"] == "basic"
    counts = data.contractual_lifetimes(subs, customers, ["plan"], observed_until=UNTIL)
    assert counts["n"].sum() == 3


def test_a_subscription_ending_before_it_starts_is_a_clear_error():
    subs = pd.DataFrame({"customer_id": ["a"], "started_at": [_days(10)], "ended_at": [_days(5)]})
    with pytest.raises(SurvivalError, match="1 subscription.*on or before their start"):
        data.contractual_lifetimes(subs, observed_until=UNTIL)


def test_noncontractual_lifetimes_follow_the_censoring_rules():
    customers = pd.DataFrame({
        "customer_id": ["a", "b", "c", "d"],
        "converted_at": [_days(0), _days(0), _days(100), (UNTIL - pd.Timedelta(days=5.5)).round("s")],
        "channel": ["x", "x", "y", "y"],
    })
    activity = pd.DataFrame({
        "customer_id": ["a", "a", "b", "b"],
        "at": [_days(0), _days(200.5), _days(20), UNTIL - pd.Timedelta(days=10)],
    })
    rows = data.noncontractual_lifetimes(customers, activity, inactivity_days=30, columns=["channel"],
                                       observed_until=UNTIL, per_customer=True).set_index("customer_id")
    # a: last order on day 200.5, 164 days before the end → churned; lifetime counts the conversion day
    assert rows.loc["a", ["days", "churned"]].tolist() == [201, 1]
    # b: last order 10 days before the end (< 30) → censored at the end
    assert rows.loc["b", ["days", "churned"]].tolist() == [(UNTIL - _days(0)).days + 1, 0]
    # c: only the conversion, long ago → churned on its first day
    assert rows.loc["c", ["days", "churned"]].tolist() == [1, 1]
    # d: converted 5.5 days before the end, quiet since → too early to tell: censored
    assert rows.loc["d", ["days", "churned"]].tolist() == [6, 0]
    longer = data.noncontractual_lifetimes(customers, activity, inactivity_days=170, observed_until=UNTIL,
                                         per_customer=True).set_index("customer_id")
    assert longer.loc["a", "churned"] == 0  # 164 quiet days < 170


def test_bad_arguments_are_clear_errors(tiny_sample):
    source = data.connect(tiny_sample)
    with pytest.raises(SurvivalError, match="churn_definition must be one of"):
        churn.summarize_lifetimes(source, "monthly")
    with pytest.raises(SurvivalError, match="unknown column 'shoe_size'.*available:"):
        churn.summarize_lifetimes(source, "contractual", columns=["shoe_size"])
    with pytest.raises(SurvivalError, match="inactivity_days"):
        churn.summarize_lifetimes(source, "non_contractual", inactivity_days=0)
    no_events = pd.DataFrame({"days": [5, 9], "churned": [0, 0], "n": [3, 4]})
    with pytest.raises(SurvivalError, match="no customer has churned"):
        kaplan_meier(no_events)
    with pytest.raises(SurvivalError, match="at least 1 day"):
        kaplan_meier(pd.DataFrame({"days": [0, 9], "churned": [1, 1], "n": [3, 4]}))


def test_small_segments_are_merged_with_a_note():
    counts = pd.DataFrame({"days": [5, 6, 7, 8], "churned": [1, 1, 0, 1], "seg": ["a", "b", "c", "c"],
                           "n": [50, 20, 15, 40]})
    merged, note = merge_small_segments(counts, "seg", min_customers=30)
    assert set(merged.seg) == {"a", "c"}  # b (20) merged into other (20) which is too small and left out
    assert "1 seg value" in note and "left out" in note
    merged, note = merge_small_segments(counts, "seg", min_customers=10)
    assert note == "" and merged.equals(counts)


# --------------------------------------------------------------------------------------------------
# Aggregated counts give the same answers as one row per customer
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lifetimes(tiny_sample):
    return churn.summarize_lifetimes(data.connect(tiny_sample), "contractual", columns=["plan", "device"])


def test_kaplan_meier_and_logrank_from_counts_equal_one_row_per_customer(tiny_lifetimes):
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import multivariate_logrank_test, pairwise_logrank_test

    rows = _expand(tiny_lifetimes)
    curves = kaplan_meier(tiny_lifetimes, "plan")
    for plan, part in rows.groupby("plan"):
        ref = KaplanMeierFitter().fit(part.days, part.churned)
        ours = curves.fitters[plan]
        np.testing.assert_allclose(ours.survival_function_.iloc[:, 0].to_numpy(),
                                   ref.survival_function_.iloc[:, 0].to_numpy(), rtol=1e-12)
        np.testing.assert_allclose(ours.confidence_interval_.to_numpy(), ref.confidence_interval_.to_numpy(),
                                   rtol=1e-10)
    tests = logrank_tests(tiny_lifetimes, "plan", correction="none").set_index("comparison")
    overall = multivariate_logrank_test(rows.days, rows.plan, rows.churned)
    assert tests.loc["all groups", "statistic"] == pytest.approx(overall.test_statistic, rel=1e-10)
    pairwise = pairwise_logrank_test(rows.days, rows.plan, rows.churned).summary
    for (a, b), row in pairwise.iterrows():
        assert tests.loc[f"{a} vs {b}", "p_value"] == pytest.approx(row["p"], rel=1e-8)


def test_pairwise_p_values_are_adjusted(tiny_lifetimes):
    from statsmodels.stats.multitest import multipletests

    tests = logrank_tests(tiny_lifetimes, "plan", correction="holm")
    pairs = tests.iloc[1:]
    np.testing.assert_allclose(pairs.p_value_adjusted, multipletests(pairs.p_value, method="holm")[1])


def test_cox_from_counts_equals_one_row_per_customer(tiny_lifetimes):
    from lifelines import CoxPHFitter

    cox = fit_cox(tiny_lifetimes, ["plan", "device"])
    rows = _expand(tiny_lifetimes)
    design, _, _ = design_matrix(rows.assign(n=1), ["plan", "device"])
    ref = CoxPHFitter().fit(pd.concat([design, rows[["days", "churned"]]], axis=1), "days", "churned",
                           fit_options={"precision": 1e-12})  # converge as tightly as ours
    np.testing.assert_allclose(cox.params[ref.params_.index], ref.params_, rtol=1e-6)
    np.testing.assert_allclose(cox.standard_errors[ref.params_.index], ref.standard_errors_, rtol=1e-6)
    assert cox.concordance == pytest.approx(ref.concordance_index_, abs=1e-12)


def test_weighted_concordance_matches_lifelines_on_expanded_rows():
    from lifelines.utils import concordance_index

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"days": rng.integers(1, 15, 300), "churned": rng.integers(0, 2, 300),
                          "risk": rng.integers(0, 4, 300).astype(float), "n": rng.integers(1, 4, 300)})
    ours = weighted_concordance(frame.days, frame.churned, frame.n, frame.risk)
    rows = _expand(frame)
    assert ours == pytest.approx(concordance_index(rows.days, -rows.risk, rows.churned), abs=1e-12)


# --------------------------------------------------------------------------------------------------
# Reference values
# --------------------------------------------------------------------------------------------------

# R: coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro + prio, data = Rossi), Efron ties.
# Fox & Weisberg, "Cox Proportional-Hazards Regression for Survival Data in R" (appendix to An R Companion
# to Applied Regression), printed to 5 decimals: coef and se(coef).
ROSSI_R = {
    "fin": (-0.37942, 0.19138), "age": (-0.05744, 0.02200), "race": (0.31390, 0.30799),
    "wexp": (-0.14980, 0.21222), "mar": (-0.43370, 0.38187), "paro": (-0.08487, 0.19576),
    "prio": (0.09150, 0.02865),
}


def test_cox_on_rossi_matches_r_coxph_to_the_printed_digits():
    from lifelines.datasets import load_rossi

    rossi = load_rossi()
    covariates = list(ROSSI_R)
    counts = (rossi.groupby(["week", "arrest", *covariates]).size().rename("n").reset_index()
              .rename(columns={"week": "days", "arrest": "churned"}))
    assert len(counts) < len(rossi)  # some rows really are aggregated
    cox = fit_cox(counts, covariates)
    for name, (coef, se) in ROSSI_R.items():
        assert cox.params[name] == pytest.approx(coef, abs=5e-6), name  # half a unit in the 5th decimal
        assert cox.standard_errors[name] == pytest.approx(se, abs=5e-6), name
    assert cox.concordance == pytest.approx(0.64, abs=0.005)  # R: Concordance = 0.64 (2 decimals)


def _extended_score_test(t, e, x, beta, g_of_time):
    """Score test for γ in the model with covariates x and x·g(t), by numerical derivatives of the Breslow
    partial log-likelihood at (β̂, 0) — an independent check of the closed form (no tied times)."""

    def loglik(params):
        b, gam = params[: x.shape[1]], params[x.shape[1]:]
        total = 0.0
        for i in np.flatnonzero(e):
            at_risk = t >= t[i]
            eta = x[at_risk] @ b + g_of_time(t[i]) * (x[at_risk] @ gam)
            total += x[i] @ b + g_of_time(t[i]) * (x[i] @ gam) - np.log(np.exp(eta).sum())
        return total

    p = x.shape[1]
    theta = np.concatenate([beta, np.zeros(p)])
    h = 1e-4
    grad = np.array([(loglik(theta + h * np.eye(2 * p)[k]) - loglik(theta - h * np.eye(2 * p)[k])) / (2 * h)
                     for k in range(2 * p)])
    hess = np.zeros((2 * p, 2 * p))
    for j in range(2 * p):
        for k in range(2 * p):
            ej, ek = h * np.eye(2 * p)[j], h * np.eye(2 * p)[k]
            hess[j, k] = (loglik(theta + ej + ek) - loglik(theta + ej - ek) - loglik(theta - ej + ek)
                          + loglik(theta - ej - ek)) / (4 * h * h)
    info = -hess
    u = grad[p:]
    schur = info[p:, p:] - info[p:, :p] @ np.linalg.solve(info[:p, :p], info[:p, p:])
    return float(u @ np.linalg.solve(schur, u))


def test_proportional_hazards_score_test_matches_the_extended_model():
    from lifelines import CoxPHFitter

    rng = np.random.default_rng(11)
    n = 120
    x = np.column_stack([rng.integers(0, 2, n), rng.normal(size=n)])
    t = rng.exponential(1 / np.exp(0.5 * x[:, 0] - 0.3 * x[:, 1])) * (1 + x[:, 0] * rng.uniform(0, 2, n))
    e = rng.uniform(size=n) < 0.8
    design = pd.DataFrame(x, columns=["a", "b"])
    fit = CoxPHFitter().fit(design.assign(t=t, e=e.astype(int)), "t", "e")
    beta = fit.params_[["a", "b"]].to_numpy()
    g = lambda times: 1 - (times / t.max())  # noqa: E731 — any fixed transform of time
    ours = proportional_hazards_test(t, e, np.ones(n), design, beta, {"a": ["a"], "b": ["b"]},
                                        survival_at=lambda times: times / t.max())
    assert ours.set_index("covariate").loc["global", "statistic"] == pytest.approx(
        _extended_score_test(t, e, x, beta, g), rel=1e-4)


def test_proportional_hazards_test_from_counts_equals_rows_and_flags_a_crossing_effect():
    rng = np.random.default_rng(5)
    n = 4000
    group = rng.integers(0, 2, n)
    # group 1: high early hazard that fades (Weibull shape 0.5), group 0: constant hazard → not proportional
    t = np.where(group == 1, rng.weibull(0.5, n) * 20, rng.exponential(20, n))
    days = np.ceil(np.minimum(t, 60)).astype(int)
    frame = pd.DataFrame({"days": days, "churned": (t < 60).astype(int), "g": np.where(group == 1, "b", "a")})
    counts = frame.groupby(["days", "churned", "g"]).size().rename("n").reset_index()
    cox = fit_cox(counts, ["g"])
    ph = cox.ph_test.set_index("covariate")
    assert ph.loc["g", "violates"] and ph.loc["g", "p_value"] < 1e-6 and "stratify" in ph.loc["g", "advice"]
    rows = frame.assign(n=1)
    design, terms, _ = design_matrix(rows, ["g"])
    km = _overall_km(rows)
    from_rows = proportional_hazards_test(rows.days, rows.churned, rows.n, design, cox.params.to_numpy(),
                                             terms, survival_at=km)
    assert ph.loc["g", "statistic"] == pytest.approx(from_rows.set_index("covariate").loc["g", "statistic"],
                                                     rel=1e-9)
    # the same data with a proportional effect is not flagged
    t2 = rng.exponential(np.where(group == 1, 10, 20))
    frame2 = pd.DataFrame({"days": np.ceil(np.minimum(t2, 60)).astype(int), "churned": (t2 < 60).astype(int),
                           "g": np.where(group == 1, "b", "a")})
    ph2 = fit_cox(frame2.groupby(["days", "churned", "g"]).size().rename("n").reset_index(), ["g"]).ph_test
    assert ph2.set_index("covariate").loc["g", "p_value"] > 0.01


def test_rmst_by_hand():
    # deaths at 2 (1 of 4) and 5 (1 of 2); censored at 3 and 8. S = 1 on [0,2), 3/4 on [2,5), 3/8 on [5,·)
    r = rmst([2, 3, 5, 8], [1, 0, 1, 0], [1, 1, 1, 1], horizon=6)
    assert r.rmst == pytest.approx(2 * 1 + 3 * 0.75 + 1 * 0.375)
    # A_1 = ∫_2^6 S = 2.625, A_2 = ∫_5^6 S = 0.375; Var = A_1²·1/(4·3) + A_2²·1/(2·1)
    assert r.se == pytest.approx(np.sqrt(2.625**2 / 12 + 0.375**2 / 2))


def test_rmst_standard_error_matches_its_sampling_spread_and_covers_the_truth():
    # Exponential(rate 0.1) lifetimes, uniform censoring on [0, 30]: RMST(15) = (1 − e^{−1.5}) / 0.1
    rng = np.random.default_rng(2)
    truth = (1 - np.exp(-1.5)) / 0.1
    estimates, ses, covered = [], [], 0
    for _ in range(1000):
        life, cens = rng.exponential(10, 200), rng.uniform(0, 30, 200)
        r = rmst(np.minimum(life, cens), life <= cens, np.ones(200), horizon=15)
        estimates.append(r.rmst)
        ses.append(r.se)
        covered += r.ci_low <= truth <= r.ci_high
    assert np.mean(ses) == pytest.approx(np.std(estimates), rel=0.07)  # 1,000 draws: SD known to ~±4.5%
    assert abs(covered / 1000 - 0.95) < 3 * np.sqrt(0.95 * 0.05 / 1000)


def test_rmst_table_differences(tiny_lifetimes):
    table = rmst_table(tiny_lifetimes, 180, "plan", reference="basic").set_index("segment")
    pro = table.loc["pro"]
    assert pro.difference == pytest.approx(pro.rmst - table.loc["basic", "rmst"])
    se = np.sqrt(pro.se**2 + table.loc["basic", "se"] ** 2)
    assert pro.difference_ci_high - pro.difference == pytest.approx(1.959964 * se, rel=1e-6)
    assert np.isnan(table.loc["basic", "difference"])


def test_churn_risk_matches_lifelines_conditional_survival_on_one_row_per_customer(tiny_lifetimes):
    from lifelines import CoxPHFitter

    cox = fit_cox(tiny_lifetimes, ["plan"])
    rows = _expand(tiny_lifetimes)
    design, _, _ = design_matrix(rows.assign(n=1), ["plan"])
    ref = CoxPHFitter().fit(pd.concat([design, rows[["days", "churned"]]], axis=1), "days", "churned",
                           fit_options={"precision": 1e-12})  # converge as tightly as ours
    active = pd.DataFrame({"customer_id": ["x", "y"], "days": [40, 200], "plan": ["pro", "basic"]})
    risk = churn_risk(cox, active, within_days=60)
    x = pd.DataFrame(0.0, index=[0, 1], columns=design.columns)
    x.loc[0, "plan=pro"] = 1.0
    for i, row in active.iterrows():
        sf = ref.predict_survival_function(x.iloc[[i]], times=[row.days, row.days + 60]).iloc[:, 0]
        assert risk.loc[i, "churn_probability"] == pytest.approx(1 - sf.iloc[1] / sf.iloc[0], rel=1e-6)
    assert risk.customer_id.tolist() == ["x", "y"]


# --------------------------------------------------------------------------------------------------
# Recovery on the sample business
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def business(tmp_path_factory):
    from pco_lib.data.sample import generate_sample

    out = tmp_path_factory.mktemp("survival") / "s"
    truth = generate_sample(out, customers=30_000, seed=11, progress=False)
    source = data.connect(out)
    s, a = source.table("subscriptions"), source.table("assignments")
    treated = a.filter((a.experiment_id == "onboarding_email") & (a.variant == "treatment")).select("customer_id")
    # the truth is for customers outside the experiment's treatment arm (it changes their churn)
    counts = data.contractual_lifetimes(s.anti_join(treated, "customer_id"), source.table("customers"),
                                      ["plan", "country"])
    return truth, counts


def test_survival_median_and_rmst_per_plan_cover_the_truth(business):
    truth, counts = business
    plans = truth["subscriptions"]["true_lifetimes"]
    table = kaplan_meier(counts, "plan").table().set_index("segment")
    rmst = rmst_table(counts, 365, "plan").set_index("segment")
    for plan, true in plans.items():
        for days, value in true["survival"].items():
            assert table.loc[plan, f"survival_{days}d_ci_low"] <= value <= table.loc[plan, f"survival_{days}d_ci_high"]
        assert table.loc[plan, "median_ci_low"] <= true["median_days"] <= table.loc[plan, "median_ci_high"]
        assert rmst.loc[plan, "ci_low"] <= true["rmst_365d"] <= rmst.loc[plan, "ci_high"]


def _pseudo_true_plan_hazard_ratios(truth, n: int = 400_000) -> pd.Series:
    """What a Cox model of plan converges to on this design (plans are not proportional, so it is an average
    over the follow-up): the subscription process re-simulated independently and fitted with lifelines."""
    from pseudo_truth import cox_hazard_ratios, simulate_subscriptions

    s = simulate_subscriptions(truth, n)
    return cox_hazard_ratios(np.minimum(s.end, s.follow), s.end <= s.follow, s.plan, reference="basic")


def test_plan_hazard_ratios_cover_the_pseudo_true_values_and_country_has_no_effect(business):
    truth, counts = business
    cox = fit_cox(counts, ["plan", "country"])
    hr = cox.summary.set_index(["covariate", "level"])
    expected = _pseudo_true_plan_hazard_ratios(truth)
    for level in ("pro", "premium"):
        row = hr.loc[("plan", level)]
        assert row.ci_low <= expected[level] <= row.ci_high, (level, expected[level], row.ci_low, row.ci_high)
        assert row.hazard_ratio < 1  # pricier plans churn more slowly (larger sBG β)
    for level in ("GB", "DE", "FR", "NL"):  # country does not enter the generator's churn
        assert hr.loc[("country", level), "ci_low"] <= 1 <= hr.loc[("country", level), "ci_high"]
    ph = cox.ph_test.set_index("covariate")
    assert ph.loc["plan", "violates"]  # sBG plans have declining, non-proportional hazards
    assert not ph.loc["country", "violates"]


def test_readout_without_segment_or_covariates_scores_with_the_pooled_curve(tiny_sample):
    source = data.connect(tiny_sample)
    counts = churn.summarize_lifetimes(source, "contractual")
    readout = churn.analyze(counts, "contractual", None, [], horizon_days=180)
    assert readout.cox is None and readout.logrank is None and list(readout.table.segment) == ["all"]
    risk = churn.score_active_customers(source, readout, 30)
    km = readout.overall.fitters["all"].survival_function_.iloc[:, 0]
    row = risk.iloc[0]
    expected = 1 - km.asof(min(row.days + 30, km.index.max())) / km.asof(row.days)
    assert row.churn_probability == pytest.approx(expected)
    points = churn.summary_points(readout, risk, 30)
    assert any("median lifetime" in p for p in points) and any("CSV" in p for p in points)
    cards, hidden = churn.headlines(readout, risk)
    assert {"median_lifetime", "survival", "rmst", "hazard_ratios", "active_scored"} <= set(hidden)
    assert hidden["active_scored"] == len(risk) == int((counts.n * (1 - counts.churned)).sum())


def test_readout_merges_small_groups_and_says_so(tiny_lifetimes):
    readout = churn.analyze(tiny_lifetimes, "contractual", "plan", ["plan", "device"], min_segment_size=400)
    assert any("merged into 'other'" in n for n in readout.notes)
    assert any(p.startswith("Note:") for p in churn.summary_points(readout))
    sizes = tiny_lifetimes.groupby("plan").n.sum()
    assert set(readout.table.segment) == set(sizes[sizes >= 400].index) | ({"other"} if
                                                                            sizes[sizes < 400].sum() >= 400 else set())


def test_rmst_beyond_the_longest_follow_up_is_not_extrapolated():
    assert np.isnan(rmst([5, 20, 40], [1, 0, 0], [1, 1, 1], horizon=365).rmst)
    assert not np.isnan(rmst([5, 20, 40], [1, 0, 0], [1, 1, 1], horizon=40).rmst)


def test_choosing_covariates_never_drops_customers_from_the_curves_or_the_model(tiny_lifetimes):
    counts = tiny_lifetimes.copy()
    counts.loc[counts.index[:3], "device"] = "watch"  # a rare level: merged into "other", which stays small
    readout = churn.analyze(counts, "contractual", "plan", ["plan", "device"], min_segment_size=50)
    total = int(counts.n.sum())
    assert readout.overall.table().customers.iloc[0] == total
    assert readout.cox.customers == total
    alone = churn.analyze(counts, "contractual", "plan", [], min_segment_size=50)
    assert readout.table.equals(alone.table)


def test_numeric_columns_stay_numeric_covariates():
    subs = pd.DataFrame({"customer_id": list("abcdef"), "started_at": [_days(0)] * 6,
                         "ended_at": [_days(10), _days(20), pd.NaT, _days(40), pd.NaT, _days(5)],
                         "mrr": [9.0, 29.0, 79.0, 9.0, 29.0, 9.0]})
    rows = data.contractual_lifetimes(subs, columns=["mrr"], observed_until=UNTIL)
    assert pd.api.types.is_numeric_dtype(rows.mrr)
    design, terms, _ = design_matrix(rows, ["mrr"])
    assert terms == {"mrr": ["mrr"]}


def test_hazard_table_hides_small_counts(tiny_lifetimes):
    cox = fit_cox(tiny_lifetimes, ["plan"])
    shown = churn.hazard_table(cox, min_cell_size=10**6)
    assert (shown.customers == "<1000000").all() and shown.hazard_ratio.equals(cox.summary.hazard_ratio)


def _shuffled(counts: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same rows in another order, under an index that is neither sorted nor unique (as after a concat)."""
    out = counts.sample(frac=1.0, random_state=seed)
    out.index = np.random.default_rng(seed).integers(0, 5, len(out))
    return out


def test_survival_statistics_do_not_depend_on_row_order_or_index(tiny_lifetimes):
    """KM, log-rank (all groups and pairwise), Cox, its PH test and RMST are functions of the rows alone: a
    shuffled, re-indexed copy gives the same numbers (lifelines looked weights up by label, so it did not)."""
    def everything(counts):
        cox = fit_cox(counts, ["plan", "device"])
        return {"km": kaplan_meier(counts, "plan").table().set_index("segment"),
                "logrank": logrank_tests(counts, "plan"),
                "cox": cox.summary, "ph": cox.ph_test, "concordance": pd.Series([cox.concordance]),
                "rmst": rmst_table(counts, 180, "plan").set_index("segment")}

    ordered = everything(tiny_lifetimes.reset_index(drop=True))
    for seed in (1, 2):
        shuffled = everything(_shuffled(tiny_lifetimes, seed))
        for name, frame in ordered.items():
            pd.testing.assert_frame_equal(shuffled[name].sort_index(), frame.sort_index(), rtol=1e-9,
                                          check_index_type=False, obj=name) if isinstance(frame, pd.DataFrame) \
                else pd.testing.assert_series_equal(shuffled[name], frame, rtol=1e-9, obj=name)


def test_two_arm_logrank_equals_the_cox_score_test(tiny_lifetimes):
    """Without ties, the log-rank test of two groups is the score test of a Cox model with one 0/1 covariate at
    β = 0 (Collett, Modelling Survival Data, §3.9); the score and information come from statsmodels' PHReg, an
    independent implementation. Exact up to floating point (rtol 1e-8). With ties the two differ by the
    hypergeometric factor (n − d)/(n − 1), so on the sample only the order of magnitude of the p-values is
    compared (the issue: ab_test showed 2.4e-19 next to a Cox p of 0.66)."""
    from statsmodels.duration.hazard_regression import PHReg

    rng = np.random.default_rng(3)
    treated = np.repeat([0, 1], 150)
    days = rng.exponential(100 / np.where(treated, 1.3, 1.0))
    churned = (days < 150).astype(int)
    counts = pd.DataFrame({"days": np.minimum(days, 150.0), "churned": churned, "arm": np.where(treated, "t", "c"),
                           "n": 1})
    counts = pd.concat([counts[counts.arm == "t"], counts[counts.arm == "c"]])  # index with repeats, as in ab_test
    ours = logrank_tests(counts, "arm").iloc[0]
    model = PHReg(counts.days.to_numpy(), (counts.arm == "t").to_numpy(float)[:, None],
                  status=counts.churned.to_numpy(), ties="breslow")
    score, information = model.score(np.zeros(1))[0], -model.hessian(np.zeros(1))[0, 0]
    assert ours.statistic == pytest.approx(score**2 / information, rel=1e-8)

    two = tiny_lifetimes[tiny_lifetimes.plan.isin(["basic", "premium"])]
    two = pd.concat([two[two.plan == "premium"], two[two.plan == "basic"]])
    logrank_p = logrank_tests(two, "plan").iloc[0].p_value
    cox_p = fit_cox(two, ["plan"]).summary.p_value.iloc[0]
    assert 0.1 < logrank_p / cox_p < 10
