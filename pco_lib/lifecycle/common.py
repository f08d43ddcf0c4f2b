"""Helpers shared by the lifecycle modules: input tables, calendar days and the result objects.

Every per-customer quantity is an Ibis expression (``*_expr``), so the heavy work runs where the data lives;
the functions without ``_expr`` execute it and return small pandas frames or result objects. Inputs are Ibis
tables (``source.table("orders")``) or pandas frames (wrapped with ``ibis.memtable``).

**Days.** ``as_of`` is a calendar day (UTC): everything on or before that day counts, nothing after it.
Days between two moments are whole calendar days (``as_of − date``), so an order placed on ``as_of`` is 0
days old. Orders of one customer on the same calendar day form one *purchase day* (as in
:mod:`pco_lib.clv`) for gaps between purchases; counts of orders count rows. Lead time to convert is the
exception: it is elapsed time, ``⌊Δ / 1 day⌋ + 1`` (day 1 = the first 24 hours), as
:func:`pco_lib.stats.survival.check_lifetimes` wants durations ≥ 1.

Group tables hide cells describing fewer than ``min_cell_size`` customers (NaN and ``suppressed`` = True).
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import ibis
import pandas as pd

from ..data.privacy import check_min_cell_size
from ..data.source import MISSING, calendar_day


class SegmentError(ValueError):
    """Segments cannot be computed (missing column, bad rule, too little data); the message says why."""


ALL = "all"
DAY_SECONDS = 86_400


def _table(value, name: str, required: Sequence[str]) -> ibis.Table:
    t = ibis.memtable(value) if isinstance(value, pd.DataFrame) else value
    missing = [c for c in required if c not in t.columns]
    if missing:
        raise SegmentError(f"{name} needs the column(s) {', '.join(missing)}; it has {', '.join(t.columns)}")
    return t


def _day(value, name: str) -> dt.date:
    return calendar_day(value, name, SegmentError)


def _timestamp(value, name: str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts is pd.NaT:
        raise SegmentError(f"{name} must be a timestamp, not {value!r}")
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _date(column) -> ibis.Value:
    return column if column.type().is_date() else column.date()


def _label(column) -> ibis.Value:
    return column.cast("string").fill_null(MISSING)


def _days(later, earlier) -> ibis.Value:
    """Whole calendar days from ``earlier`` to ``later`` (dates)."""
    return later.delta(earlier, unit="day").cast("int64")


def _min_cell(value) -> int:
    return check_min_cell_size(value, SegmentError)


def _customers(customers, by: Sequence[str] = ()) -> ibis.Table:
    c = _table(customers, "customers", ["customer_id", "converted_at", *by])
    return c.mutate(customer_id=c.customer_id.cast("string"), _conv=_date(c.converted_at))


_KEPT: list[dict] = []  # the views kept by each open shared_views(), innermost last: {expression: (table, release)}


@contextmanager
def shared_views() -> Iterator[None]:
    """Inside, the per-customer views that one report asks for many times are computed once and kept until
    the block ends: purchase days (asked for 10× by lifecycle_segments), RFM scores (4×) and early behaviour
    (2×). A view is found again by its expression, so views of pandas frames, which become a new memtable on
    each call, are computed each time but still right.

    On DuckDB a kept view is a Parquet file in a temporary folder, read back as a view, so that the engine's
    memory stays free for the queries: at 10M customers the purchase days (62M rows) took 1.5 GB of a 1.8 GiB
    limit (``--memory``) as a DuckDB temp table, plus 0.9 GB spilled to disk. Other engines keep a temp table
    (``Table.cache()``). Stage tables are not kept across sections: at a million customers each held ~0.6 GB
    of engine memory for a saving of seconds."""
    kept: dict = {}
    _KEPT.append(kept)
    try:
        yield
    finally:
        _KEPT.pop()
        for _, release in kept.values():
            release()


def _shared(view: ibis.Table) -> ibis.Table:
    """``view`` kept inside :func:`shared_views` (computed on first use), else ``view`` itself."""
    if not _KEPT:
        return view
    kept = _KEPT[-1]
    key = view.op()
    if key not in kept:
        kept[key] = _keep(view)
    return kept[key][0]


def _keep(view: ibis.Table) -> tuple[ibis.Table, Callable[[], None]]:
    """``view`` computed once: (the stored table, a function that drops it)."""
    backend = view._find_backend(use_default=True)
    if getattr(backend, "name", None) != "duckdb":
        cached = view.cache()
        return cached, cached.release
    folder = Path(tempfile.mkdtemp(prefix="pco-view-"))
    try:
        view.to_parquet(folder / "view.parquet")
        table = backend.read_parquet(folder / "view.parquet")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise

    def release():
        backend.drop_view(table.get_name(), force=True)
        shutil.rmtree(folder, ignore_errors=True)

    return table, release


@contextmanager
def _kept(view: ibis.Table) -> Iterator[ibis.Table]:
    """``view`` stored (:func:`_keep`) for the block, dropped after it."""
    table, release = _keep(view)
    try:
        yield table
    finally:
        release()


def _purchase_days(orders, as_of: dt.date | None = None) -> ibis.Table:
    """Distinct (customer_id, day) with the day's orders and revenue (on or before ``as_of``, when given).

    Revenue is a decimal with 6 places, so sums over it are exact: the engine's parallel float sums would
    differ in the last bits from run to run and move customers across rank boundaries (VIP, RFM scores).
    Callers cast their per-customer sums to float."""
    o = _table(orders, "orders", ["customer_id", "ordered_at", "revenue"])
    o = o.select(customer_id=o.customer_id.cast("string"), day=_date(o.ordered_at),
                 revenue=o.revenue.cast("decimal(38, 6)"))
    p = _shared(o.group_by(["customer_id", "day"]).aggregate(orders=o.count(), revenue=o.revenue.sum()))
    return p if as_of is None else p.filter(p.day <= ibis.literal(as_of))


def _complete(e: ibis.Table, day: dt.date, days: int) -> ibis.Value:
    """The first ``days`` (conversion day = day 0 … day ``days − 1``) are all on or before ``day``."""
    return _days(ibis.literal(day), e.converted) >= days - 1


class _Result:
    """Result objects: ``to_frame()`` is the headline table, the HTML repr shows it."""

    def to_frame(self) -> pd.DataFrame:  # pragma: no cover - overridden
        raise NotImplementedError

    def _repr_html_(self) -> str:
        return f"<p><b>{type(self).__name__}</b></p>" + self.to_frame().to_html(float_format="%.4g")
