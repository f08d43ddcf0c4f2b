"""The report runner: parameter checks before the kernel, publishing, failure safety, the index."""

import json
import os
import shutil

import nbformat
import pytest

from pco_lib import report as report_mod
from pco_lib.cli import main
from pco_lib.report import ReportError, collect_results, latest_good_run, list_runs, run_report
from pco_lib.report.params import ParameterError


def _write_notebook(path, params_source, body):
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params_source)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), p, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


@pytest.fixture
def toy_notebooks(tmp_path, monkeypatch):
    """A notebooks folder with a report that records a value and raises when asked to."""
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    _write_notebook(
        nb_dir / "toy.ipynb",
        'value: int = 1  # a number to record\nfail: bool = False  # raise an error',
        'from pco_lib.report import record\nrecord("value", value)\nrecord("nested.half", value / 2)\n'
        'if fail:\n    raise RuntimeError("asked to fail")',
    )
    monkeypatch.setenv("PCO_NOTEBOOKS", str(nb_dir))
    return nb_dir


def test_collect_results_nests_dotted_keys():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={report_mod.RESULT_MIME: {"key": "a.b", "value": 1}}),
        nbformat.v4.new_output("display_data", data={report_mod.RESULT_MIME: {"key": "c", "value": [1, 2]}}),
        nbformat.v4.new_output("display_data", data={"text/plain": "ignored"}),
    ]
    nb.cells = [cell]
    assert collect_results(nb) == {"a": {"b": 1}, "c": [1, 2]}


