"""Benchmark of the CLV pipeline: engine RFM summary (DuckDB via Ibis) + BG/NBD + Gamma-Gamma fits.

Run with `make bench` (PCO_BENCH_CUSTOMERS sets the size, default 200,000). Prints the time of each step and
the peak memory of the process (resource.getrusage). When the `lifetimes` package is installed the same fits
are timed with it side by side (it is not a dependency; without it only pco's numbers are reported).
No timed assertions.
"""

import resource
import sys
import time

import numpy as np
import pytest
from bench_fixtures import add_row, sample, table  # noqa: F401 (sample, table: pytest fixtures)

from pco_lib import clv, data
from pco_lib.stats.models import BGNBD, GammaGamma

pytestmark = pytest.mark.bench


def _peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def test_rfm_bgnbd_gamma_gamma(sample, table):
    orders = data.connect(sample).table("orders")
    end = "2026-09-30"
    t_rfm, rfm = _timed(lambda: clv.rfm_table(orders, end))
    t_per, per = _timed(lambda: clv.rfm_table(orders, end, per_customer=True))
    t_bg, bgnbd = _timed(lambda: BGNBD().fit_rfm(rfm))
    repeat = per[per.frequency > 0]
    t_gg, gg = _timed(lambda: GammaGamma().fit(repeat.frequency, repeat.monetary))
    assert rfm["count"].sum() == len(per)
    print(f"\nCLV pipeline, {len(per):,} customers ({len(rfm):,} distinct (x, t_x, T) rows, "
          f"{len(repeat):,} repeat customers):")
    print(f"  rfm_table (distinct rows)  {t_rfm:.3f} s")
    print(f"  rfm_table (per customer)   {t_per:.3f} s")
    print(f"  BG/NBD fit (weighted rows) {t_bg:.3f} s   {bgnbd!r}")
    print(f"  Gamma-Gamma fit            {t_gg:.3f} s   {gg!r}")
    total = t_rfm + t_per + t_bg + t_gg
    print(f"  total {total:.3f} s, peak memory of the process {_peak_mb():.0f} MB")
    add_row(table, f"CLV: RFM summary + BG/NBD + Gamma-Gamma fits ({len(rfm):,} distinct rows; peak "
            f"{_peak_mb():.0f} MB)", sample.customers, total, None, "`lifetimes` is archived and breaks on pandas 2")

    try:
        import lifetimes
    except ImportError:
        print("  lifetimes is not installed: no side-by-side comparison")
        return
    t_lbg, lbg = _timed(lambda: lifetimes.BetaGeoFitter().fit(per.frequency, per.recency, per["T"]))
    t_lgg, lgg = _timed(lambda: lifetimes.GammaGammaFitter().fit(repeat.frequency, repeat.monetary))
    np.testing.assert_allclose(lbg.params_[["r", "alpha", "a", "b"]], bgnbd.params_, rtol=1e-2)
    print(f"  lifetimes BG/NBD fit {t_lbg:.3f} s ({t_lbg / t_bg:.1f}× ours), Gamma-Gamma {t_lgg:.3f} s "
          f"({t_lgg / t_gg:.1f}× ours); peak memory now {_peak_mb():.0f} MB")
    assert lgg is not None
