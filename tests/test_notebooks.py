"""Every report runs through the runner on a tiny sample with non-default parameters.

Like scikit-learn's ``parametrize_with_checks``, this walks every registered report: a new notebook must add
its non-default parameters and its expected results.json keys here.
"""

import json
import re
from functools import cache

import pandas as pd
import pytest

from pco_lib.report import list_reports, run_report

NON_DEFAULT = {
    "data_overview": {"currency": "EUR", "segment": "country", "months": 6, "min_cell_size": 5},
    "cohort_retention": {"currency": "GBP", "period": "week", "activity": "event", "segment": "device", "horizon": 8,
                         "change_date": "2025-10-01", "change_name": "new onboarding", "retention_days": 30,
                         "window_days": 90, "alpha": 0.1, "min_cell_size": 5},
    "ab_test": {"experiment_id": "checkout_copy", "metrics": ["retained", "revenue", "repeat"], "window_days": 14,
                "alpha": 0.1, "correction": "bh", "guardrails": ["orders"], "guardrail_margin": 0.1,
                "sequential": True, "cuped": False, "min_effect": 0.1, "prior_sd": 0.3, "segments": ["country"],
                "min_cell_size": 5, "currency": "EUR"},
    "churn_survival": {"churn_definition": "non_contractual", "inactivity_days": 60, "activity": "order",
                       "segment": "channel", "covariates": ["channel", "device"], "horizon_days": 180, "risk_days": 14,
                       "risk_csv": "risk.csv", "alpha": 0.1, "correction": "bh", "min_segment_size": 20,
                       "min_cell_size": 5},
    "clv": {"model": "mbgnbd", "horizon": 730, "time_unit": "day", "discount_rate": 0.05,
            "calibration_end": "2026-03-31", "holdout_days": 90, "segment": "country", "values_csv": "v.csv",
            "min_cell_size": 5, "currency": "CHF"},
    "lifecycle_segments": {"as_of": "2026-06-30", "compare_days": 60, "segment": "device", "lead_time_days": 7,
                           "new_days": 60, "at_risk_days": 120, "lapsed_days": 240, "vip_share": 0.2, "lead_days": 30,
                           "contacts_csv": "c.csv", "lookalike_csv": "", "min_cell_size": 5,
                           "currency": "EUR"},
    "customer_feedback": {"segment": "country", "period": "quarter", "response_window_days": 30, "alpha": 0.1,
                          "min_cell_size": 5},
}
EXPECTED_KEYS = {
    "data_overview": {"customers", "orders", "revenue", "repeat_customer_share", "lead_conversion_rate",
                      "validation_warnings"},
    "cohort_retention": {"retention", "change"},
    "ab_test": {"verdict", "verdict_reasons", "srm_p_value", "metrics", "churn", "experiment"},
    "churn_survival": {"customers", "median_lifetime", "survival", "hazard_ratios", "rmst"},
    "clv": {"mean_clv", "total_clv", "top20_share", "parameters", "log_likelihood", "holdout", "validation",
            "contractual"},
    "lifecycle_segments": {"stage", "stage_counts", "rfm_segments", "contact_days", "lead_conversion",
                           "lookalike_auc"},
    "customer_feedback": {"nps", "nps_by_segment", "csat", "churn_hazard_ratio", "detractor_hazard_ratio"},
}


@cache
def _identifiers(folder) -> frozenset:
    """Every customer id, e-mail address and lead id in the sample: none may appear in an HTML report."""
    customers = pd.read_parquet(folder / "customers.parquet", columns=["customer_id", "email", "lead_id"])
    return frozenset(customers.customer_id) | frozenset(customers.email) | frozenset(customers.lead_id)


@pytest.fixture(scope="session")
def report_run(tiny_sample, tmp_path_factory):
    """``report_run(report, non_default=False)``: one run per report and parameter set on the tiny sample,
    shared by the tests that read it (each kernel costs seconds; a test that needs a fresh run makes its own)."""
    done = {}

    def run(report, non_default=False):
        if (report, non_default) not in done:
            out = tmp_path_factory.mktemp(f"{report}-{'non-default' if non_default else 'default'}")
            done[report, non_default] = run_report(report, data_dir=tiny_sample, out_dir=out,
                                                   params=NON_DEFAULT[report] if non_default else None)
        return done[report, non_default]

    return run


