"""Benchmarks: pco's engine summaries (DuckDB through Ibis) vs the common pandas recipe, side by side.

Run with `make bench` (PCO_BENCH_CUSTOMERS sets the size, default 200,000; 1,000,000 gives ~6M orders).
Each benchmark checks both sides give the same numbers, then appends a row to
tests/benchmarks/results/bench.md with the machine description. No timed assertions.
"""

import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pco_lib import cohorts, data, overview
from pco_lib.sample import generate_sample

pytestmark = pytest.mark.bench
RESULTS = Path(__file__).parent / "results"
CUSTOMERS = int(os.environ.get("PCO_BENCH_CUSTOMERS", "200000"))


def _best(fn, repeat=3):
    best, value = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench") / "sample"
    t0 = time.perf_counter()
    truth = generate_sample(folder, customers=CUSTOMERS, seed=1, progress=False)
    seconds = time.perf_counter() - t0
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench.md").write_text(
        f"# pco benchmarks\n\nMachine: {platform.platform()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}\n\nSample: {CUSTOMERS:,} customers, {truth['counts']['orders']:,} orders "
        f"(generated in {seconds:.1f} s)\n\n"
        "| step | pco (DuckDB via Ibis) | pandas recipe | speed-up |\n|---|---|---|---|\n")
    return folder


def _row(step, ours, theirs):
    with open(RESULTS / "bench.md", "a") as f:
        f.write(f"| {step} | {ours:.3f} s | {theirs:.3f} s | {theirs / ours:.1f}× |\n")
    print(f"{step}: pco {ours:.3f} s, pandas {theirs:.3f} s")


def test_monthly_revenue(sample):
    source = data.connect(sample)
    ours, engine = _best(lambda: overview.monthly_revenue(source))

    def recipe():
        orders = pd.read_parquet(sample / "orders.parquet")
        orders["month"] = orders.ordered_at.dt.tz_convert(None).dt.to_period("M").dt.to_timestamp()
        return orders.groupby("month").agg(orders=("order_id", "size"), revenue=("revenue", "sum")).reset_index()

    theirs, expected = _best(recipe)
    assert engine.orders.tolist() == expected.orders.tolist()
    np.testing.assert_allclose(engine.revenue, expected.revenue, rtol=1e-9)
    _row("monthly revenue", ours, theirs)


def test_cohort_retention_matrix(sample):
    source = data.connect(sample)

    def ours_fn():
        summary = cohorts.summarize_cohorts(source.table("customers"), cohorts.activity_table(source), "month")
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
    _row("cohort retention matrix (monthly)", ours, theirs)


def test_survival_on_aggregated_counts(sample):
    """Kaplan–Meier by channel and a Cox model (channel, device) for non-contractual churn (90 quiet days):
    pco aggregates lifetimes in the engine and fits on distinct rows; lifelines fits one row per customer."""
    from lifelines import CoxPHFitter, KaplanMeierFitter

    from pco_lib import survival as sv

    source = data.connect(sample)

    def ours_fn():
        counts = sv.summarize_lifetimes(source, "non_contractual", 90, "order", ["channel", "device"])
        curves = sv.kaplan_meier(counts, "channel")
        return counts, curves, sv.fit_cox(counts, ["channel", "device"])

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
    _row(f"Kaplan–Meier + Cox, non-contractual churn ({len(counts):,} distinct rows; vs lifelines on one row per "
         "customer)", ours, theirs)
