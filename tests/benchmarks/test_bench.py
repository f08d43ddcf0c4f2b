"""Benchmarks: pco (DuckDB through Ibis, fits on aggregated rows) side by side with the hand-written DuckDB
SQL floor of each engine step and with the usual way (pandas, lifelines, pandas + scipy).

Run with `make bench` (PCO_BENCH_SIZES, e.g. 100000,1000000; default 200,000). Every benchmark checks that
each side gives the same numbers as pco (a benchmark whose sides disagree fails), then adds a row to
tests/benchmarks/results/bench.md. No timed assertions: the targets are reported, met or missed by how much.
"""

import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import sql_floor
from bench_fixtures import REPEAT, Timing, measure

from pco_lib import churn, cohorts, data, experiments, overview
from pco_lib.stats.cox import fit_cox
from pco_lib.stats.survival import kaplan_meier

pytestmark = pytest.mark.bench


def test_monthly_revenue(sample, table):
    source, con = data.connect(sample), sql_floor.connect()
    ours, engine = measure(lambda: overview.monthly_revenue(source), REPEAT)
    floor, floor_frame = measure(lambda: sql_floor.run(con, sql_floor.monthly_revenue(sample)), REPEAT)

    def recipe():
        orders = pd.read_parquet(sample / "orders.parquet")
        orders["month"] = orders.ordered_at.dt.tz_convert(None).dt.to_period("M").dt.to_timestamp()
        return orders.groupby("month").agg(orders=("order_id", "size"), revenue=("revenue", "sum")).reset_index()

    theirs, expected = measure(recipe, REPEAT)
    pd.testing.assert_frame_equal(engine, floor_frame, check_dtype=False, rtol=1e-9)
    assert engine.orders.tolist() == expected.orders.tolist()
    np.testing.assert_allclose(engine.revenue, expected.revenue, rtol=1e-9)
    table.add("monthly revenue", sample.customers, ours, floor, theirs, "pandas groupby on orders")
    table.floor_target("monthly revenue", sample.customers, ours, floor)


def test_cohort_summary(sample, table):
    source, con = data.connect(sample), sql_floor.connect()

    def ours_fn():
        summary = cohorts.summarize_cohorts(source.table("customers"), data.activity_table(source), "month")
        return summary, summary.matrix("active")

    ours, (summary, engine) = measure(ours_fn, REPEAT)
    floor, cells = measure(lambda: sql_floor.run(con, sql_floor.cohort_cells(sample)), REPEAT)

    def recipe():  # the usual notebook recipe: one row per order, groupby cohort x age
        c = pd.read_parquet(sample / "customers.parquet", columns=["customer_id", "converted_at"])
        o = pd.read_parquet(sample / "orders.parquet", columns=["customer_id", "ordered_at"]).merge(c, on="customer_id")
        o["cohort"] = o.converted_at.dt.tz_convert(None).dt.to_period("M").dt.to_timestamp()
        o["age"] = (o.ordered_at - o.converted_at) // pd.Timedelta(days=30)
        return o.groupby(["cohort", "age"]).customer_id.nunique().unstack("age")

    theirs, expected = measure(recipe, REPEAT)
    # the floor returns the cells with activity; pco every elapsed cell (zeros where nobody was active)
    pco_cells = summary.cells[summary.cells.elapsed].set_index(["cohort", "age"])
    floor_cells = cells[cells.elapsed].set_index(["cohort", "age"])
    assert set(floor_cells.index) <= set(pco_cells.index)
    assert (pco_cells.drop(floor_cells.index).active == 0).all()
    pd.testing.assert_frame_equal(pco_cells.loc[floor_cells.index, ["customers", "active", "orders", "revenue"]],
                                  floor_cells[["customers", "active", "orders", "revenue"]], check_dtype=False,
                                  rtol=1e-9)
    shared = engine.notna()
    np.testing.assert_array_equal(engine.where(shared).to_numpy(),
                                  expected.reindex_like(engine).fillna(0).where(shared).to_numpy())
    table.add("cohort summary + retention matrix (monthly)", sample.customers, ours, floor, theirs,
              "pandas groupby on orders")
    table.floor_target("cohort summary", sample.customers, ours, floor)