def test_every_report_has_a_contract_entry():
    assert set(list_reports()) == set(NON_DEFAULT) == set(EXPECTED_KEYS)


@pytest.mark.slow
@pytest.mark.parametrize("report", sorted(NON_DEFAULT))
def test_report_runs_with_non_default_parameters(report, tiny_sample, tmp_path, browser, report_run, offline_page):
    result = report_run(report, non_default=True)
    assert result.ok, result.error
    results = json.loads((result.folder / "results.json").read_text())
    assert EXPECTED_KEYS[report] <= set(results)
    manifest = json.loads((result.folder / "manifest.json").read_text())
    for name, value in NON_DEFAULT[report].items():
        assert manifest["parameters"][name] == value
    html = (result.folder / "report.html").read_text()
    assert not _identifiers(tiny_sample) & set(re.findall(r"[\w.+@-]+", html)), "a customer id or e-mail is in the HTML"
    assert "pco-summary" in html, "the report has no summary box"
    assert "<script src=" not in html, "the report loads a script"
    if browser is not None:  # always in CI (PCO_REQUIRE_BROWSER)
        seen = offline_page(browser, result.folder / "report.html", tmp_path / f"{report}.png")
        assert seen["outside"] == [], "the report asks for something on the network"
        assert seen["failed"] == [] and seen["errors"] == []
        assert [m for m in seen["console"] if m.startswith(("error", "warning"))] == []
        assert seen["code_cells"] == 0, "code is visible"
        assert seen["summary_visible"] and report in seen["title"]
        assert (tmp_path / f"{report}.png").stat().st_size > 10_000  # a real screenshot
        assert seen["alts"] and all(len(alt) > 10 for alt in seen["alts"]), seen["alts"]  # from each figure
        assert seen["phone_scroll_width"] <= 390, "the page scrolls sideways on a phone"
    assert "from pco_lib" not in html, "code is visible in the HTML"
    assert "data:image/png;base64" in html, "the report has no embedded chart"
    assert "No description has been provided" not in html
    assert 'data-mime-type="text/plain"' not in html, "a print line, repr or empty box on the page (report.callout)"
    currency = NON_DEFAULT[report].get("currency")
    if currency:  # every money figure in the report's currency, none in the default dollars
        assert not re.search(r"\$\s?\d", html), "a money figure in dollars on a non-dollar report"
        assert {"EUR": "€", "GBP": "£", "CHF": " CHF"}[currency] in html or f"({currency})" in html  # text, axes
    if report in ("clv", "churn_survival", "lifecycle_segments"):  # model internals, collapsed for analysts
        assert "<details class=\"pco-details\"><summary>" in html and "(for analysts)</summary>" in html
    css = sum(len(block) for block in re.findall(r"<style[^>]*>(.*?)</style>", html, re.S))
    assert css < 50_000, f"{css:,} characters of CSS: JupyterLab's unused rules are back (they were 240,000)"
    assert len(html.encode()) < 500_000, "the page is heavier than it needs to be (issue 16: ≤ 500 kB)"


@pytest.mark.slow
def test_data_overview_counts_match_the_generated_sample(tiny_sample, report_run):
    truth = json.loads((tiny_sample / "truth.json").read_text())
    result = report_run("data_overview", non_default=True)  # months, segment and currency change no count
    assert result.ok, result.error
    assert result.results["customers"] == truth["customers"] == 1500
    assert result.results["orders"] == truth["counts"]["orders"]
    assert result.results["lead_conversion_rate"] == pytest.approx(1500 / truth["counts"]["leads"])


@pytest.mark.slow
def test_ab_test_results_have_every_metric_and_arm(report_run):
    result = report_run("ab_test", non_default=True)
    assert result.ok, result.error
    metrics = result.results["metrics"]
    assert set(metrics) == {"retained", "revenue", "repeat", "orders"}  # orders is a guardrail
    for name, metric in metrics.items():
        assert set(metric["treatment"]) == {"effect", "ci_low", "ci_high", "p_value", "p_value_adjusted", "relative",
                                            "relative_ci_low", "relative_ci_high", "relative_p_value",
                                            "relative_p_value_adjusted", "chance_to_beat_control", "expected_loss"
                                            } | ({"guardrail"} if name == "orders" else set())
        t = metric["treatment"]
        assert t["ci_low"] <= t["effect"] <= t["ci_high"]
        assert t["relative_ci_low"] <= t["relative"] <= t["relative_ci_high"]
    assert result.results["verdict"] in {"ship", "trade-off", "keep running", "stop", "do not ship", "do not trust"}
    assert metrics["orders"]["treatment"]["guardrail"] in {"pass", "fail", "inconclusive"}
    experiment = result.results["experiment"]
    assert experiment["first_assigned"] <= experiment["last_assigned"] and experiment["days"] >= 1
    html = (result.folder / "report.html").read_text()
    assert "Experiment: " in html and "days of assignment)" in html
    assert f">{metrics['orders']['treatment']['guardrail']}</td>" in html  # the status column of the table


