"""Benchmark of the CLV pipeline: the engine RFM summaries (DuckDB via Ibis) vs their SQL floors, and the
whole pipeline (RFM, BG/NBD fit, Gamma-Gamma fit) vs `lifetimes`, run in a virtualenv of its own
(lifetimes_peer.py: created when missing; when it cannot be, the rows say so).

lifetimes does it the usual way: its summary_data_from_transaction_data on the orders, its fitters on one
row per customer; pco fits BG/NBD on distinct (x, t_x, T) rows with counts. Both fit the same data (checked:
lifetimes' summary equals pco's per-customer table), and the fitted parameters must agree.
No timed assertions.
"""

import math

import numpy as np
import pandas as pd
import pytest
import sql_floor
from bench_fixtures import REPEAT, Timing, measure
from lifetimes_peer import lifetimes_python, run_lifetimes

from pco_lib import clv, data
from pco_lib.stats.models import BGNBD, GammaGamma

pytestmark = pytest.mark.bench
END = "2026-09-30"  # calibration end: the last day of the sample


def _timing(record: dict | None) -> Timing | None:
    return Timing(record["wall"], record["cpu"]) if record else None


def _digits(ours, theirs) -> float:
    """Significant digits to which two parameter vectors agree (the worst parameter)."""
    worst = float(np.max(np.abs(np.asarray(ours) - np.asarray(theirs)) / np.abs(np.asarray(theirs))))
    return math.inf if worst == 0 else -math.log10(worst)


def _check_summary(per: pd.DataFrame, summary: pd.DataFrame) -> None:
    """lifetimes' summary gives pco's x, t_x and T for the same customers, and the same monetary value where
    the two agree on it: lifetimes averages every repeat purchase day, pco leaves $0 days out (x⁺), so only
    customers without $0 orders are compared."""
    theirs = summary.set_index("customer_id").loc[per.customer_id]
    assert len(summary) == len(per)
    np.testing.assert_array_equal(per.frequency.to_numpy(), theirs.frequency.to_numpy())
    np.testing.assert_allclose(per.recency.to_numpy(), theirs.recency.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(per["T"].to_numpy(), theirs["T"].to_numpy(), rtol=1e-12)
    paid = ((per.frequency > 0) & (per.zero_revenue_orders == 0)).to_numpy()
    np.testing.assert_allclose(per.monetary.to_numpy()[paid], theirs.monetary_value.to_numpy()[paid], rtol=1e-9)


def test_clv_pipeline(sample, table):
    orders, con, n = data.connect(sample).table("orders"), sql_floor.connect(), sample.customers
    t_rfm, rfm = measure(lambda: clv.rfm_table(orders, END), REPEAT)
    f_rfm, floor_rfm = measure(lambda: sql_floor.run(con, sql_floor.rfm_distinct(sample, END)), REPEAT)
    pd.testing.assert_frame_equal(rfm, floor_rfm, check_dtype=False)
    t_per, per = measure(lambda: clv.rfm_table(orders, END, per_customer=True), REPEAT)
    f_per, floor_per = measure(lambda: sql_floor.run(con, sql_floor.rfm_per_customer(sample, END)), REPEAT)
    pd.testing.assert_frame_equal(per, floor_per, check_dtype=False, rtol=1e-12)
    assert rfm["count"].sum() == len(per)
    t_bg, bgnbd = measure(lambda: BGNBD().fit_rfm(rfm))
    paid = per[per.spend_frequency > 0]
    t_gg, gg = measure(lambda: GammaGamma().fit(paid.spend_frequency, paid.monetary))
    total = Timing(*(sum(getattr(t, k) for t in (t_rfm, t_per, t_bg, t_gg)) for k in ("wall", "cpu")))

    python, problem = lifetimes_python()
    steps = {}
    if python is not None:
        per_path = sample.parent / "per_customer.parquet"
        per[["frequency", "recency", "T", "spend_frequency", "monetary"]].to_parquet(per_path)
        steps, problem = run_lifetimes(python, sample / "orders.parquet", per_path, END, sample.parent)
    version = steps.get("versions", {})
    why = f"lifetimes: {problem}" if problem else ""
    print(f"\nlifetimes {version.get('lifetimes', '?')} (pandas {version.get('pandas', '?')}): "
          f"{sorted(steps)} {why}")

    summary = None
    if "summary_data_from_transaction_data" in steps:
        summary = pd.read_parquet(sample.parent / "summary.parquet")
        _check_summary(per, summary)
        read, made = steps["read orders"], steps["summary_data_from_transaction_data"]
        summary_time = Timing(read["wall"] + made["wall"], read["cpu"] + made["cpu"])
    else:
        summary_time = None

    table.add(f"CLV: RFM, distinct (x, t_x, T) rows ({len(rfm):,})", n, t_rfm, f_rfm)
    table.floor_target("RFM, distinct rows", n, t_rfm, f_rfm)
    table.add("CLV: RFM, one row per customer", n, t_per, f_per, summary_time,
              "lifetimes: read orders + summary_data_from_transaction_data", why or "lifetimes: no summary")
    table.floor_target("RFM, one row per customer", n, t_per, f_per)

    for step, ours, model, rows in (("BG/NBD fit", t_bg, bgnbd, f"pco on {len(rfm):,} weighted rows"),
                                    ("Gamma-Gamma fit", t_gg, gg, f"{len(paid):,} customers")):
        peer = steps.get(step)
        label = ""
        if peer:  # the same parameters (lifetimes calls Gamma-Gamma's gamma v)
            np.testing.assert_allclose(model.params_.to_numpy(), peer["params"], rtol=1e-3)
            label = (f"lifetimes, one row per customer; parameters agree to "
                     f"{_digits(model.params_, peer['params']):.1f} digits")
        table.add(f"CLV: {step} ({rows})", n, ours, None, _timing(peer), label, why or "lifetimes: no fit")

    bg_peer, gg_peer = steps.get("BG/NBD fit"), steps.get("Gamma-Gamma fit")
    peer_total = None
    if summary_time and bg_peer and gg_peer:
        peer_total = Timing(*(getattr(summary_time, k) + bg_peer[k] + gg_peer[k] for k in ("wall", "cpu")))
        table.target("CLV pipeline: lifetimes ÷ pco", n, peer_total.wall / total.wall, 1.5, "×", at_most=False)
    table.add("CLV pipeline from the files: RFM (both) + BG/NBD + Gamma-Gamma", n, total, None, peer_total,
              "lifetimes: summary + both fits", why or "lifetimes: incomplete")
    if version:
        table.notes.append(f"{n:,} customers: lifetimes {version['lifetimes']} with pandas {version['pandas']}, in "
                           "its own virtualenv")
    if why:
        table.notes.append(f"{n:,} customers, {why}")
