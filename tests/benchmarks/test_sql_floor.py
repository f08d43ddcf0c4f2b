"""The SQL floors compute pco's numbers also where the benchmark sample does not go: $0 orders (one in five
here; the generated sample has none) and a DuckDB session in another time zone (the floors read the
TIMESTAMPTZ columns as UTC, as pco does). A small sample, so it is quick; marked bench like the rest."""

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sql_floor

from pco_lib import churn, clv, cohorts, data, experiments, overview
from pco_lib.data.sample import generate_sample

pytestmark = pytest.mark.bench
END = "2026-06-30"  # a calibration end inside the data: later orders are left out of the RFM


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("floor") / "sample"
    generate_sample(folder, customers=3_000, seed=2, progress=False)
    orders = pq.read_table(folder / "orders.parquet")
    zero = pa.array([i % 5 == 0 for i in range(len(orders))])
    revenue = pc.if_else(zero, 0.0, orders["revenue"])
    pq.write_table(orders.set_column(orders.schema.get_field_index("revenue"), "revenue", revenue),
                   folder / "orders.parquet")
    return folder


@pytest.fixture()
def con():
    con = sql_floor.connect()
    con.sql("SET TimeZone = 'America/New_York'")
    return con


def test_floors_equal_pco(small, con):
    source = data.connect(small)
    assert (pd.read_parquet(small / "orders.parquet").revenue == 0).any()

    monthly = sql_floor.run(con, sql_floor.monthly_revenue(small))
    pd.testing.assert_frame_equal(overview.monthly_revenue(source), monthly, check_dtype=False, rtol=1e-9)

    cells = cohorts.summarize_cohorts(source.table("customers"), data.activity_table(source), "month").cells
    floor = sql_floor.run(con, sql_floor.cohort_cells(small))
    ours = cells[cells.elapsed & (cells.orders > 0)].set_index(["cohort", "age"])
    theirs = floor[floor.elapsed].set_index(["cohort", "age"])
    columns = ["customers", "active", "orders", "revenue"]
    pd.testing.assert_frame_equal(ours[columns], theirs[columns], check_dtype=False, rtol=1e-9)

    pd.testing.assert_frame_equal(
        churn.summarize_lifetimes(source, "non_contractual", 90, "order", ["channel", "device"]),
        sql_floor.run(con, sql_floor.noncontractual_lifetimes(small)), check_dtype=False)

    arms = experiments.summarize_experiment(source, "onboarding_email", 30)
    floor = sql_floor.run(con, sql_floor.experiment_arms(small, "onboarding_email"))
    pd.testing.assert_frame_equal(arms, floor[list(arms.columns)], check_dtype=False, rtol=1e-9)

    orders = source.table("orders")
    per = clv.rfm_table(orders, END, per_customer=True)
    assert (per.zero_revenue_orders > 0).any() and (per.spend_frequency < per.frequency).any()
    pd.testing.assert_frame_equal(per, sql_floor.run(con, sql_floor.rfm_per_customer(small, END)),
                                  check_dtype=False, rtol=1e-12)
    pd.testing.assert_frame_equal(clv.rfm_table(orders, END), sql_floor.run(con, sql_floor.rfm_distinct(small, END)),
                                  check_dtype=False)
