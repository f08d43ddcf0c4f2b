"""Benchmark fixtures, imported by the benchmark modules: one sample per size in PCO_BENCH_SIZES
(comma-separated; PCO_BENCH_CUSTOMERS, a single size, also works; default 200,000), timing (wall and CPU),
and the results table, written to tests/benchmarks/results/bench.md when the session ends.

Every row has pco's time and, where there is one, the hand-written DuckDB SQL floor of the same step (pco ÷
floor: how much the engine layer costs over the smallest query) and a peer (pandas, lifelines, lifetimes,
pandas + scipy; peer ÷ pco: the speed-up). Times are "wall (CPU)" in seconds; CPU is the process's CPU time
(every thread, DuckDB's included) or, for a subprocess, that of its process tree. The targets of the scale
issue follow the table, each met or missed by how much.
"""

import datetime as dt
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pco_lib.data.sample import generate_sample

RESULTS = Path(__file__).parent / "results"
SIZES = [int(s) for s in os.environ.get("PCO_BENCH_SIZES", os.environ.get("PCO_BENCH_CUSTOMERS", "200000")).split(",")]
REPEAT = int(os.environ.get("PCO_BENCH_REPEAT", "3"))  # engine steps and their SQL floors: best of REPEAT runs


@dataclass
class Timing:
    wall: float
    cpu: float

    def __str__(self) -> str:  # a report's CPU time is not known (nan): wall only
        return f"{self.wall:.3f}" if math.isnan(self.cpu) else f"{self.wall:.3f} ({self.cpu:.3f})"


def measure(fn, repeat: int = 1) -> tuple[Timing, object]:
    """The fastest of ``repeat`` runs (by wall time) and the value of the last."""
    best, value = None, None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        value = fn()
        timing = Timing(time.perf_counter() - t0, time.process_time() - c0)
        best = timing if best is None or timing.wall < best.wall else best
    return best, value


def ratio(a: Timing | None, b: Timing | None) -> str:
    """a ÷ b, wall (CPU)."""
    if a is None or b is None:
        return "–"
    return f"{a.wall / b.wall:.2f}× ({a.cpu / b.cpu:.2f}×)" if b.cpu > 0 else f"{a.wall / b.wall:.2f}×"


@dataclass
class Target:
    what: str
    customers: int
    measured: float
    limit: float
    unit: str  # "s", "GB" or "×"
    at_most: bool = True  # measured ≤ limit (times, memory, pco ÷ floor); else measured ≥ limit (speed-ups)
    set_for: int = 1_000_000

    def verdict(self) -> str:
        met = self.measured <= self.limit if self.at_most else self.measured >= self.limit
        if met:
            return "met"
        if self.at_most and self.unit == "×":
            return f"missed: {self.measured / self.limit - 1:.0%} over"
        if self.at_most:
            return f"missed by {self._amount(self.measured - self.limit)} ({self.measured / self.limit - 1:.0%} over)"
        return f"missed: pco needs to be {self.limit / self.measured:.2f}× faster"

    def row(self) -> str:
        sign = "≤" if self.at_most else "≥"
        return (f"| {self.what} | {self.customers:,} | {sign} {self._amount(self.limit, 'g')} (at {self.set_for:,}) | "
                f"{self._amount(self.measured)} | {self.verdict()} |")

    def _amount(self, value: float, spec: str = ".2f") -> str:
        return f"{value:{spec}}{'' if self.unit == '×' else ' '}{self.unit}"


@dataclass
class Table:
    path: Path
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    load_start: tuple = field(default_factory=os.getloadavg)
    rows: list = field(default_factory=list)
    targets: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def add(self, step: str, customers: int, pco: Timing, floor: Timing | None = None, peer: Timing | None = None,
            peer_label: str = "", note: str = "") -> None:
        """One row: pco, the SQL floor (pco ÷ floor) and a peer (peer ÷ pco); ``note`` goes in the peer column
        when there is no peer time (why not)."""
        peer_text = f"{peer} {peer_label}".strip() if peer is not None else note or "–"
        row = (f"| {step} | {customers:,} | {pco} | {floor or '–'} | {ratio(pco, floor)} | {peer_text} | "
               f"{ratio(peer, pco)} |")
        self.rows.append(row)
        print(f"\n{row}")

    def target(self, *args, **kwargs) -> Target:
        target = Target(*args, **kwargs)
        self.targets.append(target)
        return target

    def floor_target(self, step: str, customers: int, ours: Timing, floor: Timing) -> Target:
        """The target of every engine step: pco within 1.5× of its SQL floor (wall)."""
        return self.target(f"{step}: pco ÷ SQL floor", customers, ours.wall / floor.wall, 1.5, "×")

    def write(self) -> None:
        load_end = os.getloadavg()
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        load = "{:.2f} {:.2f} {:.2f}".format
        lines = [
            "# pco benchmarks", "",
            f"Run {self.started:%Y-%m-%d %H:%M}–{dt.datetime.now(dt.UTC):%H:%M} UTC, sizes "
            f"{', '.join(f'{n:,}' for n in SIZES)} customers; {platform.platform()}, {os.cpu_count()} cores, "
            f"{ram:.1f} GiB RAM, Python {platform.python_version()}; load average (1, 5, 15 min) "
            f"{load(*self.load_start)} at the start, {load(*load_end)} at the end.", "",
            "Seconds, wall (CPU). pco ÷ floor: pco's time over the hand-written DuckDB SQL of the same step (1.00× "
            "= no overhead); peer ÷ pco: the speed-up over the usual way. Both sides of every row give the same "
            "numbers (checked; fitted parameters to 3 significant digits at least, the row gives the digits). "
            "Engine steps and floors: best of "
            f"{REPEAT} runs; fits, peers and reports: one run.", "",
            "| step | customers | pco | SQL floor | pco ÷ floor | peer | peer ÷ pco |",
            "|---|---|---|---|---|---|---|",
            *self.rows, "",
            "## Targets", "",
            "| target | customers | target (set for) | measured | |",
            "|---|---|---|---|---|",
            *[t.row() for t in self.targets], "",
            *[f"- {note}" for note in self.notes],
        ]
        self.path.write_text("\n".join(lines).rstrip() + "\n")
        print(f"\nwrote {self.path}")


@pytest.fixture(scope="session")
def table():
    """The results table; bench.md is written when the session ends (also after a failure)."""
    RESULTS.mkdir(exist_ok=True)
    results = Table(RESULTS / "bench.md")
    yield results
    results.write()


class BenchSample(type(Path())):
    """A sample folder that knows how many customers it holds."""

    customers: int = 0


@pytest.fixture(scope="session", params=SIZES, ids=lambda n: f"{n}")
def sample(request, tmp_path_factory, table):
    customers = request.param
    folder = BenchSample(tmp_path_factory.mktemp(f"bench{customers}") / "sample")
    timing, truth = measure(lambda: generate_sample(folder, customers=customers, seed=1, progress=False))
    table.add(f"generate the sample ({truth['counts']['orders']:,} orders)", customers, timing)
    folder.customers = customers
    return folder
