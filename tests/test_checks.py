"""Data validation: the sample passes; each kind of broken input gets one specific problem."""

import hashlib
import shutil

import pandas as pd
import pytest

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
