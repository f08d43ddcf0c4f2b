"""Reading the canonical tables: Parquet, CSV and a user's own Ibis connection give the same typed data."""

import os
import shutil
from pathlib import Path

import ibis
import pandas as pd
import pytest

from pco_lib.data import DataError, connect


def _typed(source, name):
    return source.table(name).to_pandas().sort_values(source.table(name).columns[0]).reset_index(drop=True)


def test_parquet_and_csv_read_the_same(tiny_sample, tmp_path):
    for name in ["customers", "orders", "subscriptions"]:
        pd.read_parquet(tiny_sample / f"{name}.parquet").to_csv(tmp_path / f"{name}.csv", index=False)
    from_parquet, from_csv = connect(tiny_sample), connect(tmp_path)
    for name in ["customers", "orders", "subscriptions"]:
        pd.testing.assert_frame_equal(_typed(from_parquet, name), _typed(from_csv, name), check_dtype=False)


def test_typed_tables_have_canonical_types(tiny_sample):
    orders = connect(tiny_sample).table("orders")
    schema = orders.schema()
    assert schema["order_id"].is_string() and schema["customer_id"].is_string()
    assert schema["ordered_at"].is_timestamp() and schema["ordered_at"].timezone is None  # naive UTC
    assert schema["revenue"].is_floating()


def test_csv_ids_stay_text_and_offsets_become_utc(tmp_path):
    (tmp_path / "customers.csv").write_text(
        "customer_id,converted_at\n00123,2026-01-31T09:15:00+01:00\n123,2026-01-31 08:15:00\n")
    frame = connect(tmp_path).table("customers").to_pandas()
    assert frame.customer_id.tolist() == ["00123", "123"]
    assert frame.converted_at.tolist() == [pd.Timestamp("2026-01-31 08:15:00")] * 2


def test_a_users_own_connection_with_renamed_tables(tiny_sample):
    con = ibis.duckdb.connect()
    con.create_table("fct_orders", pd.read_parquet(tiny_sample / "orders.parquet"))
    con.create_table("customers", pd.read_parquet(tiny_sample / "customers.parquet"))
    source = connect(con=con, tables={"orders": "fct_orders"})
    assert source.has("orders") and source.has("customers") and not source.has("leads")
    assert source.table("orders").count().to_pandas() == len(pd.read_parquet(tiny_sample / "orders.parquet"))
    with pytest.raises(DataError, match="table 'leads' not found in the connection"):
        source.table("leads")


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        connect(tmp_path / "nowhere")
    with pytest.raises(KeyError, match="unknown table 'sessions'"):
        connect(tmp_path).table("sessions")


def test_an_empty_optional_table_counts_as_absent(tiny_sample, tmp_path):
    for name in ["customers", "orders"]:
        shutil.copy(tiny_sample / f"{name}.parquet", tmp_path)
    pd.read_parquet(tiny_sample / "events.parquet").iloc[:0].to_parquet(tmp_path / "events.parquet")
    source = connect(tmp_path)
    assert source.has("orders") and source.has("events") is False and source.empty == ["events"]
    with pytest.raises(DataError, match="table 'events' not found"):
        source.table("events")


