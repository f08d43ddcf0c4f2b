"""Benchmarks: pco (DuckDB through Ibis, fits on aggregated rows) vs the usual way, side by side.

Run with `make bench` (PCO_BENCH_SIZES, e.g. 100000,300000,1000000; default 200,000). Each benchmark checks
both sides give the same numbers, then adds a row to tests/benchmarks/results/bench.md. No timed assertions.
"""

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bench_fixtures import add_row, sample, table  # noqa: F401 (sample, table: pytest fixtures)

from pco_lib import churn, cohorts, data, experiments, overview
from pco_lib.stats.cox import fit_cox
from pco_lib.stats.survival import kaplan_meier

pytestmark = pytest.mark.bench


def _best(fn, repeat=3):
    best, value = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def test_monthly_revenue(sample, table):
    source = data.connect(sample)
    ours, engine = _best(lambda: overview.monthly_revenue(source))

    def recipe():
        orders = pd.read_parquet(sample / "orders.parquet")
        orders["month"] = orders.ordered_at.dt.tz_convert(None).dt.to_period("M").dt.to_timestamp()
        return orders.groupby("month").agg(orders=("order_id", "size"), revenue=("revenue", "sum")).reset_index()

    theirs, expected = _best(recipe)
    assert engine.orders.tolist() == expected.orders.tolist()
    np.testing.assert_allclose(engine.revenue, expected.revenue, rtol=1e-9)
    add_row(table, "monthly revenue", sample.customers, ours, theirs, "(pandas groupby on orders)")


def test_cohort_retention_matrix(sample, table):
    source = data.connect(sample)

    def ours_fn():
        summary = cohorts.summarize_cohorts(source.table("customers"), data.activity_table(source), "month")
        return summary.matrix("active")

    ours, engine = _best(ours_fn)

    def recipe():  # the usual notebook recipe: one row per order, groupby cohort x age
        c = pd.read_parquet(sample / "customers.parquet", columns=["customer_id", "converted_at"])
        o = pd.read_parquet(sample / "orders.parquet", columns=["customer_id", "ordered_at"]).merge(c, on="customer_id")
        o["cohort"] = o.converted_at.dt.tz_convert(None).dt.to_period("M").dt.to_timestamp()
        o["age"] = (o.ordered_at - o.converted_at) // pd.Timedelta(days=30)
        return o.groupby(["cohort", "age"]).customer_id.nunique().unstack("age")

    theirs, expected = _best(recipe)
    shared = engine.notna()
    np.testing.assert_array_equal(engine.where(shared).to_numpy(),
                                  expected.reindex_like(engine).fillna(0).where(shared).to_numpy())
    add_row(table, "cohort retention matrix (monthly)", sample.customers, ours, theirs, "(pandas groupby on orders)")


def test_survival_on_aggregated_counts(sample, table):
    """Kaplan–Meier by channel and a Cox model (channel, device) for non-contractual churn (90 quiet days):
    pco aggregates lifetimes in the engine and fits on distinct rows; lifelines fits one row per customer."""
    from lifelines import CoxPHFitter, KaplanMeierFitter


    source = data.connect(sample)

    def ours_fn():
        counts = churn.summarize_lifetimes(source, "non_contractual", 90, "order", ["channel", "device"])
        curves = kaplan_meier(counts, "channel")
        return counts, curves, fit_cox(counts, ["channel", "device"])

    ours, (counts, curves, cox) = _best(ours_fn, repeat=1)

    def recipe():  # one row per customer in pandas, then lifelines
        c = pd.read_parquet(sample / "customers.parquet", columns=["customer_id", "converted_at", "channel", "device"])
        o = pd.read_parquet(sample / "orders.parquet", columns=["customer_id", "ordered_at"])
        until = max(c.converted_at.max(), o.ordered_at.max())
        c = c.merge(o.groupby("customer_id").ordered_at.max().rename("last"), on="customer_id", how="left")
        last = c["last"].fillna(c.converted_at).clip(lower=c.converted_at)
        churned = (until - last) >= pd.Timedelta(days=90)
        end = last.where(churned, until)
        c["days"] = (end - c.converted_at).dt.total_seconds() // 86_400 + 1
        c["churned"] = churned.astype(int)
        fitters = {k: KaplanMeierFitter().fit(p.days, p.churned) for k, p in c.groupby("channel")}
        design = pd.get_dummies(c[["channel", "device"]]).drop(columns=[f"{k}_{v}" for k, v in cox.reference.items()])
        cph = CoxPHFitter().fit(pd.concat([design.astype(float), c[["days", "churned"]]], axis=1), "days", "churned")
        return fitters, cph

    theirs, (fitters, cph) = _best(recipe, repeat=1)
    for name, kmf in fitters.items():
        np.testing.assert_allclose(curves.fitters[name].survival_function_.iloc[:, 0].to_numpy(),
                                   kmf.survival_function_.iloc[:, 0].to_numpy(), rtol=1e-9)
    ours_beta = cox.params.rename(lambda n: n.replace("=", "_"))
    np.testing.assert_allclose(ours_beta[cph.params_.index], cph.params_, atol=1e-4)
    add_row(table, f"Kaplan–Meier + Cox, non-contractual churn ({len(counts):,} distinct rows)", sample.customers,
            ours, theirs, "(pandas + lifelines, one row per customer)")


