"""Reading a raw export through a mapping file: the CDNOW sample as published, renamed columns, time zones,
globs, databases, and clear errors for a wrong mapping."""

import json
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from pco_lib.cli import main
from pco_lib.data import DataError, connect
from pco_lib.data.checks import check_source
from pco_lib.report import list_runs

ROOT = Path(__file__).resolve().parents[1]
CDNOW = ROOT / "tests" / "data" / "cdnow_sample.txt"

CDNOW_MAPPING = f"""
tables:
  orders:
    file: {CDNOW}
    format: whitespace
    header: false
    names: [master_id, sample_id, date, cds, dollars]
    columns:
      customer_id: master_id
      ordered_at: date
      revenue: dollars
      order_id: null
    date_format: "%Y%m%d"
  customers:
    from_orders: true
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.fixture(scope="module")
def cdnow_raw() -> pd.DataFrame:
    """The raw file read independently of pco (pandas, whitespace separated, ids as text)."""
    raw = pd.read_csv(CDNOW, sep=r"\s+", header=None, names=["master_id", "sample_id", "date", "cds", "dollars"],
                      dtype={"master_id": str, "date": str})
    raw["date"] = pd.to_datetime(raw["date"], format="%Y%m%d")
    return raw


def test_the_raw_cdnow_file_reads_through_a_mapping(tmp_path, cdnow_raw):
    source = connect(_write(tmp_path / "mapping.yml", CDNOW_MAPPING))
    orders = source.table("orders").to_pandas()
    customers = source.table("customers").to_pandas()
    assert len(customers) == 2357 and len(orders) == 6919
    assert orders.revenue.sum() == pytest.approx(cdnow_raw.dollars.sum(), abs=1e-6)
    assert orders.ordered_at.min() == pd.Timestamp("1997-01-01") and orders.ordered_at.max() == pd.Timestamp(
        "1998-06-30")
    first = cdnow_raw.groupby("master_id").date.min()
    got = customers.set_index("customer_id").converted_at.sort_index()
    pd.testing.assert_series_equal(got, first.sort_index(), check_names=False, check_dtype=False)
    # same customer and day stay separate orders; ids are the row numbers in file order
    assert orders.order_id.nunique() == 6919
    by_id = orders.set_index("order_id")
    assert by_id.loc["row-1", "customer_id"] == "00004" and by_id.loc["row-1", "revenue"] == 29.33
    assert by_id.loc["row-6919"].tolist()[:3] == [cdnow_raw.master_id.iloc[-1], cdnow_raw.date.iloc[-1],
                                                  cdnow_raw.dollars.iloc[-1]]
    assert {"sample_id", "cds"} <= set(orders.columns)  # unmapped source columns are kept
    assert check_source(source).ok


def test_local_timestamps_are_read_in_the_time_zone_and_become_utc(tmp_path):
    _write(tmp_path / "orders.csv", """
        id,buyer,when,amount
        o1,c1,2026-03-01 00:30,10
        o2,c1,2026-03-01T00:30:00+00:00,5
        o3,c1,2026-07-01 12:00,1
    """)
    _write(tmp_path / "mapping.yml", """
        tables:
          orders:
            file: orders.csv
            columns: {order_id: id, customer_id: buyer, ordered_at: when, revenue: amount}
            time_zone: Europe/Berlin
          customers:
            from_orders: true
    """)
    orders = connect(tmp_path / "mapping.yml").table("orders").to_pandas().set_index("order_id")
    assert orders.ordered_at.to_dict() == {
        "o1": pd.Timestamp("2026-02-28 23:30"),  # CET, UTC+1
        "o2": pd.Timestamp("2026-03-01 00:30"),  # has its own offset: the time zone does not apply
        "o3": pd.Timestamp("2026-07-01 10:00"),  # CEST, UTC+2
    }


def test_date_format_reads_the_exports_own_way_of_writing_dates(tmp_path):
    _write(tmp_path / "orders.csv",
           "id;buyer;when;amount\no1;c1;01/03/2026 14:05;10,5\no2;c1;1.3.26;1\no3;c1;2026-03-01;1\n")
    _write(tmp_path / "mapping.yml", """
        tables:
          orders:
            file: orders.csv
            delimiter: ";"
            columns: {order_id: id, customer_id: buyer, ordered_at: when, revenue: amount}
            date_format: "%d/%m/%Y %H:%M"
          customers: {from_orders: true}
    """)
    source = connect(tmp_path / "mapping.yml")
    orders = source.table("orders").to_pandas().set_index("order_id")
    assert orders.loc["o1", "ordered_at"] == pd.Timestamp("2026-03-01 14:05")
    assert orders.ordered_at.isna().tolist() == [False, True, True]  # not in date_format: not read at all
    problems = {(p.column, p.rule): p for p in check_source(source).errors}
    # validation shows the value as written; one that would pass as ISO says it does not match date_format
    assert problems["ordered_at", "unparseable timestamp"].examples == (
        "'1.3.26'", "'2026-03-01 (not in date_format %d/%m/%Y %H:%M)'")
    assert problems["revenue", "wrong type: expected a number"].examples == ("'10,5'",)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_renamed_columns_in_csv_and_parquet(tmp_path, suffix):
    orders = pd.DataFrame({"OrderNo": ["A1", "A2", "A3"], "Client": ["007", "007", "9"],
                           "Placed": ["2026-01-05 10:00:00", "2026-01-05 10:00:00", "2026-01-07 09:00:00"],
                           "Net": [10.0, 2.5, 0.0], "channel": ["web", "web", "shop"]})
    customers = pd.DataFrame({"Client": ["007", "9"], "Joined": ["2026-01-01", "2026-01-02"], "plan": ["a", "b"]})
    for name, frame in [("export_orders", orders), ("export_customers", customers)]:
        path = tmp_path / f"{name}{suffix}"
        frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path, index=False)
    _write(tmp_path / "mapping.yml", f"""
        tables:
          orders:
            file: export_orders{suffix}
            columns: {{order_id: OrderNo, customer_id: Client, ordered_at: Placed, revenue: Net}}
          customers:
            file: export_customers{suffix}
            columns: {{customer_id: Client, converted_at: Joined}}
    """)
    source = connect(tmp_path / "mapping.yml")
    got = source.table("orders").to_pandas().sort_values("order_id").reset_index(drop=True)
    assert got.columns.tolist() == ["order_id", "customer_id", "ordered_at", "revenue", "channel"]
    assert got.customer_id.tolist() == ["007", "007", "9"]  # ids stay text
    assert got.revenue.tolist() == [10.0, 2.5, 0.0] and got.channel.tolist() == ["web", "web", "shop"]
    assert got.ordered_at.tolist() == [pd.Timestamp("2026-01-05 10:00")] * 2 + [pd.Timestamp("2026-01-07 09:00")]
    assert source.table("customers").to_pandas().plan.tolist() == ["a", "b"]
    assert source.files["orders"].name == f"export_orders{suffix}"
    assert check_source(source).ok


def test_a_glob_reads_every_matching_file_and_ids_follow_file_order(tmp_path):
    (tmp_path / "exports").mkdir()
    _write(tmp_path / "exports" / "orders-2026-02.csv", "buyer,day,value\nc2,2026-02-01,3\nc1,2026-02-02,4\n")
    _write(tmp_path / "exports" / "orders-2026-01.csv", "buyer,day,value\nc1,2026-01-01,1\nc1,2026-01-01,2\n")
    _write(tmp_path / "mapping.yml", """
        tables:
          orders:
            file: exports/orders-*.csv
            columns: {order_id: null, customer_id: buyer, ordered_at: day, revenue: value}
          customers: {from_orders: true}
    """)
    source = connect(tmp_path / "mapping.yml")
    orders = source.table("orders").to_pandas().sort_values("revenue")
    assert orders.order_id.tolist() == ["row-1", "row-2", "row-3", "row-4"]  # January's file first
    customers = source.table("customers").to_pandas().sort_values("customer_id")
    assert customers.converted_at.tolist() == [pd.Timestamp("2026-01-01"), pd.Timestamp("2026-02-01")]
    assert len(source.inputs["orders"]) == 2 and source.files["orders"].name == "orders-*.csv"


def test_a_mapped_column_that_does_not_exist_lists_the_columns_that_do(tmp_path):
    _write(tmp_path / "orders.csv", "id,buyer,when,amount\no1,c1,2026-01-01,1\n")
    mapping = _write(tmp_path / "mapping.yml", """
        tables:
          orders:
            file: orders.csv
            columns: {order_id: id, customer_id: customer, ordered_at: when, revenue: amount}
          customers: {from_orders: true}
    """)
    with pytest.raises(DataError) as err:
        connect(mapping)
    message = str(err.value)
    assert str(mapping) in message and "tables.orders.columns.customer_id" in message
    assert "'customer' is not in" in message and "(its columns: id, buyer, when, amount)" in message


def test_unknown_keys_and_invalid_yaml_are_clear_errors(tmp_path):
    mapping = _write(tmp_path / "mapping.yml", "tables:\n  orders:\n    file: o.csv\n    colums: {}\n")
    with pytest.raises(DataError, match=r"tables\.orders: unknown key 'colums' \(valid keys: file, table, .*columns"):
        connect(mapping)
    _write(mapping, "tables:\n  orders: {file: o.csv}\n  customers: {from_orders: true}\nconection: env:X\n")
    with pytest.raises(DataError, match=r"unknown key 'conection' \(valid keys: tables, connection\)"):
        connect(mapping)
    _write(mapping, "tables:\n  orders: {file: o.csv, columns: {amount: x}}\n  customers: {from_orders: true}\n")
    with pytest.raises(DataError, match=r"unknown column 'amount' for orders \(valid: order_id, customer_id"):
        connect(mapping)
    _write(mapping, "tables:\n  orders:\n    file: [o.csv\n")
    with pytest.raises(DataError, match=r"mapping.yml: not valid YAML at line \d"):
        connect(mapping)
    with pytest.raises(DataError, match="does not exist"):
        connect(tmp_path / "nowhere.yml")
    _write(tmp_path / "orders.txt", "o1 c1 20260101 1\no2 c1 20260102\n")
    _write(mapping, "tables:\n  orders: {file: orders.txt, format: whitespace, header: false, "
                    "names: [order_id, customer_id, ordered_at, revenue]}\n  customers: {from_orders: true}\n")
    with pytest.raises(DataError, match=r"orders.txt: 1 line\(s\) do not have 4 fields .*data line 2 has 3"):
        connect(mapping)


def test_validation_names_the_real_source_file(tmp_path):
    _write(tmp_path / "shop_export.csv", "id,buyer,when,amount\no1,c1,2026-01-01,1\no2,c1,2026-01-02,abc\n")
    _write(tmp_path / "mapping.yml", """
        tables:
          orders:
            file: shop_export.csv
            columns: {order_id: id, customer_id: buyer, ordered_at: when, revenue: amount}
          customers: {from_orders: true}
    """)
    report = check_source(connect(tmp_path / "mapping.yml"))
    assert not report.ok
    [problem] = report.errors
    assert (problem.file, problem.column, problem.examples) == ("shop_export.csv", "revenue", ("'abc'",))
    assert "shop_export.csv: column revenue: wrong type: expected a number (1 row, e.g. 'abc')" in report.summary()


def test_the_fingerprint_changes_when_the_mapping_or_an_input_changes(tmp_path):
    mapping = _write(tmp_path / "mapping.yml", CDNOW_MAPPING)
    before = connect(mapping).fingerprint()
    assert connect(mapping).fingerprint() == before
    _write(mapping, CDNOW_MAPPING.replace('date_format: "%Y%m%d"', 'date_format: "%Y%m%d"\n    time_zone: UTC'))
    changed = connect(mapping).fingerprint()
    assert changed != before
    data = tmp_path / "orders.txt"
    data.write_bytes(CDNOW.read_bytes())
    _write(mapping, CDNOW_MAPPING.replace(str(CDNOW), "orders.txt"))
    first = connect(mapping).fingerprint()
    with data.open("a") as fh:
        fh.write(" 99999 9999 19980601  1   1.00\n")
    assert connect(mapping).fingerprint() != first


def test_data_check_accepts_a_mapping_file(tmp_path, capsys):
    mapping = _write(tmp_path / "mapping.yml", CDNOW_MAPPING)
    assert main(["data", "check", str(mapping)]) == 0
    out = capsys.readouterr().out
    assert f"{mapping}: OK" in out
    assert "2,357" in out and "6,919" in out and "1997-01-01 to 1998-06-30" in out
    _write(mapping, CDNOW_MAPPING.replace("revenue: dollars", "revenue: dollar"))
    assert main(["data", "check", str(mapping)]) == 1
    assert "'dollar' is not in" in capsys.readouterr().out


def test_the_shipped_example_mapping_validates():
    source = connect(ROOT / "examples" / "cdnow" / "mapping.yml")
    report = check_source(source)
    assert report.ok, report.summary()
    assert source.table("customers").count().to_pandas() == 2357


def test_database_tables_named_in_the_environment(tmp_path, monkeypatch):
    import duckdb

    db = tmp_path / "shop.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE SCHEMA analytics")
        con.execute("CREATE TABLE analytics.fct_orders AS SELECT * FROM (VALUES (1, 'c1', '20260102', 10.0, 'web'),"
                    " (2, 'c1', '20260105', 5.0, 'web'), (3, 'c2', '20260103', 7.5, 'shop')) "
                    "t(num, buyer, day, net, channel)")
    monkeypatch.setenv("PCO_TEST_MAPPED_DB", f"duckdb://{db}")
    mapping = _write(tmp_path / "mapping.yml", """
        connection: env:PCO_TEST_MAPPED_DB
        tables:
          orders:
            table: analytics.fct_orders
            columns: {order_id: num, customer_id: buyer, ordered_at: day, revenue: net}
            date_format: "%Y%m%d"
          customers: {from_orders: true}
    """)
    source = connect(mapping)
    orders = source.table("orders").to_pandas().sort_values("order_id")
    assert orders.order_id.tolist() == ["1", "2", "3"] and orders.channel.tolist() == ["web", "web", "shop"]
    assert orders.ordered_at.tolist() == [pd.Timestamp(d) for d in ["2026-01-02", "2026-01-05", "2026-01-03"]]
    customers = source.table("customers").to_pandas().sort_values("customer_id")
    assert customers.converted_at.tolist() == [pd.Timestamp("2026-01-02"), pd.Timestamp("2026-01-03")]
    assert check_source(source).ok
    assert len(source.fingerprint()) == 16
    _write(mapping, mapping.read_text().replace("analytics.fct_orders", "analytics.orders"))
    with pytest.raises(DataError, match="'analytics.orders' not found in the database"):
        connect(mapping)


def test_the_raw_cdnow_file_through_a_mapping_runs_every_applicable_report_with_defaults(tmp_path, capsys):
    """The public CDNOW sample as published (whitespace separated, no header, $0 orders, no customers file),
    read through the shipped example mapping: every report that needs only customers and orders runs with its
    defaults; the others are skipped."""
    from pco_lib.report import REPO_ROOT

    mapping = REPO_ROOT / "examples" / "cdnow" / "mapping.yml"
    reports = ["data_overview", "cohort_retention", "churn_survival", "clv", "lifecycle_segments",
               "customer_feedback", "ab_test"]
    schedule = tmp_path / "schedule.yml"
    schedule.write_text("runs:\n" + "".join(f"  - {{report: {r}, data: {mapping}}}\n" for r in reports))
    out = tmp_path / "reports"
    code = main(["run-all", "--schedule", str(schedule), "--out", str(out), "-q"])
    printed = capsys.readouterr().out
    assert code == 0 and "5 succeeded, 0 failed, 2 skipped" in printed, printed
    runs = {r["report"]: r for r in list_runs(out)}
    overview = json.loads((out / runs["data_overview"]["folder"] / "results.json").read_text())
    assert overview["customers"] == 2357  # README of the reference data: 2,357 customers, 6,919 transactions
    assert overview["orders"] == 6919
    raw = pd.read_csv(CDNOW, sep=r"\s+", header=None)
    assert overview["revenue"] == pytest.approx(raw[4].sum(), abs=0.01)  # independent sum of the dollars
    assert runs["clv"]["data_period"] == "01 Jan 1997 – 30 Jun 1998"
