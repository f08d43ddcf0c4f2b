"""pco's CLV steps against `lifetimes` on the same data (issue 17): wall and CPU time, best of N, and the
parameters' agreement in digits. Not a pytest file; `lifetimes` needs pandas < 2, so it runs in a venv of its
own and the two halves exchange Parquet files in a work folder (nothing is written into the repository):

    python3.11 -m venv /tmp/lifetimes-venv
    /tmp/lifetimes-venv/bin/pip install lifetimes 'pandas<2' 'numpy<2' 'scipy<1.12' 'pyarrow<15'
    # 1. pco (repository venv): generate the sample if needed, time rfm_table and the fits, export the data
    python tests/benchmarks/clv_vs_lifetimes.py pco /tmp/clvbench 100000
    # 2. lifetimes: summary_data_from_transaction_data on the same orders, BetaGeoFitter, GammaGammaFitter
    /tmp/lifetimes-venv/bin/python tests/benchmarks/clv_vs_lifetimes.py lifetimes /tmp/clvbench 100000

Step 2 prints the ratio lifetimes/pco per step. The Gamma-Gamma fit is on spend_frequency > 0 (as in
pco.clv.readout); lifetimes' summary counts $0 repeat days as spend, so its summary is timed but the fits of
both use pco's per-customer frame. Options: --reps N (default 3; the lifetimes summary runs once above 2M
orders), --end YYYY-MM-DD (calibration end, default 2026-09-30).
"""

import argparse
import json
import time
from pathlib import Path


def best(fn, reps):
    """(wall, cpu, value) of the fastest of ``reps`` runs (wall and CPU minimised separately)."""
    walls, cpus = [], []
    for _ in range(reps):
        w0, c0 = time.perf_counter(), time.process_time()
        value = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus), value


def run_pco(work: Path, customers: int, reps: int, end: str) -> None:
    from pco_lib import clv, data
    from pco_lib.data.sample import generate_sample
    from pco_lib.stats.models import BGNBD, GammaGamma

    folder = work / f"sample_{customers}"
    if not (folder / "orders.parquet").exists():
        generate_sample(folder, customers=customers, seed=1, progress=False)
    orders = data.connect(folder).table("orders")
    t = {"rfm_table (distinct rows)": best(lambda: clv.rfm_table(orders, end), reps),
         "rfm_table (per customer)": best(lambda: clv.rfm_table(orders, end, per_customer=True), reps)}
    rfm, per = t["rfm_table (distinct rows)"][2], t["rfm_table (per customer)"][2]
    # what clv.analyze does instead of the distinct-rows pass: group the per-customer frame in pandas
    t["distinct rows from per customer"] = best(
        lambda: per.groupby(["frequency", "recency", "T"], as_index=False).size(), reps)
    repeat = per[per.spend_frequency > 0]
    t["BG/NBD fit"] = best(lambda: BGNBD().fit_rfm(rfm), reps)
    t["Gamma-Gamma fit"] = best(lambda: GammaGamma().fit(repeat.spend_frequency, repeat.monetary), reps)
    bg, gg = t["BG/NBD fit"][2], t["Gamma-Gamma fit"][2]
    print(f"pco, {len(per):,} customers, {len(rfm):,} distinct (x, t_x, T) rows, {len(repeat):,} spend rows")
    for step, (wall, cpu, _) in t.items():
        print(f"  {step:32s} wall {wall:7.3f} s  cpu {cpu:7.3f} s")
    per[["frequency", "recency", "T", "spend_frequency", "monetary"]].to_parquet(work / f"per_{customers}.parquet")
    orders.select("customer_id", "ordered_at", "revenue").to_pandas().to_parquet(work / f"orders_{customers}.parquet")
    json.dump({"times": {k: v[:2] for k, v in t.items()}, "bgnbd": bg.params_.to_dict(),
               "gamma_gamma": gg.params_.to_dict()}, open(work / f"pco_{customers}.json", "w"), indent=1)