@pytest.mark.slow
def test_churn_survival_writes_scores_beside_the_report_and_never_into_the_html(report_run):
    import pandas as pd

    result = report_run("churn_survival")
    assert result.ok, result.error
    scores = pd.read_csv(result.folder / "churn_risk.csv")
    assert {"customer_id", "days", "churn_probability"} <= set(scores.columns)
    assert scores.churn_probability.between(0, 1).all() and len(scores) == result.results["active_scored"]
    html = (result.folder / "report.html").read_text()
    assert not any(cid in html for cid in scores.customer_id), "a customer id is in the HTML"
    assert set(result.results["survival"]) == {"basic", "pro", "premium"}
    for hr in result.results["hazard_ratios"].values():
        assert hr["ci_low"] <= hr["hazard_ratio"] <= hr["ci_high"]


def test_the_browser_check_catches_a_page_that_needs_the_network(tmp_path, browser, offline_page):
    if browser is None:
        pytest.skip("no browser here")
    page = tmp_path / "cdn.html"
    page.write_text("<html><head><title>x</title><script src='https://cdn.example.org/lib.js'></script></head>"
                    "<body><div class='pco-summary'>s</div><script>console.error('boom')</script></body></html>")
    seen = offline_page(browser, page)
    assert seen["outside"] == ["https://cdn.example.org/lib.js"] and any("boom" in m for m in seen["console"])


@pytest.mark.slow
@pytest.mark.parametrize("report", ["clv", "lifecycle_segments", "ab_test"])
def test_same_data_and_parameters_give_identical_results(report, tiny_sample, report_run, monkeypatch,
                                                          other_hash_seed_kernels):
    first = report_run(report, non_default=True)  # shared with the contract test; the second run is new
    out = first.folder.parent.parent  # beside the first (its validation is reused; the kernel run is new)
    if other_hash_seed_kernels:  # a kernel with another hash seed (from the second server) ...
        monkeypatch.setenv("PCO_TEST_KERNEL_SERVER", other_hash_seed_kernels)
    else:  # ... or a fresh interpreter: both iterate sets of strings in another order than the first run
        monkeypatch.delenv("PCO_TEST_KERNEL_SERVER", raising=False)
    second = run_report(report, data_dir=tiny_sample, out_dir=out, params=NON_DEFAULT[report])
    assert first.ok and second.ok and second.folder != first.folder
    assert (first.folder / "results.json").read_bytes() == (second.folder / "results.json").read_bytes()


@pytest.mark.slow
def test_pseudonymized_csv_files_hold_no_customer_ids(tiny_sample, tmp_path, monkeypatch):
    import hashlib
    import hmac

    monkeypatch.setenv("PCO_PSEUDONYM_SALT", "a-test-salt-of-some-length")
    result = run_report("churn_survival", data_dir=tiny_sample, out_dir=tmp_path, pseudonymize=True)
    assert result.ok, result.error
    manifest = json.loads((result.folder / "manifest.json").read_text())
    assert manifest["pseudonymized"] == ["churn_risk.csv"] and "a-test-salt" not in json.dumps(manifest)
    scores = pd.read_csv(result.folder / "churn_risk.csv", dtype={"customer_id": str})
    ids = _identifiers(tiny_sample)
    assert not set(scores.customer_id) & ids and scores.customer_id.str.fullmatch(r"[0-9a-f]{16}").all()
    expected = {hmac.new(b"a-test-salt-of-some-length", cid.encode(), hashlib.sha256).hexdigest()[:16]
                for cid in pd.read_parquet(tiny_sample / "customers.parquet").customer_id}
    assert set(scores.customer_id) <= expected