def test_ab_readout_from_sufficient_statistics(sample, table):
    """The experiment readout: per-arm sums from the engine, Welch from them; vs one row per customer in pandas
    and scipy's Welch test."""
    from scipy import stats

    source = data.connect(sample)

    def ours_fn():
        return experiments.read_experiment(source, "onboarding_email", ["revenue"], window_days=30)

    ours, readout = _best(ours_fn, repeat=1)

    def recipe():
        a = pd.read_parquet(sample / "assignments.parquet").query("experiment_id == 'onboarding_email'")
        o = pd.read_parquet(sample / "orders.parquet", columns=["customer_id", "ordered_at", "revenue"])
        a = a[a.assigned_at + pd.Timedelta(days=30) <= o.ordered_at.max()]
        j = a.merge(o, on="customer_id")
        j = j[(j.ordered_at > j.assigned_at) & (j.ordered_at <= j.assigned_at + pd.Timedelta(days=30))]
        per = a.set_index("customer_id")[["variant"]].join(j.groupby("customer_id").revenue.sum()).fillna(0)
        return stats.ttest_ind(per.revenue[per.variant == "treatment"], per.revenue[per.variant == "control"],
                               equal_var=False)

    theirs, test = _best(recipe, repeat=1)
    effect = readout.effects.set_index("metric").loc["revenue"]
    assert effect.p_value == pytest.approx(test.pvalue, rel=1e-6)
    add_row(table, "A/B readout (revenue, 30 days)", sample.customers, ours, theirs,
            "(pandas + scipy, one row per customer)")


def test_every_report_end_to_end(sample, table):
    """Every scheduled report through `pco run-all` on this sample, one at a time. Peak memory comes from a
    small wrapper process, so it is that of pco and its report kernels, not of this test process."""
    import json
    import subprocess
    import sys

    import yaml

    from pco_lib.report import list_runs

    root = Path(__file__).parents[2]
    runs = yaml.safe_load((root / "reports" / "schedule.yml").read_text())["runs"]
    schedule = sample.parent / "schedule.yml"
    schedule.write_text(yaml.safe_dump({"runs": [{**r, "data": str(sample)} for r in runs]}))
    out = sample.parent / "reports"
    pco = Path(sys.executable).parent / "pco"
    wrapper = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", wrapper, str(pco), "run-all", "--schedule", str(schedule),
                           "--out", str(out), "-q"], capture_output=True, text=True)
    total = time.perf_counter() - t0
    assert done.returncode == 0, done.stdout + done.stderr
    peak_mb = int(done.stdout.strip().splitlines()[-1]) / 1024
    for run in sorted(list_runs(out), key=lambda r: r["started_at"]):
        manifest = json.loads((out / run["folder"] / "manifest.json").read_text())
        which = manifest["parameters"].get("experiment_id")
        add_row(table, f"report {manifest['report']}{f' ({which})' if which else ''} end to end", sample.customers,
                manifest["duration_s"])
    add_row(table, f"all {len(runs)} scheduled reports, pco run-all (peak memory {peak_mb:,.0f} MB)",
            sample.customers, total)
