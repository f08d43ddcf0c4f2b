"""Benchmark fixtures, imported by the benchmark modules: one sample per size in PCO_BENCH_SIZES
(comma-separated; PCO_BENCH_CUSTOMERS, a single size, also works; default 200,000), and the markdown table
every benchmark adds its rows to."""

import os
import platform
import time
from pathlib import Path

import pytest

from pco_lib.data.sample import generate_sample

RESULTS = Path(__file__).parent / "results"
SIZES = [int(s) for s in os.environ.get("PCO_BENCH_SIZES", os.environ.get("PCO_BENCH_CUSTOMERS", "200000")).split(",")]


@pytest.fixture(scope="session")
def table():
    """bench.md, started afresh with the machine description."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "bench.md"
    path.write_text(f"# pco benchmarks\n\nMachine: {platform.platform()}, {os.cpu_count()} cores, Python "
                    f"{platform.python_version()}\n\n| step | customers | pco | the usual way | speed-up |\n"
                    "|---|---|---|---|---|\n")
    return path


class BenchSample(type(Path())):
    """A sample folder that knows how many customers it holds."""

    customers: int = 0


@pytest.fixture(scope="session", params=SIZES, ids=lambda n: f"{n}")
def sample(request, tmp_path_factory, table):
    customers = request.param
    folder = BenchSample(tmp_path_factory.mktemp(f"bench{customers}") / "sample")
    t0 = time.perf_counter()
    truth = generate_sample(folder, customers=customers, seed=1, progress=False)
    with open(table, "a") as f:
        f.write(f"| generate the sample ({truth['counts']['orders']:,} orders) | {customers:,} | "
                f"{time.perf_counter() - t0:.1f} s | – | – |\n")
    folder.customers = customers
    return folder


def add_row(table: Path, step: str, customers: int, ours: float, theirs: float | None = None,
            theirs_label: str = "") -> None:
    """Append one row; ``theirs`` None means there is nothing to compare with (``theirs_label`` says why)."""
    other = f"{theirs:.3f} s {theirs_label}".strip() if theirs is not None else theirs_label or "–"
    ratio = f"{theirs / ours:.1f}×" if theirs is not None else "–"
    with open(table, "a") as f:
        f.write(f"| {step} | {customers:,} | {ours:.3f} s | {other} | {ratio} |\n")
    print(f"{step} [{customers:,}]: pco {ours:.3f} s, other {other}")