@pytest.mark.parametrize("args, message", [
    (["run", "toy", "-p", "nope", "1"], "has no parameter 'nope'"),
    (["run", "toy", "-p", "value", "abc"], "'abc' is not a valid int"),
    (["run", "missing_report"], "no report named 'missing_report'"),
])
def test_bad_run_requests_exit_2_before_a_kernel_starts(toy_notebooks, no_kernel, tmp_path, capsys, args,
                                                        message):
    out = tmp_path / "reports"
    assert main(args + ["--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.rglob("manifest.json"))


def test_a_failed_run_keeps_the_previous_good_run_and_is_marked_on_the_index(toy_notebooks, tmp_path, capsys):
    out = tmp_path / "reports"
    good = run_report("toy", out_dir=out, params={"value": 4})
    assert good.ok and good.results == {"value": 4, "nested": {"half": 2.0}}
    before = {p.name: p.read_bytes() for p in good.folder.iterdir()}

    assert main(["run", "toy", "--out", str(out), "-q", "-p", "fail", "true"]) == 1
    assert "asked to fail" in capsys.readouterr().err

    assert {p.name: p.read_bytes() for p in good.folder.iterdir()} == before
    runs = list_runs(out)
    assert [r["status"] for r in runs] == ["failed", "succeeded"]
    failed = out / runs[0]["folder"]
    assert (failed / "report.ipynb").exists() and (failed / "report.html").exists()
    assert "RuntimeError: asked to fail" in runs[0]["error"]
    page = (failed / "report.html").read_text()
    assert "This run failed: cell 3: RuntimeError: asked to fail." in page and 'href="report.ipynb"' in page
    assert "Traceback" not in page and "raise RuntimeError" not in page  # one sentence, no traceback
    assert latest_good_run(out, "toy")["run_id"] == good.run_id
    index = (out / "index.html").read_text()
    assert "failed" in index and f"{good.folder.name}/report.html" in index
    assert not list(out.glob("toy/.tmp-*")), "a staging folder was left behind"


def test_manifest_records_parameters_versions_and_timing(toy_notebooks, tmp_path):
    result = run_report("toy", out_dir=tmp_path, params={"value": "7"})
    manifest = json.loads((result.folder / "manifest.json").read_text())
    assert manifest["parameters"] == {"value": 7, "fail": False}
    assert manifest["status"] == "succeeded" and manifest["report"] == "toy"
    assert {"python", "pandas", "papermill"} <= set(manifest["versions"])
    assert manifest["duration_s"] > 0
    assert json.loads((result.folder / "results.json").read_text())["value"] == 7
    html = (result.folder / "report.html").read_text()
    assert "from pco_lib.report import record" not in html, "code is visible in the HTML"


def test_unwritable_output_folder_is_a_clear_error(toy_notebooks, tmp_path, no_kernel):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ReportError, match="cannot write reports"):
        run_report("toy", out_dir=blocker / "reports")


def test_invalid_data_stops_the_run_before_the_kernel(tmp_path, tiny_sample, no_kernel, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_sample, bad)
    (bad / "orders.parquet").unlink()
    out = tmp_path / "reports"
    assert main(["run", "data_overview", "--data", str(bad), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "did not pass validation" in err and "orders" in err
    assert not any(out.rglob("manifest.json"))


def test_run_all_goes_on_past_a_failure_and_exits_1(toy_notebooks, tmp_path, capsys):
    schedule = tmp_path / "schedule.yml"
    schedule.write_text(
        "runs:\n"
        "  - {name: bad, report: toy, parameters: {fail: true}}\n"
        "  - {name: good, report: toy, parameters: {value: 3}}\n"
    )
    out = tmp_path / "reports"
    assert main(["run-all", "--schedule", str(schedule), "--out", str(out), "-q"]) == 1
    printed = capsys.readouterr().out
    assert "1 succeeded, 1 failed" in printed
    runs = list_runs(out)
    assert sorted(r["status"] for r in runs) == ["failed", "succeeded"]
    assert {r["run_name"]: r["status"] for r in runs} == {"bad": "failed", "good": "succeeded"}
    index = (out / "index.html").read_text()
    assert "<a href='#bad'>bad</a>" in index and "<a href='#good'>good</a>" in index  # a row per scheduled run
    assert "name='viewport'" in index
    page = (out / next(r for r in runs if r["run_name"] == "good")["folder"] / "report.html").read_text()
    assert 'href="../../index.html"' in page and 'href="results.json"' in page and 'href="report.ipynb"' in page


def test_run_all_runs_side_by_side_without_clobbering(toy_notebooks, tmp_path, capsys, monkeypatch):
    schedule = tmp_path / "schedule.yml"
    schedule.write_text("runs:\n" + "".join(f"  - {{name: r{i}, report: toy, parameters: {{value: {i}}}}}\n"
                                             for i in range(2)))
    monkeypatch.chdir(tmp_path)  # relative paths must survive Papermill changing the working directory
    out = tmp_path / "reports"
    assert main(["run-all", "--schedule", "schedule.yml", "--out", "reports", "--jobs", "2", "-q"]) == 0
    runs = list_runs(out)
    assert len(runs) == 2 and {r["parameters"]["value"] for r in runs} == {0, 1}
    assert len({r["run_id"] for r in runs}) == 2 and not list((out / "toy").glob(".tmp-*"))
    index = (out / "index.html").read_text()
    assert all(r["run_id"] in index for r in runs)
    assert "2 succeeded, 0 failed" in capsys.readouterr().out


@pytest.mark.skipif(os.name != "posix", reason="Unix sockets")
def test_kernels_talk_over_private_unix_sockets_not_tcp_ports(tmp_path):
    """Over TCP two kernels starting at once can pick the same free port ("Address already in use", then
    "Kernel died before replying to kernel_info": seen in CI with run-all -j 2); Unix sockets cannot clash."""
    from pco_lib.report.runner import _kernel_config

    with _kernel_config(tmp_path) as first, _kernel_config(tmp_path) as second:
        assert os.environ["PCO_CHECK_CACHE"] == str(tmp_path)  # the kernel finds the runner's validation
        ips = [c.KernelManager.ip for c in (first, second)]
        assert first.KernelManager.transport == second.KernelManager.transport == "ipc"
        assert ips[0] != ips[1] and all(os.path.isdir(os.path.dirname(ip)) for ip in ips)
        assert all(len(ip) + 3 < 100 for ip in ips)  # a Unix socket path must stay under 104-108 bytes
    assert not any(os.path.exists(os.path.dirname(ip)) for ip in ips)  # removed with the run
    assert "PCO_CHECK_CACHE" not in os.environ


@pytest.mark.parametrize("text, message", [
    ("runs: []", "no runs listed"),
    ("runs:\n  - {name: x}", "needs at least a 'report'"),
    ("runs:\n  - {report: toy, colour: red}", "unknown keys"),
    ("runs: [", "not valid YAML"),
])
def test_bad_schedule_files_exit_2(toy_notebooks, tmp_path, capsys, text, message):
    schedule = tmp_path / "schedule.yml"
    schedule.write_text(text)
    assert main(["run-all", "--schedule", str(schedule), "--out", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err


def test_schedule_parameters_are_checked(toy_notebooks, tmp_path, no_kernel):
    with pytest.raises(ParameterError, match="not a valid int"):
        run_report("toy", out_dir=tmp_path, params={"value": "x"})


def test_a_killed_run_publishes_nothing_and_keeps_the_last_good_run(toy_notebooks, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    _write_notebook(toy_notebooks / "slow.ipynb", "seconds: int = 120  # how long to work",
                    "import os, pathlib, time\npathlib.Path('kernel-working').write_text(str(os.getpid()))\n"
                    "time.sleep(seconds)")
    out = tmp_path / "reports"
    good = run_report("toy", out_dir=out)
    index_before = (out / "index.html").read_text()
    proc = subprocess.Popen([sys.executable, "-m", "pco_lib.cli", "run", "slow", "--out", str(out), "-q"],
                            start_new_session=True)
    deadline = time.time() + 60
    while not list((out / "slow").glob(".tmp-*/kernel-working")) and time.time() < deadline:
        time.sleep(0.2)  # wait until the kernel is working (it runs in the staging folder)
    assert time.time() < deadline, "the kernel never started working"
    assert proc.poll() is None, "the slow run ended before it could be killed"
    kernel = int(next((out / "slow").glob(".tmp-*/kernel-working")).read_text())
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while _alive(kernel) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(kernel), "the kernel of the killed run is still working"
    assert [r["report"] for r in list_runs(out)] == ["toy"]  # the killed run is not published
    assert (out / "index.html").read_text() == index_before
    assert (good.folder / "report.html").exists() and latest_good_run(out, "toy")["run_id"] == good.run_id


def test_runs_started_within_one_second_are_listed_newest_first(tmp_path):
    """Forked test kernels made two runs a second apart common: their order comes from the microseconds of
    started_at, not from their random run ids; a manifest of an earlier version (whole seconds) still sorts."""
    started = {"a1": "2026-12-02T04:00:00.900000+00:00", "z0": "2026-12-02T04:00:00.100000+00:00",
               "old": "2026-12-02T03:59:59+00:00", "bad": "yesterday"}
    for run_id, at in started.items():
        folder = tmp_path / "toy" / run_id
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps({"report": "toy", "run_id": run_id, "started_at": at}))
    assert [r["run_id"] for r in list_runs(tmp_path)] == ["a1", "z0", "old", "bad"]


def _alive(pid: int) -> bool:
    """Whether the process runs (a zombie, ended but not yet reaped by whoever adopted it, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def test_the_header_shows_a_parameter_as_used_beside_the_value_given(tmp_path):
    """A report that could not use a parameter as given (clv: the holdout runs from calibration_end to the end
    of the data, whatever holdout_days says) records ``parameters_used``; the header shows both."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A report\n\n## Section")]
    path = tmp_path / "report.ipynb"
    nbformat.write(nb, str(path))
    manifest = {"report": "clv", "run_id": "r", "status": "succeeded", "started_at": "2026-12-01T12:00:00+00:00",
                "parameters": {"holdout_days": 182, "segment": "channel"}, "parameters_used": {"holdout_days": 273}}
    report_mod.export_html(path, tmp_path / "report.html", manifest)
    text = (tmp_path / "report.html").read_text()
    assert "273 (used; 182 given)" in text and "channel" in text and "channel (used" not in text


def test_tables_show_human_labels_and_p_values_as_people_read_them():
    import pandas as pd

    from pco_lib.report import styled

    frame = pd.DataFrame({"metric": ["Repeat purchase"], "variant": ["treatment"], "p_value": [1.02e-8],
                          "relative_p_value_adjusted": [0.0456], "relative": [0.181], "guardrail": ["fail"],
                          "odd_column": [float("nan")]})
    html = styled(frame, {"relative": "{:+.1%}"}, styles={"guardrail": lambda v: "color: red"}).to_html()
    assert all(f">{text}</th>" in html for text in ("Metric", "Arm", "p-value", "Lift p-value (adjusted)",
                                                      "Relative lift", "Guardrail", "Odd column"))
    assert ">&lt; 0.001</td>" in html and ">0.046</td>" in html and ">+18.1%</td>" in html and ">–</td>" in html
    assert "color: red" in html and "p_value" not in html and "e-08" not in html


def test_a_page_keeps_only_the_css_it_can_use():
    """Rules naming a class the page does not use are dropped (inside @media too), :not(.absent) still
    matches, unused custom properties go unless a kept rule or property uses them; small sheets are kept."""
    from pco_lib.report.html import PRUNE_ABOVE, slim_page

    big = (":root { --used: red; --chain: var(--used2); --used2: 1px; --unused: url('data:x;y'); }\n"
           ".a { color: var(--used); } .gone { color: blue; } .a .gone, .b { border: var(--chain); }\n"
           "p:not(.absent) { margin: 0; } @media print { .gone { x: 1 } .a { y: 2 } } @keyframes k { }\n")
    big += "/*" + "x" * PRUNE_ABOVE + "*/"
    small = ".gone { kept: yes; }"
    page = (f"<html><style>{big}</style><style>{small}</style><body><p class='a'>x</p><div class=\"b c\"></div>"
            "</body></html>")
    slim = slim_page(page)
    assert ".a{color: var(--used);}" in slim and ".a .gone, .b{" in slim and "p:not(.absent){" in slim
    assert "@media print{.a{y: 2}}" in slim and ".gone { color: blue; }" not in slim and "@keyframes" not in slim
    assert "--used: red" in slim and "--used2: 1px" in slim and "--chain" in slim and "--unused" not in slim
    assert small in slim and "xxxx" not in slim


def test_figures_get_alt_text_from_what_they_show_and_a_sharp_small_png():
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from pco_lib.report.plots import PNG_SCALE, _png_with_description, describe

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3), dpi=100)
    left.plot([1, 2], label="control")
    left.plot([2, 1], label="treatment")
    left.set(title="Still active", xlabel="days", ylabel="share")
    left.legend()
    right.set(xlabel="months")
    assert describe(fig) == "Still active: share by days. Series: control, treatment. months."
    data, meta = _png_with_description(fig)
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    assert image.mode == "P" and meta["alt"] == describe(fig)  # quantized to a palette
    assert abs(image.size[0] / meta["width"] - PNG_SCALE) < 0.01 and meta["width"] <= 800


def test_a_heatmap_of_many_cohorts_shows_the_most_recent_and_says_so():
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from pco_lib.report.plots import HEATMAP_ROWS, retention_heatmap

    cohorts = pd.date_range("2024-01-01", periods=HEATMAP_ROWS + 14, freq="W-MON")
    matrix = pd.DataFrame(0.5, index=cohorts, columns=range(4))
    fig = retention_heatmap(matrix, pd.Series(10, index=cohorts), "week", title="Share active")
    ax = fig.axes[0]
    assert ax.get_title() == f"Share active (the {HEATMAP_ROWS} most recent of {HEATMAP_ROWS + 14} cohorts)"
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == HEATMAP_ROWS and labels[-1].startswith(f"{cohorts[-1]:%Y-%m-%d}"[:4])


def test_headline_changes_flag_new_words_and_numbers_outside_the_previous_interval():
    from pco_lib.report.changes import headline_changes

    def h(key, value, low=None, high=None):
        extra = {"low": low, "high": high, "low_shown": f"{low:+.0f}", "high_shown": f"{high:+.0f}"} \
            if low is not None else {}
        return {"key": key, "label": key.upper(), "value": value,
                "shown": value if isinstance(value, str) else f"{value:+.0f}", **extra}

    before = [h("verdict", "keep running"), h("nps", 31.0, 25.0, 37.0), h("answers", 900.0)]
    assert headline_changes(before, [h("verdict", "keep running"), h("nps", 36.0), h("answers", 2000.0)]) == []
    assert headline_changes(before, [h("verdict", "ship"), h("nps", 45.0), h("new", 1.0)]) == [
        "VERDICT: keep running → ship", "NPS: +31 → +45, outside the previous interval (+25 to +37)"]


def test_run_all_says_what_changed_since_the_previous_good_run(tmp_path, monkeypatch, capsys):
    """Two scheduled runs of one entry: the second's verdict and score differ; run-all prints it, writes it as
    JSON for alerts, and the index shows the latest headlines with the change."""
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    _write_notebook(nb_dir / "score.ipynb", 'value: float = 30.0  # the score\nverdict: str = "keep running"  # x',
                    'from pco_lib.report import record_headlines\nrecord_headlines([("verdict", verdict, "Verdict"),'
                    ' ("nps", value, "NPS", "+.0f", (value - 5, value + 5))])')
    monkeypatch.setenv("PCO_NOTEBOOKS", str(nb_dir))
    out, changes = tmp_path / "reports", tmp_path / "changes.json"
    for value, verdict in ((30, "keep running"), (45, "ship")):
        schedule = tmp_path / "schedule.yml"
        schedule.write_text(f"runs:\n  - {{name: nps_weekly, report: score, parameters: {{value: {value}, "
                            f"verdict: {verdict}}}}}\n")
        assert main(["run-all", "--schedule", str(schedule), "--out", str(out), "-q", "--changes",
                     str(changes)]) == 0
    printed = capsys.readouterr().out
    assert "nps_weekly: Verdict: keep running → ship; NPS: +30 → +45, outside the previous interval (+25 to +35)" \
        in printed
    written = json.loads(changes.read_text())
    assert [c["run"] for c in written] == ["nps_weekly"] and len(written[0]["changes"]) == 2
    assert written[0]["previous_run_id"] != written[0]["run_id"]
    index = (out / "index.html").read_text()
    assert "Verdict: <strong>ship</strong>" in index and "NPS: +30 → +45" in index


def test_every_exported_table_reads_as_words_with_p_values_and_no_suppressed_column():
    """The formatting layer of the export, whatever a notebook passed: a pandas table's snake_case headings
    become words, its p-values "< 0.001", and its suppressed column goes (a note says what "–" means)."""
    import pandas as pd

    from pco_lib.report.formats import SUPPRESSED_NOTE, humanize_tables

    frame = pd.DataFrame({"segment": ["a", "b"], "orders_per_year": [1.5, float("nan")],
                          "p_value": [2.5e-9, 0.04567], "suppressed": [False, True]})
    page = humanize_tables(frame.style.format({"p_value": "{:.3g}"}, na_rep="–").hide(axis="index").to_html())
    assert ">Orders per year</th>" in page and ">p-value</th>" in page and ">Segment</th>" in page
    assert ">&lt; 0.001</td>" in page and ">0.046</td>" in page and "2.5e-09" not in page
    assert "suppressed" not in page and "True" not in page and SUPPRESSED_NOTE in page
    named = humanize_tables(pd.DataFrame({"vs basic": ["+63.3"], "p-value": [4.6e-30]}).style.hide(axis="index")
                            .to_html())
    assert ">&lt; 0.001</td>" in named and "e-30" not in named  # a heading a domain already wrote in words
    clean = humanize_tables(frame[["segment"]].style.hide(axis="index").to_html())
    assert SUPPRESSED_NOTE not in clean  # nothing was left out, so no note


def test_money_is_written_in_the_reports_currency(monkeypatch):
    from pco_lib.data import currencies as m

    monkeypatch.setattr(m, "_current", None)
    monkeypatch.delenv(m.ENV, raising=False)
    assert m.currency() == "USD" and m.money(1234.4) == "$1,234" and m.money(-3.5, ",.2f") == "−$3.50"
    assert m.money(-0.001, ",.2f") == "$0.00" and m.money(2.5, "+,.2f") == "+$2.50" and m.money(float("nan")) == "–"
    monkeypatch.setenv(m.ENV, "eur")  # "" means $PCO_CURRENCY, upper-cased
    assert m.set_currency("") == "EUR" and m.money(12.5, ",.2f") == "€12.50"
    assert m.set_currency("CHF") == "CHF" and m.money(1234) == "1,234 CHF"
    assert m.money_label("revenue") == "revenue (CHF)"
    with pytest.raises(m.CurrencyError, match="'US dollars' is not a currency code"):
        m.set_currency("US dollars")


def test_cards_tables_and_axes_use_the_currency(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from pco_lib.data import currencies as m
    from pco_lib.report import plots, styled
    from pco_lib.report.notebook import _format

    monkeypatch.setattr(m, "_current", "GBP")
    assert _format(2262759.4, "$,.0f") == "£2,262,759" and _format(113.136, "$,.2f") == "£113.14"
    html = styled(pd.DataFrame({"aov": [30.681], "value": [float("nan")]}),
                  {"aov": "$,.2f", "value": "$,.0f"}).to_html()
    assert ">£30.68</td>" in html and ">–</td>" in html
    fig = plots.monthly_lines(pd.DataFrame({"month": pd.date_range("2026-01-01", periods=3, freq="MS"),
                                            "revenue": [1000.0, 2500.0, 1800.0]}), y="revenue", money=True)
    fig.canvas.draw()
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text()]
    assert ticks and all(t.lstrip("−").startswith("£") for t in ticks), ticks


def test_tables_without_formats_show_counts_as_integers_and_shares_as_percent():
    import pandas as pd

    from pco_lib.report import styled
    from pco_lib.report.formats import label, number

    frame = pd.DataFrame({"customers": [1577.0, 475.0], "top_share": [0.101, 0.372], "t": [24.747, 2654.967],
                          "converted_by_30d": [0.25, 0.5], "conversion_rate": [0.149, 0.04]})
    html = styled(frame).to_html()
    assert ">1,577</td>" in html and ">475</td>" in html and "1577.0" not in html  # counts stored as floats
    assert ">10.1%</td>" in html and ">14.9%</td>" in html and ">24.7</td>" in html and ">2,655</td>" in html
    assert ">Converted by 30 days</th>" in html and label("converted_by_30d_ci_low") == "Converted by 30 days, low"
    assert number(0.7204) == "0.72" and number(3.0) == "3" and number(float("nan")) == "–"


def test_a_category_keeps_its_colour_in_every_chart_of_a_report(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from pco_lib.report import plots

    monkeypatch.setattr(plots, "_assigned", {})
    assert plots.category_color("Detractors") == plots.category_color("detractor") == plots.FIXED_COLORS["detractor"]
    first, second = plots.category_color("premium"), plots.category_color("basic")
    assert first != second and plots.category_color("premium") == first and first not in plots.FIXED_COLORS.values()
    curves = pd.DataFrame({"segment": ["basic"] * 3 + ["premium"] * 3, "days": [0, 30, 700] * 2,
                           "survival": [1, 0.6, 0.6, 1, 0.8, 0.8], "ci_low": 0.5, "ci_high": 1.0})
    fig = plots.survival_curves(curves, ylabel="not yet converted")
    lines = {line.get_label(): line.get_color() for line in fig.axes[0].get_lines()}
    assert lines == {"basic": second, "premium": first}
    assert fig.axes[0].get_ylabel() == "not yet converted"
    assert fig.axes[0].get_xlim()[1] == pytest.approx(33)  # the flat tail to day 700 is cut 10% after day 30


def test_the_index_filters_runs_by_status(toy_notebooks, tmp_path, browser):
    from pco_lib.report import run_report, write_index

    out = tmp_path / "reports"
    assert run_report("toy", out_dir=out, nb_dir=toy_notebooks, params={"value": 3}).ok
    assert not run_report("toy", out_dir=out, nb_dir=toy_notebooks, params={"fail": True}, name="toy_bad").ok
    index = write_index(out)
    html = index.read_text()
    assert "data-filter='all' aria-pressed='true'>All (2)" in html
    assert "data-filter='succeeded'" in html and ">Succeeded (1)" in html and ">Failed (1)" in html
    assert html.count("<tr data-status='succeeded'") == 1 and html.count("<tr data-status='failed'") == 1
    assert "<script>" in html and "row.hidden" in html and "<script src=" not in html
    if browser is None:  # always in CI (PCO_REQUIRE_BROWSER)
        return
    page = browser.new_page(viewport={"width": 390, "height": 800})
    page.goto(index.as_uri())
    visible = "[...document.querySelectorAll('tr[data-status]')].filter(r => !r.hidden).map(r => r.dataset.status)"
    assert sorted(page.evaluate(visible)) == ["failed", "succeeded"]
    page.click("button[data-filter='failed']")
    assert page.evaluate(visible) == ["failed"]
    assert page.get_attribute("button[data-filter='failed']", "aria-pressed") == "true"
    page.click("button[data-filter='all']")
    assert sorted(page.evaluate(visible)) == ["failed", "succeeded"]
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.close()


def test_dollar_amounts_in_a_summary_are_money_not_latex(monkeypatch):
    """Two "$" in one Markdown line are a LaTeX formula to nbconvert: the summary showed "**+$7.40**"."""
    import IPython.display
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    from pco_lib.report import summary_box

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append(obj))
    summary_box(["Revenue: $25.91 vs $33.31, a change of **+$7.40** (interval +$4.19 to +$10.61)."])
    html = markdown2html_mistune(shown[0].data)
    assert "<strong>+$7.40</strong>" in html and "$25.91 vs $33.31" in html and "**" not in html


def test_customer_csv_files_read_back_as_the_frame_whatever_its_index(tiny_sample, tmp_path):
    """write_csv (DuckDB) against pandas' own to_csv: the same text but for booleans (true/false), and every
    value reads back exactly, for the frames the reports write (floats to the last bit, dates, missing values,
    quotes and commas in text); the frame's index is not written."""
    import datetime as dt

    import numpy as np
    import pandas as pd

    from pco_lib import clv, data, lifecycle
    from pco_lib.report import write_csv

    source = data.connect(tiny_sample)
    readout = lifecycle.analyze(source)
    odd = pd.DataFrame({"customer_id": ["a", "b,c", 'd"e', None], "x": [1, 2, 3, 4],
                        "p": np.random.default_rng(1).random(4) * 1e-5, "q": [1.0, np.nan, 3.5, 1 / 3],
                        "day": [dt.date(2026, 1, 1), dt.date(2026, 2, 1), None, dt.date(2026, 3, 1)]},
                       index=[5, 3, 9, 1])
    frames = {"values": clv.analyze(source).values, "contacts": readout.contacts,
              "scores": readout.lookalike.scores, "odd": odd}
    for name, frame in frames.items():
        write_csv(frame, tmp_path / f"{name}.csv")
        frame.to_csv(tmp_path / f"{name}.pandas.csv", index=False)
        ours, theirs = (pd.read_csv(tmp_path / f"{name}{kind}.csv", float_precision="round_trip",
                                    keep_default_na=False, dtype=str) for kind in ("", ".pandas"))
        assert list(ours.columns) == list(frame.columns)
        back = pd.read_csv(tmp_path / f"{name}.csv", float_precision="round_trip")
        for column in frame.columns:
            if frame[column].dtype.kind == "f":
                assert np.array_equal(back[column].to_numpy(), frame[column].to_numpy(), equal_nan=True), column
            else:
                assert ours[column].tolist() == theirs[column].tolist(), (name, column)