def test_typed_views_convert_only_what_needs_it(tmp_path):
    """A column stored in its canonical type is read as stored (so DuckDB answers min/max from Parquet
    statistics); a zoned timestamp becomes naive UTC; text is parsed; blank ids become empty whatever the
    storage."""
    stored = pd.DataFrame({
        "customer_id": ["c1", " ", "", " c4"],
        "converted_at": pd.to_datetime(["2024-01-01 00:30", "2024-01-02 00:00", "2024-01-03 00:00",
                                        "2024-01-04 00:00"]).astype("datetime64[us]"),  # naive: DuckDB's TIMESTAMP
    })
    stored.to_parquet(tmp_path / "customers.parquet", index=False)
    pd.DataFrame({"order_id": ["o1", "o2", "o3", "o4"], "customer_id": ["c1", "c1", "c1", "c1"],
                  "ordered_at": pd.to_datetime(["2024-01-01 02:30+02:00"] * 4, utc=True),
                  "revenue": [1.0, 2.0, 3.0, 4.0]}).to_parquet(tmp_path / "orders.parquet", index=False)
    pd.DataFrame({"order_id": ["o5"], "customer_id": ["c1"], "ordered_at": ["2024-01-01T02:30:00+02:00"],
                  "revenue": ["5"]}).to_csv(tmp_path / "orders.csv", index=False)
    (tmp_path / "orders.csv").rename(tmp_path / "other.csv")
    source = connect(tmp_path)
    views = dict(source.con.raw_sql("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall())
    assert "converted_at" not in views["customers"].split("FROM")[0]  # stored as TIMESTAMP: read as it is
    assert "revenue" not in views["orders"].split("FROM")[0] and "TRY_CAST" not in views["orders"]
    customers = source.table("customers").to_pandas()
    assert customers.customer_id.tolist() == ["c1", None, None, " c4"]
    assert customers.converted_at[0] == pd.Timestamp("2024-01-01 00:30")
    assert source.table("orders").to_pandas().ordered_at[0] == pd.Timestamp("2024-01-01 00:30")  # UTC, naive
    # made naive from its microseconds (not through the time-zone library): the same instants, to the µs
    zoned = pd.Series(pd.to_datetime(["1969-12-31 23:59:59.999999", "2024-03-31 01:30:00.000001",
                                      "1900-01-01 00:00:00.000000", "2262-04-11 23:47:16.000000"],
                                     utc=True).astype("datetime64[us, UTC]"))
    pd.DataFrame({"order_id": list("wxyz"), "customer_id": "c1", "ordered_at": zoned,
                  "revenue": 1.0}).to_parquet(tmp_path / "orders.parquet", index=False)
    read = connect(tmp_path).table("orders").to_pandas().ordered_at
    assert read.tolist() == zoned.dt.tz_localize(None).tolist() and read.dt.tz is None
    (tmp_path / "orders.parquet").unlink()
    (tmp_path / "other.csv").rename(tmp_path / "orders.csv")
    text = connect(tmp_path).table("orders").to_pandas()
    assert text.ordered_at[0] == pd.Timestamp("2024-01-01 00:30") and text.revenue[0] == 5.0


def test_ids_that_the_statistics_show_are_never_blank_are_read_as_stored(tmp_path):
    """Parquet text whose every row group's minimum is ≥ "!" holds no blank value: it is read as stored (so
    DuckDB can push join filters into the scan); a blank in any row group keeps the blank test, and an id
    stored as a number is read as text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pco_lib.data.source import _visible_text_columns

    def write(ids, name="customers"):
        frame = pd.DataFrame({"customer_id": ids, "converted_at": pd.Timestamp("2024-01-01")}).astype(
            {"converted_at": "datetime64[us]"})
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / f"{name}.parquet",
                       row_group_size=2)
        return connect(tmp_path)

    def view(source):
        return dict(source.con.raw_sql("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall())

    pd.DataFrame({"order_id": ["o1"], "customer_id": ["c1"], "ordered_at": pd.Timestamp("2024-01-02"),
                  "revenue": 1.0}).astype({"ordered_at": "datetime64[us]"}).to_parquet(tmp_path / "orders.parquet")
    source = write(["c1", "c2", "!c3", None])
    assert "customer_id" not in view(source)["customers"]
    assert _visible_text_columns(tmp_path / "customers.parquet") == {"customer_id"}
    assert source.table("customers").to_pandas().customer_id.tolist() == ["c1", "c2", "!c3", None]
    for blank in ["", " ", "\t"]:  # in the second row group only
        source = write(["c1", "c2", "c3", blank])
        assert "trim" in view(source)["customers"]
        expected = None if blank.strip(" ") == "" else blank  # DuckDB's TRIM removes spaces only
        assert source.table("customers").to_pandas().customer_id.tolist()[3] == expected
    source = write(pd.array([101, 102, 103, None], dtype="Int64"))
    assert source.table("customers").to_pandas().customer_id.tolist() == ["101", "102", "103", None]


def test_engine_memory_limit_and_spill_folder(tiny_sample, tmp_path, monkeypatch):
    """PCO_ENGINE_MEMORY (pco run --memory) bounds DuckDB; it spills under the system's temporary folder (its
    default, ".tmp", is relative to the working directory: a report's folder), a folder per connection."""
    import tempfile

    from pco_lib.data.source import ENGINE_MEMORY_ENV, connection_from_environment, engine_memory

    assert engine_memory("8GB") == 8 * 10**9 and engine_memory(" 1.5 GiB") == int(1.5 * 2**30)
    assert engine_memory("512mb") == 512 * 10**6
    for bad in ("8", "lots", "-1GB", "50MB"):
        with pytest.raises(DataError, match=f"{ENGINE_MEMORY_ENV}: '{bad}'"):
            engine_memory(bad)
    q = ("SELECT current_setting('memory_limit'), current_setting('temp_directory'), "
         "current_setting('allocator_background_threads')")
    monkeypatch.setenv(ENGINE_MEMORY_ENV, "1GB")
    monkeypatch.chdir(tmp_path)
    one, two = (connect(tiny_sample).con.raw_sql(q).fetchall()[0] for _ in range(2))
    assert one[0] == "953.6 MiB" and one[2] is True  # 1GB = 10⁹ bytes, as DuckDB shows it
    assert Path(one[1]).parent == Path(tempfile.gettempdir()) and one[1] != two[1]
    monkeypatch.delenv(ENGINE_MEMORY_ENV)
    assert connect(tiny_sample).con.raw_sql(q).fetchall()[0][0] != one[0]  # DuckDB's default
    monkeypatch.setenv(ENGINE_MEMORY_ENV, "lots")
    with pytest.raises(DataError, match="not a memory size"):
        connect(tiny_sample)
    monkeypatch.setenv("PCO_TEST_DB", f"duckdb://{tmp_path / 'shop.duckdb'}")
    with pytest.raises(DataError, match="not a memory size"):  # a warehouse's DuckDB too, not "cannot connect"
        connection_from_environment("env:PCO_TEST_DB")


def test_duckdb_draws_no_progress_bar_on_the_terminal(tiny_sample, tmp_path):
    """DuckDB's progress bar (queries over 2 s) goes to the process's terminal, so from a report's kernel into
    pco's output and a scheduler's log: every connection pco opens has it off. Checked in a fresh process (under
    pytest's captured output DuckDB starts with it off anyway), beside a plain connection that has it on."""
    import subprocess
    import sys

    import duckdb

    path = tmp_path / "shop.duckdb"
    with duckdb.connect(str(path)) as db:
        db.execute("CREATE TABLE t AS SELECT 1 AS x")
    mapping = tmp_path / "m.yml"
    mapping.write_text(f"tables:\n  customers:\n    file: {tiny_sample / 'customers.parquet'}\n"
                       f"  orders:\n    file: {tiny_sample / 'orders.parquet'}\n")
    code = ("import os, sys, ibis; from pco_lib.data import connect; "
            "from pco_lib.data.source import connection_from_environment as env; "
            "q = \"SELECT current_setting('enable_progress_bar')\"; "
            "cons = [ibis.duckdb.connect(), connect(sys.argv[1]).con, connect(sys.argv[2]).con, "
            "env('env:PCO_TEST_DB')]; "
            "print([c.raw_sql(q).fetchone()[0] for c in cons])")
    done = subprocess.run([sys.executable, "-c", code, str(tiny_sample), str(mapping)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PCO_TEST_DB": f"duckdb://{path}"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[True, False, False, False]"  # a plain connection draws it; pco's do not
