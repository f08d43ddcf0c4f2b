"""The `lifetimes` side of the CLV benchmark. Runs in its own virtualenv (lifetimes needs pandas < 2; see
lifetimes_peer.py), never imported by pco or pytest.

    python lifetimes_script.py ORDERS.parquet PER_CUSTOMER.parquet CALIBRATION_END OUT_FOLDER

Prints one JSON line per step as soon as it is done ({"step", "wall", "cpu", ...}), so that the steps done
before a timeout are still reported. The fits come first, on the per-customer data the benchmark wrote
(pco's x, t_x, T, x⁺, m); then lifetimes' own summary of the orders (the usual
`summary_data_from_transaction_data`, weeks of 7 days), written to OUT_FOLDER/summary.parquet for the
benchmark to check against pco's.
"""

import json
import sys
import time
from pathlib import Path

import lifetimes
import pandas as pd
from lifetimes.utils import summary_data_from_transaction_data


def timed(step, fn, **extra):
    t0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    out = {"step": step, "wall": time.perf_counter() - t0, "cpu": time.process_time() - c0, **extra}
    return value, out


def emit(record):
    print(json.dumps(record), flush=True)


def main(orders_path, per_customer_path, end, out):
    emit({"step": "versions", "lifetimes": lifetimes.__version__, "pandas": pd.__version__})
    per, rec = timed("read per-customer", lambda: pd.read_parquet(per_customer_path))
    emit(rec)
    bg, rec = timed("BG/NBD fit", lambda: lifetimes.BetaGeoFitter().fit(per.frequency, per.recency, per["T"]))
    emit({**rec, "params": bg.params_[["r", "alpha", "a", "b"]].tolist(), "rows": len(per)})
    paid = per[per.spend_frequency > 0]
    gg, rec = timed("Gamma-Gamma fit", lambda: lifetimes.GammaGammaFitter().fit(paid.spend_frequency, paid.monetary))
    emit({**rec, "params": gg.params_[["p", "q", "v"]].tolist(), "rows": len(paid)})

    orders, rec = timed("read orders", lambda: pd.read_parquet(orders_path,
                                                               columns=["customer_id", "ordered_at", "revenue"]))
    emit(rec)

    def summary():
        tx = orders.assign(ordered_at=orders.ordered_at.dt.tz_convert(None))  # naive UTC: UTC calendar days
        return summary_data_from_transaction_data(tx, "customer_id", "ordered_at", "revenue",
                                                  observation_period_end=end, freq="D", freq_multiplier=7)

    rfm, rec = timed("summary_data_from_transaction_data", summary)
    rfm.reset_index().to_parquet(Path(out) / "summary.parquet")
    emit({**rec, "rows": len(rfm)})


if __name__ == "__main__":
    main(*sys.argv[1:5])
