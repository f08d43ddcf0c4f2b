"""Your data, not ours: parameters with choices and bounds, what each report needs, output file names and write
failures — all decided before any kernel starts."""

import errno
import json
import os
import subprocess
import sys
from html import unescape

import pytest

from pco_lib.cli import main
from pco_lib.report import ReportError, list_runs, run_report
from pco_lib.report.needs import Needs, plan_run
from pco_lib.report.params import ParameterError, parse_parameters_source

# report, parameter, value (as on the command line), the message (a fragment of it)
BAD_PARAMETERS = [
    ("clv", "time_unit", "W", "'W' is not one of day, week, month"),
    ("cohort_retention", "period", "fortnight", "'fortnight' is not one of week, month, quarter"),
    ("churn_survival", "correction", "foo", "'foo' is not one of holm, bh, none"),
    ("clv", "model", "nbd", "'nbd' is not one of bgnbd, mbgnbd, pareto"),
    ("churn_survival", "churn_definition", "sometimes", "is not one of auto, contractual, non_contractual"),
    ("cohort_retention", "activity", "click", "'click' is not one of order, event, subscription"),
    ("customer_feedback", "period", "week", "'week' is not one of month, quarter"),
    ("ab_test", "metrics", "repeat,foo", "'foo' is not one of repeat, retained, revenue"),
    ("ab_test", "guardrails", "bar", "'bar' is not one of repeat"),
    ("clv", "min_cell_size", "-1", "must satisfy min_cell_size ≥ 1 (got -1)"),
    ("ab_test", "alpha", "1.5", "must satisfy 0 < alpha < 0.5 (got 1.5)"),
    ("cohort_retention", "alpha", "0", "must satisfy 0 < alpha < 0.5 (got 0.0)"),
    ("clv", "horizon", "0", "must satisfy horizon > 0 (got 0)"),
    ("ab_test", "window_days", "-30", "must satisfy window_days > 0"),
    ("lifecycle_segments", "vip_share", "1.0", "must satisfy 0 < vip_share < 1"),
    ("clv", "discount_rate", "-0.1", "must satisfy 0 ≤ discount_rate < 1"),
    ("clv", "calibration_end", "yesterday", "must be a date written YYYY-MM-DD or \"\", not 'yesterday'"),
    ("lifecycle_segments", "as_of", "2026-13-01", "must be a date written YYYY-MM-DD"),
    ("cohort_retention", "change_date", "01/10/2025", "must be a date written YYYY-MM-DD"),
    ("data_overview", "segment", "region", "'region' is not a column of customers (customers has customer_id"),
    ("churn_survival", "covariates", "plan,region", "'region' is not a column of customers or subscriptions"),
    ("ab_test", "segments", "device,zip", "'zip' is not a column of customers"),
    ("clv", "data_dir", "/tmp", "the data is given twice (--data and -p data_dir)"),
    ("data_overview", "months", "many", "'many' is not a valid int"),
]

# the files a report writes are plain names inside the run folder
OUTPUT_ESCAPES = [
    ("clv", "values_csv", "/tmp/customer_value.csv"),
    ("churn_survival", "risk_csv", "../churn_risk.csv"),
    ("lifecycle_segments", "contacts_csv", "exports/contacts.csv"),
    ("lifecycle_segments", "lookalike_csv", ".."),
    ("churn_survival", "risk_csv", "~/risk.csv"),
    ("clv", "values_csv", "report.html"),
]