def test_survival(sample, table):
    """Non-contractual churn (90 quiet days) by channel × device. Engine step: the lifetimes aggregated to
    distinct rows, vs its SQL floor. Then Kaplan–Meier by channel and a Cox model (channel, device) on those
    rows, vs lifelines on one row per customer (made with pandas): the fits alone, and from the files."""
    from lifelines import CoxPHFitter, KaplanMeierFitter

    source, con = data.connect(sample), sql_floor.connect()

    def lifetimes():
        return churn.summarize_lifetimes(source, "non_contractual", 90, "order", ["channel", "device"])

    step, counts = measure(lifetimes, REPEAT)
    floor, floor_counts = measure(lambda: sql_floor.run(con, sql_floor.noncontractual_lifetimes(sample)), REPEAT)
    pd.testing.assert_frame_equal(counts, floor_counts, check_dtype=False)
    table.add(f"churn lifetimes, non-contractual ({len(counts):,} distinct rows)", sample.customers, step, floor)
    table.floor_target("churn lifetimes", sample.customers, step, floor)

    fits, (curves, cox) = measure(lambda: (kaplan_meier(counts, "channel"), fit_cox(counts, ["channel", "device"])))

    def rows():  # the usual way: one row per customer in pandas ...
        c = pd.read_parquet(sample / "customers.parquet", columns=["customer_id", "converted_at", "channel", "device"])
        o = pd.read_parquet(sample / "orders.parquet", columns=["customer_id", "ordered_at"])
        until = max(c.converted_at.max(), o.ordered_at.max())
        c = c.merge(o.groupby("customer_id").ordered_at.max().rename("last"), on="customer_id", how="left")
        last = c["last"].fillna(c.converted_at).clip(lower=c.converted_at)
        churned = (until - last) >= pd.Timedelta(days=90)
        end = last.where(churned, until)
        c["days"] = (end - c.converted_at).dt.total_seconds() // 86_400 + 1
        c["churned"] = churned.astype(int)
        return c

    def lifelines_fits(c):  # ... then lifelines on them
        fitters = {k: KaplanMeierFitter().fit(p.days, p.churned) for k, p in c.groupby("channel")}
        design = pd.get_dummies(c[["channel", "device"]]).drop(columns=[f"{k}_{v}" for k, v in cox.reference.items()])
        cph = CoxPHFitter().fit(pd.concat([design.astype(float), c[["days", "churned"]]], axis=1), "days", "churned")
        return fitters, cph

    prepare, per_customer = measure(rows, REPEAT)
    theirs, (fitters, cph) = measure(lambda: lifelines_fits(per_customer))
    for name, kmf in fitters.items():
        np.testing.assert_allclose(curves.fitters[name].survival_function_.iloc[:, 0].to_numpy(),
                                   kmf.survival_function_.iloc[:, 0].to_numpy(), rtol=1e-9)
    ours_beta = cox.params.rename(lambda n: n.replace("=", "_"))
    np.testing.assert_allclose(ours_beta[cph.params_.index], cph.params_, atol=1e-4)
    n = sample.customers
    table.add("Kaplan–Meier + Cox fits (pco on the distinct rows)", n, fits, None, theirs,
              "lifelines, one row per customer")
    table.target("survival fits (KM + Cox): lifelines ÷ pco", n, theirs.wall / fits.wall, 5, "×", at_most=False)
    ours, peer = (Timing(a.wall + b.wall, a.cpu + b.cpu) for a, b in ((step, fits), (prepare, theirs)))
    table.add("Kaplan–Meier + Cox from the files (lifetimes + fits)", n, ours, None, peer,
              "pandas + lifelines, one row per customer")
    table.target("survival from the files: pandas + lifelines ÷ pco", n, peer.wall / ours.wall, 5, "×",
                 at_most=False)


def test_experiment(sample, table):
    """Engine step: the per-arm sufficient statistics (summarize_experiment) vs their SQL floor. Then the
    revenue readout (read_experiment: sums, Welch) vs one row per customer in pandas and scipy's Welch test."""
    from scipy import stats

    source, con = data.connect(sample), sql_floor.connect()
    step, arms = measure(lambda: experiments.summarize_experiment(source, "onboarding_email", 30), REPEAT)
    floor, floor_arms = measure(lambda: sql_floor.run(con, sql_floor.experiment_arms(sample, "onboarding_email")),
                                REPEAT)
    pd.testing.assert_frame_equal(arms, floor_arms[list(arms.columns)], check_dtype=False, rtol=1e-9)
    table.add("experiment arms (per-arm sums, 30 days)", sample.customers, step, floor)
    table.floor_target("experiment arms", sample.customers, step, floor)

    ours, readout = measure(lambda: experiments.read_experiment(source, "onboarding_email", ["revenue"],
                                                                window_days=30))

    def recipe():
        a = pd.read_parquet(sample / "assignments.parquet").query("experiment_id == 'onboarding_email'")
        o = pd.read_parquet(sample / "orders.parquet", columns=["customer_id", "ordered_at", "revenue"])
        a = a[a.assigned_at + pd.Timedelta(days=30) <= o.ordered_at.max()]
        j = a.merge(o, on="customer_id")
        j = j[(j.ordered_at > j.assigned_at) & (j.ordered_at <= j.assigned_at + pd.Timedelta(days=30))]
        per = a.set_index("customer_id")[["variant"]].join(j.groupby("customer_id").revenue.sum()).fillna(0)
        return stats.ttest_ind(per.revenue[per.variant == "treatment"], per.revenue[per.variant == "control"],
                               equal_var=False)

    theirs, test = measure(recipe)
    effect = readout.effects.set_index("metric").loc["revenue"]
    assert effect.p_value == pytest.approx(test.pvalue, rel=1e-6)
    table.add("A/B readout (revenue, 30 days), from the files", sample.customers, ours, None, theirs,
              "pandas + scipy, one row per customer")


