"""The engine summaries run unchanged on Spark (Ibis' PySpark backend, local[2]) and equal DuckDB's.

Skipped when PySpark or Java is missing, unless PCO_REQUIRE_SPARK is set (CI installs the `spark` extra).
"""

import os
import shutil

import pandas as pd
import pytest

from pco_lib import churn, clv, cohorts, data, experiments, feedback, lifecycle

AS_OF = "2026-09-30"


@pytest.fixture(scope="module")
def engines(tiny_sample):
    """The tiny sample through DuckDB (as analysts use it) and through a local Spark session."""
    try:
        import ibis
        from pyspark.sql import SparkSession
    except ImportError:
        SparkSession = None
    if SparkSession is None or shutil.which("java") is None:
        message = "Spark tests need the spark extra (pip install -e '.[spark]') and Java 17"
        if os.environ.get("PCO_REQUIRE_SPARK"):
            pytest.fail(message)
        pytest.skip(message)
    spark = (SparkSession.builder.master("local[2]").appName("pco-tests")
             .config("spark.sql.shuffle.partitions", "4").config("spark.ui.enabled", "false")
             .config("spark.sql.session.timeZone", "UTC").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    for name in data.TABLES:
        path = tiny_sample / f"{name}.parquet"
        if path.exists():
            spark.read.parquet(str(path)).createOrReplaceTempView(name)
    yield data.connect(tiny_sample), data.connect(con=ibis.pyspark.connect(spark))
    spark.stop()


def _same(duck: pd.DataFrame, spark: pd.DataFrame, keys: list[str]) -> None:
    assert len(duck) > 0
    a = duck.sort_values(keys).reset_index(drop=True)
    b = spark[a.columns].sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False, check_exact=False, rtol=1e-9)


SUMMARIES = {
    "cohort counts": (lambda s: cohorts.summarize_cohorts(s.table("customers"), data.activity_table(s),
                                                          "month", segment="channel").cells,
                      ["cohort", "segment", "age"]),
    "subscription lifetimes": (lambda s: churn.summarize_lifetimes(s, "contractual", columns=["plan"]),
                               ["days", "churned", "plan"]),
    "non-contractual lifetimes": (lambda s: churn.summarize_lifetimes(s, "non_contractual", 90, "order",
                                                                         ["channel"]),
                                  ["days", "churned", "channel"]),
    "per-arm sufficient statistics": (lambda s: experiments.summarize_experiment(s, "onboarding_email", 30),
                                      ["variant"]),
    "RFM rows (x, t_x, T)": (lambda s: clv.rfm_table(s.table("orders"), AS_OF), ["frequency", "recency", "T"]),
    "lifecycle stages": (lambda s: lifecycle.stage_counts(s.table("customers"), s.table("orders"), AS_OF,
                                                         leads=s.table("leads")), ["stage"]),
    "RFM segments": (lambda s: lifecycle.rfm_segments(s.table("orders"), AS_OF), ["segment"]),
    "survey counts": (lambda s: feedback.survey_counts(s, "channel"), ["segment"]),
}


@pytest.mark.parametrize("name", list(SUMMARIES))
def test_summary_is_the_same_on_spark_as_on_duckdb(engines, name):
    duck, spark = engines
    summarize, keys = SUMMARIES[name]
    _same(summarize(duck), summarize(spark), keys)
