"""Data validation: the sample passes; each kind of broken input gets one specific problem."""

import hashlib
import os
import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pco_lib.cli import main
from pco_lib.data import DataError, connect
from pco_lib.data.checks import check_folder


def _hashes(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def folder(tiny_sample, tmp_path):
    """A private copy of the tiny sample, to break."""
    copy = tmp_path / "data"
    shutil.copytree(tiny_sample, copy)
    return copy


def _edit(folder, table, change, as_csv=False):
    df = pd.read_parquet(folder / f"{table}.parquet")
    df = change(df)
    if as_csv:
        (folder / f"{table}.parquet").unlink()
        df.to_csv(folder / f"{table}.csv", index=False)
    else:
        df.to_parquet(folder / f"{table}.parquet", index=False)


def _set(column, value, rows=1):
    def change(df):
        df = df.astype({column: object}) if isinstance(value, str) else df
        df.loc[df.index[:rows], column] = value
        return df
    return change


def _store_float(table, column, value, rows=1):
    """Store ``value`` as is in the first ``rows`` rows (pandas would write NaN as NULL)."""
    def breaks(folder):
        path = folder / f"{table}.parquet"
        stored = pq.read_table(path)
        values = stored.column(column).to_numpy(zero_copy_only=False).astype(float)
        values[:rows] = value
        empty = stored.column(column).is_null().to_numpy(zero_copy_only=False)
        array = pa.array(values, mask=empty, from_pandas=False)
        pq.write_table(stored.set_column(stored.column_names.index(column), column, array), path)
    return breaks


def test_the_sample_passes_and_files_are_not_modified(tiny_sample):
    before = _hashes(tiny_sample)
    report = check_folder(tiny_sample)
    assert report.ok, report.summary()
    assert report.errors == [] and report.warnings == []
    assert set(report.tables[report.tables.present].table) == {
        "customers", "orders", "subscriptions", "events", "assignments", "experiments", "surveys", "leads"}
    assert "OK" in report.summary()
    assert _hashes(tiny_sample) == before


def test_the_same_data_as_csv_passes(folder):
    for path in list(folder.glob("*.parquet")):
        pd.read_parquet(path).to_csv(path.with_suffix(".csv"), index=False)
        path.unlink()
    report = check_folder(folder)
    assert report.ok, report.summary()


TS = pd.Timestamp
CASES = {
    "missing customers file": (lambda f: (f / "customers.parquet").unlink(),
                               ("customers", None, "required table is missing", 0)),
    "missing revenue column": (lambda f: _edit(f, "orders", lambda d: d.drop(columns="revenue")),
                               ("orders", "revenue", "required column is missing", 0)),
    "text in revenue (CSV)": (lambda f: _edit(f, "orders", _set("revenue", "abc"), as_csv=True),
                              ("orders", "revenue", "wrong type: expected a number", 1, "'abc'")),
    "unparseable timestamp (CSV)": (lambda f: _edit(f, "orders", _set("ordered_at", "31/02/2026 25:00", 2),
                                                    as_csv=True),
                                    ("orders", "ordered_at", "unparseable timestamp", 2, "'31/02/2026 25:00'")),
    "duplicate order_id": (lambda f: _edit(f, "orders", lambda d: d.assign(
        order_id=[d.order_id[0], *d.order_id[:-1]])), ("orders", "order_id", "duplicate order_id", 2)),
    "negative revenue": (lambda f: _edit(f, "orders", _set("revenue", -5.0, 3)),
                         ("orders", "revenue", "negative revenue", 3, "-5")),
    "order of an unknown customer": (lambda f: _edit(f, "orders", _set("customer_id", "C_UNKNOWN")),
                                     ("orders", "customer_id", "not found in customers", 1, "'C_UNKNOWN'")),
    "empty customer_id": (lambda f: _edit(f, "orders", _set("customer_id", None)),
                          ("orders", "customer_id", "empty value where one is required", 1)),
    "empty-string customer_id": (lambda f: _edit(f, "orders", _set("customer_id", "", 2)),
                                 ("orders", "customer_id", "empty value where one is required", 2)),
    "blank customer_id (CSV)": (lambda f: _edit(f, "orders", _set("customer_id", "  "), as_csv=True),
                                ("orders", "customer_id", "empty value where one is required", 1)),
    "infinite revenue": (lambda f: _edit(f, "orders", _set("revenue", float("inf"), 2)),
                         ("orders", "revenue", "revenue must be a finite number", 2, "inf")),
    "NaN revenue": (_store_float("orders", "revenue", float("nan")),
                    ("orders", "revenue", "revenue must be a finite number", 1, "nan")),
    "minus infinity revenue": (_store_float("orders", "revenue", -float("inf")),
                               ("orders", "revenue", "revenue must be a finite number", 1, "-inf")),
    "inf revenue (CSV)": (lambda f: _edit(f, "orders", _set("revenue", "inf"), as_csv=True),
                          ("orders", "revenue", "revenue must be a finite number", 1, "inf")),
    "NaN revenue (CSV)": (lambda f: _edit(f, "orders", _set("revenue", "NaN", 3), as_csv=True),
                          ("orders", "revenue", "revenue must be a finite number", 3, "nan")),
    "NaN mrr": (_store_float("subscriptions", "mrr", float("nan"), 2),
                ("subscriptions", "mrr", "mrr must be a finite number", 2, "nan")),
    "-inf mrr (CSV)": (lambda f: _edit(f, "subscriptions", _set("mrr", "-inf"), as_csv=True),
                       ("subscriptions", "mrr", "mrr must be a finite number", 1, "-inf")),
    "future timestamp": (lambda f: _edit(f, "orders", _set("ordered_at", TS("2099-01-01", tz="UTC"))),
                         ("orders", "ordered_at", "timestamp in the future", 1, "2099-01-01")),
    "order before conversion": (lambda f: _edit(f, "orders", _set("ordered_at", TS("2024-01-01", tz="UTC"))),
                                ("orders", "ordered_at", "before the customer's conversion", 1)),
    "two variants of one experiment": (lambda f: _edit(f, "assignments", lambda d: pd.concat(
        [d, d.iloc[[0]].assign(variant="treatment" if d.variant[0] == "control" else "control")])),
        ("assignments", "variant", "more than one variant", 1)),
    "variant not in experiments": (lambda f: _edit(f, "assignments", _set("variant", "blue")),
                                   ("assignments", "variant", "not listed in experiments", 1)),
    "nps of 11": (lambda f: _edit(f, "surveys", _set("nps", 11)),
                  ("surveys", "nps", "NPS must be a whole number from 0 to 10", 1, "11")),
    "empty orders table": (lambda f: _edit(f, "orders", lambda d: d.iloc[:0]),
                           ("orders", None, "the table is empty", 0)),
    "empty customers table (CSV)": (lambda f: _edit(f, "customers", lambda d: d.iloc[:0], as_csv=True),
                                    ("customers", None, "the table is empty", 0)),
    "empty customers file": (lambda f: (f / "customers.parquet").write_bytes(b""),
                             ("customers", None, "the file is empty", 0)),
    "subscription ending before it starts": (lambda f: _edit(f, "subscriptions", _set(
        "ended_at", TS("2024-10-01", tz="UTC"), 1)), ("subscriptions", "ended_at", "ends before it starts", 1)),
    "lead created after conversion": (lambda f: _edit(f, "leads", lambda d: d.assign(created_at=d.created_at.where(
        d.customer_id != d.customer_id.dropna().iloc[0], TS("2026-09-30", tz="UTC")))),
        ("leads", "created_at", "lead created after its customer converted", 1)),
    "two controls": (lambda f: _edit(f, "experiments", lambda d: d.assign(is_control=True)),
                     ("experiments", "is_control", "exactly one control", 3)),
}


@pytest.mark.parametrize("case", CASES)
def test_each_broken_input_gets_one_specific_problem(folder, case):
    breaks, (table, column, rule, rows, *example) = CASES[case]
    breaks(folder)
    before = _hashes(folder)
    report = check_folder(folder, now=TS("2026-11-01", tz="UTC").to_pydatetime())
    assert not report.ok
    assert len(report.errors) == 1, "\n".join(map(str, report.errors))
    problem = report.errors[0]
    assert (problem.table, problem.column, problem.rows) == (table, column, rows)
    assert rule in problem.rule
    if example:
        assert any(example[0] in e for e in problem.examples), problem.examples
    assert problem.file and problem.file.startswith(table)
    assert str(problem) in report.summary()
    assert _hashes(folder) == before, "validation modified an input file"


def test_a_missing_folder_is_a_problem_not_an_exception(tmp_path):
    report = check_folder(tmp_path / "nowhere")
    assert not report.ok and "does not exist" in report.summary()


NOW = TS("2026-11-01", tz="UTC").to_pydatetime()


def _data_check(folder, capsys):
    """``pco data check FOLDER``: the exit code and everything printed."""
    code = main(["data", "check", str(folder)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _csv(folder, table):
    path = folder / f"{table}.parquet"
    pd.read_parquet(path).to_csv(folder / f"{table}.csv", index=False)
    path.unlink()
    return folder / f"{table}.csv"


def test_duplicated_column_names_in_a_csv_header_are_an_error(folder, capsys):
    path = _csv(folder, "orders")
    header, body = path.read_text().split("\n", 1)
    path.write_text(header + ",revenue\n" + body.replace("\n", ",1.0\n"))
    before = _hashes(folder)
    report = check_folder(folder)
    assert [(p.table, p.file, p.column) for p in report.errors] == [("orders", "orders.csv", "revenue")]
    assert "the column name appears 2 times in the file" in report.errors[0].rule
    code, out = _data_check(folder, capsys)
    assert code == 1 and "orders.csv: column revenue: the column name appears 2 times" in out
    assert "revenue_1" not in out and "Traceback" not in out
    assert _hashes(folder) == before


def test_duplicated_column_names_differing_in_case_and_in_parquet(folder):
    stored = pq.read_table(folder / "orders.parquet")
    pq.write_table(stored.append_column("Revenue", stored.column("revenue")), folder / "orders.parquet")
    report = check_folder(folder)
    assert len(report.errors) == 1 and report.errors[0].column == "revenue"
    assert "appears 2 times in the file (as revenue, Revenue" in report.errors[0].rule


def test_two_files_for_one_table_are_an_error_not_a_choice(folder, capsys):
    pd.read_parquet(folder / "orders.parquet").to_csv(folder / "orders.csv", index=False)
    before = _hashes(folder)
    code, out = _data_check(folder, capsys)
    assert code == 1
    assert "orders: both orders.csv and orders.parquet are present; keep one" in out
    with pytest.raises(DataError, match="both orders.csv and orders.parquet are present"):
        connect(folder)
    assert _hashes(folder) == before


@pytest.mark.parametrize("target", ["/etc/passwd", "elsewhere"])
def test_a_link_out_of_the_folder_is_refused_unread(folder, tmp_path, capsys, target):
    if target == "elsewhere":
        outside = tmp_path / "elsewhere" / "orders.csv"
        outside.parent.mkdir()
        pd.read_parquet(folder / "orders.parquet").assign(order_id="SECRET-ORDER").to_csv(outside, index=False)
        target, secret = "../elsewhere/orders.csv", "SECRET-ORDER"
    else:
        secret = "root:"
    (folder / "orders.parquet").unlink()
    os.symlink(target, folder / "orders.csv")
    before = _hashes(folder)
    code, out = _data_check(folder, capsys)
    assert code == 1
    assert "orders.csv: a link to a file outside the data folder; copy the file in instead" in out
    assert secret not in out and "passwd" not in out and "elsewhere" not in out
    assert _hashes(folder) == before


def test_a_link_inside_the_folder_is_read(folder):
    (folder / "orders.parquet").rename(folder / "orders-2026-11.parquet")
    os.symlink("orders-2026-11.parquet", folder / "orders.parquet")
    assert check_folder(folder, now=NOW).ok


def test_a_csv_that_is_not_utf8_names_the_encoding_problem(folder, capsys):
    customers = pd.read_parquet(folder / "customers.parquet")
    customers.loc[4, "country"] = "Müller"
    (folder / "customers.parquet").unlink()
    customers.to_csv(folder / "customers.csv", index=False, encoding="cp1252")
    before = _hashes(folder)
    code, out = _data_check(folder, capsys)
    assert code == 1
    assert "customers.csv: not UTF-8 text (first bad byte at line 6); save it as UTF-8" in out
    assert "Original Line" not in out and "Traceback" not in out  # DuckDB's raw error quotes the line
    assert _hashes(folder) == before


def test_the_first_bad_utf8_byte_is_found_across_read_chunks(tmp_path):
    from pco_lib.data.source import _first_bad_utf8_line

    path = tmp_path / "x.csv"
    chunk = 1 << 20
    path.write_bytes(b"a\n" * (chunk // 2 - 1) + b"x\xc3\xa9" + b"\n\xfc\n")  # "é" straddles the chunk edge
    assert _first_bad_utf8_line(path) == chunk // 2 + 1
    path.write_bytes(b"a\n" * (chunk // 2 - 1) + b"x\xc3\xa9\n")
    assert _first_bad_utf8_line(path) is None


def test_several_file_problems_are_reported_together(folder):
    pd.read_parquet(folder / "orders.parquet").to_csv(folder / "orders.csv", index=False)
    (folder / "events.parquet").unlink()
    os.symlink("/etc/hostname", folder / "events.parquet")
    report = check_folder(folder)
    assert {(p.table, p.file) for p in report.errors} == {("orders", None), ("events", "events.parquet")}
    assert "2 problems found" in report.summary()


@pytest.mark.parametrize("name", ["orders.parquet", "orders.csv"])
def test_a_file_given_for_the_folder_says_so(folder, capsys, name):
    if name.endswith(".csv"):
        _csv(folder, "orders")
    code, out = _data_check(folder / name, capsys)
    assert code == 1
    assert f"{folder / name} is a file, not a data folder; give the folder that holds it ({folder})" in out
    with pytest.raises(DataError, match="is a file, not a data folder"):
        connect(folder / name)


@pytest.mark.parametrize("file", ["events.parquet", "events.csv"])
def test_an_empty_optional_table_is_a_warning_and_counts_as_absent(folder, capsys, file):
    if file.endswith(".csv"):  # not even a header
        (folder / "events.parquet").unlink()
        (folder / file).write_bytes(b"")
    else:
        _edit(folder, "events", lambda d: d.iloc[:0])
    before = _hashes(folder)
    report = check_folder(folder, now=NOW)
    assert report.ok and report.errors == []
    assert [(p.table, p.file, p.rule) for p in report.warnings] == [
        ("events", file, "the table is empty; it counts as absent")]
    assert "events" not in set(report.tables[report.tables.present].table)
    code, out = _data_check(folder, capsys)
    assert code == 0
    assert f"{file}: the table is empty; it counts as absent" in out
    assert "not present (optional): events" in out
    assert _hashes(folder) == before


def test_row_counts_print_as_whole_numbers_beside_an_absent_table(folder, capsys):
    (folder / "events.parquet").unlink()
    code, out = _data_check(folder, capsys)
    assert code == 0 and "not present (optional): events" in out
    orders = len(pd.read_parquet(folder / "orders.parquet"))
    assert f"{orders:,} rows" in out and ".0 rows" not in out
    tables = check_folder(folder, now=NOW).tables
    assert str(tables.rows.dtype) == "Int64"


def test_a_validation_is_remembered_per_version_of_the_data(folder, tmp_path, monkeypatch):
    """Once per version of the data: the same files give the remembered outcome (problems and table counts
    equal to a fresh validation's), a touched file or a rule code change is a new key, and without a cache
    folder nothing is remembered."""
    from pco_lib.data import checks

    calls = []
    fresh = checks.check_source
    monkeypatch.setattr(checks, "check_source", lambda *a, **k: calls.append(1) or fresh(*a, **k))
    monkeypatch.delenv(checks.CACHE_ENV, raising=False)
    cache = tmp_path / "cache"
    _edit(folder, "orders", _set("revenue", -1.0))  # a problem, so the problems round-trip too
    first, hit = checks.check_source_cached(connect(folder), cache)
    again, hit_again = checks.check_source_cached(connect(folder), cache, location="elsewhere")
    assert (hit, hit_again, len(calls)) == (False, True, 1) and len(list(cache.glob("checks-*.json"))) == 1
    assert again.problems == first.problems and not again.ok and again.location == "elsewhere"
    pd.testing.assert_frame_equal(again.tables, first.tables)
    assert again.summary().replace("elsewhere", str(folder)) == first.summary()

    stat = (folder / "orders.parquet").stat()
    os.utime(folder / "orders.parquet", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert checks.check_source_cached(connect(folder), cache)[1] is False and len(calls) == 2
    monkeypatch.setenv(checks.CACHE_ENV, str(cache))
    assert checks.check_source_cached(connect(folder))[1] is True  # the kernel finds the runner's cache
    monkeypatch.delenv(checks.CACHE_ENV)
    assert checks.check_source_cached(connect(folder))[1] is False and len(calls) == 3


def test_a_validation_with_timestamps_in_the_future_is_not_remembered(folder, tmp_path):
    """Such an outcome changes as time passes, so it is done again every time."""
    from pco_lib.data import checks

    _edit(folder, "orders", _set("ordered_at", pd.Timestamp("2100-01-01", tz="UTC")))
    report, _ = checks.check_source_cached(connect(folder), tmp_path / "cache")
    assert any(p.rule.startswith("timestamp in the future") for p in report.problems)
    assert not list((tmp_path / "cache").glob("checks-*.json"))