def _tree_rss(process: psutil.Process) -> int:
    """Resident memory of a process and all its descendants, in bytes (shared pages count once per process,
    so this errs high)."""
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:  # ended between the listing and the reading
            pass
    return total


def _run_all(schedule: Path, out: Path, jobs: int, memory: str) -> tuple[float, float, float, list[dict]]:
    """`pco run-all` of ``schedule`` into ``out``, ``jobs`` at a time: (wall s, CPU s, peak GB of the whole
    process tree — pco, its workers and the report kernels, sampled every 0.1 s —, the manifests of its runs
    in the order they started). CPU: that of the finished process tree (getrusage of the children)."""
    from pco_lib.report import list_runs

    command = [sys.executable, "-m", "pco_lib.cli", "run-all", "--schedule", str(schedule), "--out", str(out),
               "-q", "--jobs", str(jobs)] + (["--memory", memory] if memory else [])
    earlier = {r["folder"] for r in list_runs(out)} if out.exists() else set()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k != "PCO_TEST_KERNEL_SERVER"}  # real kernels, in the tree
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    peak, watched = 0, psutil.Process(process.pid)

    def sample_memory():
        nonlocal peak
        while process.poll() is None:
            try:
                peak = max(peak, _tree_rss(watched))
            except psutil.Error:
                pass
            time.sleep(0.1)

    sampler = threading.Thread(target=sample_memory)
    sampler.start()
    output = process.communicate()[0]
    sampler.join()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert process.returncode == 0, output
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    runs = sorted((r for r in list_runs(out) if r["folder"] not in earlier), key=lambda r: r["started_at"])
    return wall, cpu, peak / 1e9, [json.loads((out / r["folder"] / "manifest.json").read_text()) for r in runs]


def _run_name(manifest: dict) -> str:
    which = manifest["parameters"].get("experiment_id")
    return f"report {manifest['report']}{f' ({which})' if which else ''}"


def test_every_report_end_to_end(sample, table):
    """Every scheduled report through `pco run-all` on this sample, PCO_BENCH_JOBS at a time (default 2, as
    `make report`), with `--memory PCO_BENCH_MEMORY` when that is set (e.g. 4GB): the wall time of all, the
    peak memory of the process tree, and each report's time while it shares the cores.

    Then, up to 1M customers, each report alone (`--jobs 1`, the data's validation remembered from the first
    pass): the per-report target (30 s on 2 idle cores) is read from that pass, as an analyst running one
    report sees it."""
    import yaml

    root = Path(__file__).parents[2]
    jobs = int(os.environ.get("PCO_BENCH_JOBS", "2"))
    memory = os.environ.get("PCO_BENCH_MEMORY", "")
    runs = yaml.safe_load((root / "reports" / "schedule.yml").read_text())["runs"]
    schedule = sample.parent / "schedule.yml"
    schedule.write_text(yaml.safe_dump({"runs": [{**r, "data": str(sample)} for r in runs]}))
    out = sample.parent / "reports"
    customers = sample.customers
    wall, cpu, peak_gb, manifests = _run_all(schedule, out, jobs, memory)
    flags = f"--jobs {jobs}" + (f" --memory {memory}" if memory else "")
    for manifest in manifests:
        table.add(f"{_run_name(manifest)}, beside the others (run-all {flags})", customers,
                  Timing(manifest["duration_s"], float("nan")))
    table.add(f"all {len(runs)} scheduled reports, pco run-all {flags} (peak memory of the process tree "
              f"{peak_gb:.2f} GB)", customers, Timing(wall, cpu))
    table.target(f"all {len(runs)} scheduled reports: wall", customers, wall, 180, "s")
    big = customers > 1_000_000
    table.target("peak memory of the process tree (run-all)", customers, peak_gb, 8 if big else 4, "GB",
                 set_for=10_000_000 if big else 1_000_000)
    if big:  # alone, the 9 reports at 10M would take another ~25 min
        return
    _, _, alone_gb, manifests = _run_all(schedule, out, 1, memory)
    for manifest in manifests:
        table.add(f"{_run_name(manifest)}, alone (run-all --jobs 1, peak {alone_gb:.2f} GB for all)", customers,
                  Timing(manifest["duration_s"], float("nan")))
        table.target(f"{_run_name(manifest)} alone: wall", customers, manifest["duration_s"], 30, "s")