def run_lifetimes(work: Path, customers: int, reps: int, end: str) -> None:
    import warnings

    import lifetimes
    import numpy as np
    import pandas as pd
    from lifetimes.utils import summary_data_from_transaction_data

    warnings.simplefilter("ignore")
    pco = json.load(open(work / f"pco_{customers}.json"))
    per = pd.read_parquet(work / f"per_{customers}.parquet")
    repeat = per[per.spend_frequency > 0]
    o = pd.read_parquet(work / f"orders_{customers}.parquet")
    o["ordered_at"] = pd.to_datetime(o["ordered_at"], utc=True).dt.tz_localize(None)
    o["revenue"] = o["revenue"].astype("float64")
    o = o[o.ordered_at < pd.Timestamp(end) + pd.Timedelta(days=1)]
    t = {"summary_data_from_transaction_data": best(lambda: summary_data_from_transaction_data(
        o, "customer_id", "ordered_at", "revenue", observation_period_end=end, freq="D", freq_multiplier=7),
        1 if len(o) > 2_000_000 else reps)}
    summary = t["summary_data_from_transaction_data"][2]
    same = (np.allclose(np.sort(summary.frequency), np.sort(per.frequency))
            and np.allclose(np.sort(summary["T"]), np.sort(per["T"])))
    t["BetaGeoFitter.fit"] = best(lambda: lifetimes.BetaGeoFitter().fit(per.frequency, per.recency, per["T"]), reps)
    t["GammaGammaFitter.fit"] = best(
        lambda: lifetimes.GammaGammaFitter().fit(repeat.spend_frequency, repeat.monetary), reps)
    bg = t["BetaGeoFitter.fit"][2].params_
    gg = t["GammaGammaFitter.fit"][2].params_
    ours = {"summary_data_from_transaction_data": ("rfm_table (distinct rows)", "rfm_table (per customer)"),
            "BetaGeoFitter.fit": ("BG/NBD fit",), "GammaGammaFitter.fit": ("Gamma-Gamma fit",)}
    print(f"lifetimes {lifetimes.__version__}, {len(per):,} customers (summary equals pco's x and T: {same})")
    total = [0.0, 0.0, 0.0, 0.0]
    for step, (wall, cpu, _) in t.items():
        p_wall = sum(pco["times"][s][0] for s in ours[step])
        p_cpu = sum(pco["times"][s][1] for s in ours[step])
        total = [total[0] + wall, total[1] + cpu, total[2] + p_wall, total[3] + p_cpu]
        print(f"  {step:36s} wall {wall:7.3f} s  cpu {cpu:7.3f} s   lifetimes/pco wall {wall / p_wall:5.1f}×  "
              f"cpu {cpu / p_cpu:5.1f}×")
    print(f"  {'whole CLV step':36s} wall {total[0]:7.3f} s  cpu {total[1]:7.3f} s   lifetimes/pco wall "
          f"{total[0] / total[2]:5.1f}×  cpu {total[1] / total[3]:5.1f}×")
    swap = [pco["times"]["distinct rows from per customer"][i] - pco["times"]["rfm_table (distinct rows)"][i]
            for i in (0, 1)]
    print(f"  {'  as clv.analyze (one engine pass)':36s} {'':33s}lifetimes/pco wall "
          f"{total[0] / (total[2] + swap[0]):5.1f}×  cpu {total[1] / (total[3] + swap[1]):5.1f}×")

    def digits(theirs, mine):
        return min(-np.log10(abs(theirs[k] - mine[k]) / abs(mine[k]) + 1e-17) for k in mine)

    print(f"  parameters agree to {digits(dict(bg), pco['bgnbd']):.1f} digits (BG/NBD), "
          f"{digits({'p': gg['p'], 'q': gg['q'], 'gamma': gg['v']}, pco['gamma_gamma']):.1f} (Gamma-Gamma)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("side", choices=["pco", "lifetimes"])
    parser.add_argument("work", type=Path, help="work folder outside the repository (sample and exchange files)")
    parser.add_argument("customers", type=int)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--end", default="2026-09-30")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    (run_pco if args.side == "pco" else run_lifetimes)(args.work, args.customers, args.reps, args.end)
