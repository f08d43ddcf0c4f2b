"""Benchmark: the overview summaries in the engine (DuckDB through Ibis) vs the pandas recipe.

Run with `make bench`. Writes tests/benchmarks/results/overview.md with the machine description.
Both sides compute the same monthly revenue table from the same Parquet file; the test checks the
numbers agree and records the times side by side (no timed assertion).
"""

import os
import platform
import time
from pathlib import Path

import pandas as pd
import pytest

from pco_lib import data, overview
from pco_lib.sample import generate_sample

pytestmark = pytest.mark.bench
RESULTS = Path(__file__).parent / "results"
CUSTOMERS = int(os.environ.get("PCO_BENCH_CUSTOMERS", "200000"))


def _time(fn, repeat=3):
    best, value = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def test_monthly_revenue_engine_vs_pandas(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench") / "sample"
    t0 = time.perf_counter()
    truth = generate_sample(folder, customers=CUSTOMERS, seed=1, progress=False)
    generate_s = time.perf_counter() - t0

    source = data.connect(folder)
    engine_s, engine = _time(lambda: overview.monthly_revenue(source))

    def pandas_recipe():
        orders = pd.read_parquet(folder / "orders.parquet")
        orders["month"] = orders.ordered_at.dt.tz_convert(None).dt.to_period("M").dt.to_timestamp()
        return orders.groupby("month").agg(orders=("order_id", "size"), revenue=("revenue", "sum"),
                                           customers=("customer_id", "nunique")).reset_index()

    pandas_s, expected = _time(pandas_recipe)
    pd.testing.assert_series_equal(engine.revenue.reset_index(drop=True), expected.revenue, check_exact=False,
                                   rtol=1e-9, check_names=False)
    assert engine.orders.tolist() == expected.orders.tolist()

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "overview.md").write_text(
        f"# Overview benchmark\n\nMachine: {platform.platform()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}\n\nSample: {CUSTOMERS:,} customers, {truth['counts']['orders']:,} orders "
        f"(generated in {generate_s:.1f} s)\n\n"
        "| step | pco (DuckDB via Ibis) | pandas recipe | ratio |\n|---|---|---|---|\n"
        f"| monthly revenue from orders.parquet | {engine_s:.3f} s | {pandas_s:.3f} s | "
        f"{pandas_s / engine_s:.1f}× |\n"
    )
    print((RESULTS / "overview.md").read_text())