@pytest.mark.parametrize("report, name, value, message", BAD_PARAMETERS, ids=lambda v: str(v)[:24])
def test_a_bad_parameter_exits_2_before_any_kernel(report, name, value, message, tiny_sample, tmp_path, no_kernel,
                                                    capsys):
    out = tmp_path / "reports"
    assert main(["run", report, "--data", str(tiny_sample), "--out", str(out), "-p", name, value]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("report, name, value", OUTPUT_ESCAPES)
def test_an_output_file_outside_the_run_folder_exits_2(report, name, value, tiny_sample, tmp_path, no_kernel, capsys):
    out = tmp_path / "reports"
    assert main(["run", report, "--data", str(tiny_sample), "--out", str(out), "-p", name, value]) == 2
    err = capsys.readouterr().err
    assert f"parameter {name!r}" in err and ("plain file name" in err or "the run's own files" in err), err
    assert not out.exists()


def test_rules_are_read_from_the_help_text():
    params = {p.name: p for p in parse_parameters_source(
        'a: float = 0.05  # level {0 < x < 0.5}\n'
        'b: int = 1  # at least one {x ≥ 1}\n'
        'c: str = ""  # a date {date or ""}\n'
        'd: list[str] = ["red"]  # words {red, blue}\n'
        'e: str = "plan"  # a column {customers/subscriptions column or ""}\n'
        'f: int = 3  # no rule\n'
        'g: str = ""  # money {currency or ""}\n')}
    assert (params["a"].rule.low, params["a"].rule.high) == (0, 0.5)
    assert params["b"].rule.low_inclusive and params["b"].convert("1") == 1
    assert params["c"].convert("") == "" and params["c"].convert("2026-01-31") == "2026-01-31"
    assert params["d"].convert("blue,red") == ["blue", "red"]
    assert params["e"].rule.kind == "column" and params["e"].rule.tables == ("customers", "subscriptions")
    assert params["f"].rule is None
    with pytest.raises(ParameterError, match="'green' is not one of red, blue"):
        params["d"].convert("red,green")
    with pytest.raises(ParameterError, match="must satisfy b ≥ 1"):
        params["b"].convert(0)
    assert params["g"].convert("EUR") == "EUR" and params["g"].convert("") == ""
    with pytest.raises(ParameterError, match="'g': 'euro' is not a currency code"):
        params["g"].convert("euro")


@pytest.mark.parametrize("source, message", [
    ("a: int = 0  # {x > 0}", "must satisfy a > 0"),  # the default itself must be valid
    ("a: int = 1  # {x >= 1}", "write bounds as"),  # Papermill cannot read a line with a second "="
])
def test_a_rule_the_default_breaks_or_that_cannot_be_read_is_an_error(source, message):
    with pytest.raises(ParameterError, match=message):
        parse_parameters_source(source)


def test_papermill_can_read_every_parameter_line():
    """Papermill drops a parameter whose line has a second '=' (with a warning): rules use ≤ and ≥."""
    import papermill

    from pco_lib.report import list_reports, notebook_parameters

    for name, path in list_reports().items():
        assert len(papermill.inspect_notebook(str(path))) == len(notebook_parameters(path)), name


class FakeSource:
    def __init__(self, tables):
        self.tables = tables

    def has(self, name):
        return name in self.tables

    def table(self, name):
        return type("T", (), {"columns": self.tables[name]})()


def test_a_missing_table_names_the_report_the_tables_and_the_folder():
    source = FakeSource({"customers": ["customer_id", "converted_at"], "orders": ["order_id"]})
    needs = Needs(("customers", "orders", "assignments", "experiments"))
    plan = plan_run("ab_test", needs, [], {}, set(), source, "/data/shop")
    assert plan.missing.startswith("ab_test needs assignments and experiments; /data/shop has neither (add "
                                   "assignments.parquet or assignments.csv (experiment_id, customer_id")
    when = Needs(("customers",), {"activity=event": ("events",)})
    assert plan_run("r", when, [], {"activity": "order"}, set(), source, "x").missing is None
    assert plan_run("r", when, [], {"activity": "event"}, set(), source, "x").missing.startswith(
        "r with activity event needs events; x has no events table")


def test_a_default_column_that_does_not_exist_is_left_out_with_a_note():
    schema = parse_parameters_source('segment: str = "channel"  # {customers column or ""}\n'
                                     'covariates: list[str] = ["plan", "country"]  # {customers column}\n')
    source = FakeSource({"customers": ["customer_id", "converted_at", "country"]})
    values = {"segment": "channel", "covariates": ["plan", "country"]}
    plan = plan_run("r", Needs(), schema, values, set(), source, "x")
    assert plan.values == {"segment": "", "covariates": ["country"]}
    assert plan.notes[0].startswith("The breakdown by channel (segment) is left out: it is not a column of customers"
                                    " (customers has customer_id, converted_at, country)")
    assert plan.notes[1].startswith("Plan is left out of covariates")
    with pytest.raises(ParameterError, match="'channel' is not a column of customers"):
        plan_run("r", Needs(), schema, values, {"segment"}, source, "x")  # asked for: an error


def test_only_required_columns_every_report_that_can_runs_and_the_rest_are_skipped(minimal_data, tmp_path, capsys):
    """The acceptance test of a new user's export: run-all exits 0, the reports that need other tables are
    skipped (summary and index), the others say on the page what they left out."""
    schedule = tmp_path / "schedule.yml"
    schedule.write_text("runs:\n" + "".join(
        f"  - {{name: {name}, report: {report}, data: {minimal_data}}}\n" for name, report in [
            ("data_overview", "data_overview"), ("cohort_retention", "cohort_retention"),
            ("churn_survival", "churn_survival"), ("clv", "clv"), ("lifecycle_segments", "lifecycle_segments"),
            ("customer_feedback", "customer_feedback"), ("ab_test_onboarding_email", "ab_test")]))
    out = tmp_path / "reports"
    # one at a time: two more interpreters to import pco would cost the suite CPU (side by side is tested in
    # test_report)
    code = main(["run-all", "--schedule", str(schedule), "--out", str(out), "-j", "1", "-q"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "5 succeeded, 0 failed, 2 skipped" in printed
    assert "ab_test needs assignments and experiments" in printed and "customer_feedback needs surveys" in printed
    runs = {r["report"]: r for r in list_runs(out)}
    assert set(runs) == {"data_overview", "cohort_retention", "churn_survival", "clv", "lifecycle_segments"}
    assert all(r["status"] == "succeeded" for r in runs.values())
    index = (out / "index.html").read_text()
    assert "skipped" in index and "ab_test_onboarding_email" in index and "needs surveys" in index

    clv = runs["clv"]
    assert clv["parameters"]["segment"] == "channel" and clv["parameters_used"]["segment"] == ""
    results = json.loads((out / clv["folder"] / "results.json").read_text())
    assert results["contractual"] is None
    assert any(n.startswith("There is no subscriptions table") for n in results["notes"])
    html = unescape((out / clv["folder"] / "report.html").read_text())
    assert "The breakdown by channel (segment) is left out" in html and '"" (used; channel given)' in html

    churn = json.loads((out / runs["churn_survival"]["folder"] / "results.json").read_text())
    assert any("Churn is non-contractual here" in n for n in churn["notes"])
    assert runs["churn_survival"]["parameters_used"]["covariates"] == []
    lifecycle = json.loads((out / runs["lifecycle_segments"]["folder"] / "results.json").read_text())
    assert lifecycle["lead_conversion"] is None and lifecycle["stage_counts"]["lead"] is None


def test_pco_run_of_a_report_whose_table_is_missing_exits_1_and_publishes_nothing(minimal_data, tmp_path, no_kernel,
                                                                                  capsys):
    out = tmp_path / "reports"
    assert main(["run", "ab_test", "--data", str(minimal_data), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"ab_test needs assignments and experiments; {minimal_data} has neither" in err
    assert not out.exists()
    assert main(["run", "cohort_retention", "--data", str(minimal_data), "--out", str(out), "-p", "activity",
                 "event"]) == 1
    assert "cohort_retention with activity event needs events" in capsys.readouterr().err


def test_pco_data_is_the_data_of_a_run_that_names_none(minimal_data, tmp_path, no_kernel, monkeypatch, capsys):
    """$PCO_DATA is read when neither --data nor -p data_dir is given (a relative path from where pco runs);
    without it the sample is; connect("") in a notebook reads the same."""
    from pco_lib.data.source import SAMPLE_DIR, connect, default_data

    monkeypatch.delenv("PCO_DATA", raising=False)  # conftest points it at the tiny sample for nbval
    assert default_data() == str(SAMPLE_DIR)
    monkeypatch.chdir(minimal_data.parent)
    monkeypatch.setenv("PCO_DATA", minimal_data.name)
    assert default_data() == str(minimal_data)
    assert set(connect("").names) == {"customers", "orders"}
    assert main(["run", "ab_test", "--out", str(tmp_path / "reports")]) == 1
    assert f"{minimal_data} has neither" in capsys.readouterr().err  # the runner resolved $PCO_DATA
    monkeypatch.setenv("PCO_DATA", "env:PCO_TEST_WAREHOUSE")
    assert default_data() == "env:PCO_TEST_WAREHOUSE"


def _fake_papermill(monkeypatch, effect=None):
    """Papermill without a kernel: the 'executed' notebook is the input, then ``effect(output_path)``."""
    import shutil

    import papermill

    def execute(input_path, output_path, **kwargs):
        shutil.copy(input_path, output_path)
        if effect:
            effect(output_path)

    monkeypatch.setattr(papermill, "execute_notebook", execute)


def test_a_full_disk_is_one_clear_line_and_leaves_no_staging_folder(tiny_sample, tmp_path, monkeypatch, capsys):
    from pco_lib.report import runner

    _fake_papermill(monkeypatch)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runner, "export_html", full)
    out = tmp_path / "reports"
    assert main(["run", "data_overview", "--data", str(tiny_sample), "--out", str(out), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "nothing was published" in err
    assert not list((out / "data_overview").iterdir())  # no staging folder, no run


def test_a_vanished_output_folder_is_one_clear_line(tiny_sample, tmp_path, monkeypatch, capsys):
    import shutil

    out = tmp_path / "reports"
    _fake_papermill(monkeypatch, lambda path: shutil.rmtree(out))
    assert main(["run", "data_overview", "--data", str(tiny_sample), "--out", str(out), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pco: error: cannot write the report to") and "Traceback" not in err


def test_staging_folders_of_killed_runs_are_removed_by_the_next_run(tiny_sample, tmp_path, monkeypatch):
    _fake_papermill(monkeypatch)
    out = tmp_path / "reports"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = out / "data_overview" / ".tmp-20260101T000000Z-dead"
    running = out / "data_overview" / ".tmp-20260101T000000Z-live"
    old = out / "data_overview" / ".tmp-20250101T000000Z-old"
    for folder in (left, running, old):
        folder.mkdir(parents=True)
    (left / ".owner").write_text(f"{os.uname().nodename} {dead.pid}\n")
    (running / ".owner").write_text(f"{os.uname().nodename} {os.getpid()}\n")  # a run still going
    os.utime(old, (0, 0))  # no owner, a year old
    result = run_report("data_overview", data_dir=tiny_sample, out_dir=out)
    assert result.folder.exists() and not (result.folder / ".owner").exists()
    assert not left.exists() and not old.exists() and running.exists()


def test_the_runs_of_one_reports_folder_validate_the_same_data_once(tiny_sample, tmp_path, monkeypatch):
    """run-all's runs (and data_overview's kernel) share one validation per version of the data."""
    from pco_lib.data import checks
    from pco_lib.report import runner

    monkeypatch.setattr(runner, "CHECK_CACHE", ".cache")  # the suite shares one (conftest's shared_check_cache)
    calls, seen = [], []
    fresh = checks.check_source
    monkeypatch.setattr(checks, "check_source", lambda *a, **k: calls.append(1) or fresh(*a, **k))
    _fake_papermill(monkeypatch, lambda path: seen.append(os.environ.get(checks.CACHE_ENV)))
    out = tmp_path / "reports"
    for report in ("data_overview", "cohort_retention"):
        assert run_report(report, data_dir=tiny_sample, out_dir=out).ok
    assert len(calls) == 1 and seen == [str(out / ".cache")] * 2
    assert run_report("data_overview", data_dir=tiny_sample, out_dir=tmp_path / "other").ok and len(calls) == 2
    assert all(entry["run_id"] for entry in list_runs(out))  # the cache folder is not taken for a report


def test_a_table_every_folder_needs_is_a_validation_error_not_a_skip(minimal_data, tmp_path, no_kernel):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(minimal_data, bad)
    (bad / "orders.parquet").unlink()
    with pytest.raises(ReportError, match="did not pass validation") as caught:
        run_report("clv", data_dir=bad, out_dir=tmp_path / "reports")
    assert not caught.value.skipped


def test_pco_list_shows_needs_choices_and_bounds(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["list"]) == 0
    printed = capsys.readouterr().out
    assert max(len(line) for line in printed.splitlines()) <= 100  # wrapped to the terminal
    assert "needs customers, surveys; uses subscriptions when present" in printed
    assert "{holm, bh, none}" in printed and "{0 < x < 0.5}" in printed

