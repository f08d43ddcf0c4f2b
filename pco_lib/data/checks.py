"""Validation of the canonical tables: one schema per table (from :data:`pco_lib.data.TABLES`) plus rules
across tables.

Every rule is an Ibis expression that selects the offending rows; only their count and a few examples
come back to Python, so a check of ten million orders runs in the engine. A problem names the file, the
column, the rule, how many rows break it and a few example values.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import ibis
import pandas as pd

from .model import BOOL, FLOAT, INT, TABLES, TIMESTAMP
from .source import DataError, DataSource, connect
from .summaries import one_row

MAX_EXAMPLES = 5


# Duplicate rows are judged on these columns; assignments of one customer to two *different* variants of
# an experiment is its own, more specific rule.
DUPLICATE_KEYS = {name: spec.key for name, spec in TABLES.items() if spec.key}
DUPLICATE_KEYS["assignments"] = ("experiment_id", "customer_id", "variant")


# Tables whose rows belong to a customer and must not happen before the customer converted.
AFTER_CONVERSION = {
    "orders": "ordered_at",
    "subscriptions": "started_at",
    "events": "occurred_at",
    "assignments": "assigned_at",
    "surveys": "answered_at",
}


FOLDER = "-"  # the table of a problem with the whole data folder


@dataclass(frozen=True)
class Problem:
    """One broken rule."""

    table: str
    file: str | None
    column: str | None
    rule: str
    rows: int
    examples: tuple[str, ...] = ()
    severity: str = "error"  # "error" stops a report; "warning" is shown in it

    def __str__(self) -> str:
        where = self.file or (f"table {self.table}" if self.table != FOLDER else "")
        column = f": column {self.column}" if self.column else ""
        count = f" ({self.rows:,} row{'s' if self.rows != 1 else ''}" if self.rows else ""
        examples = f", e.g. {', '.join(self.examples)}" if self.examples else ""
        tail = f"{count}{examples})" if count else ""
        return f"{where}{column}: {self.rule}{tail}" if where else f"{self.rule}{tail}"


@dataclass(frozen=True)
class CheckReport:
    """The outcome of :func:`check_source`: problems, and what the tables hold."""

    problems: tuple[Problem, ...]
    tables: pd.DataFrame = field(default_factory=pd.DataFrame)
    location: str = ""

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_frame(self) -> pd.DataFrame:
        columns = ["severity", "table", "file", "column", "rule", "rows", "examples"]
        return pd.DataFrame(
            [{**{c: getattr(p, c) for c in columns[:-1]}, "examples": ", ".join(p.examples)}
             for p in self.problems],
            columns=columns,
        )

    def summary(self) -> str:
        lines = []
        if self.ok:
            lines.append(f"{self.location or 'data'}: OK")
            present = self.tables[self.tables.present] if len(self.tables) else self.tables
            for row in present.itertuples():
                span = ""
                if pd.notna(row.first):
                    span = f"  {pd.Timestamp(row.first):%Y-%m-%d} to {pd.Timestamp(row.last):%Y-%m-%d}"
                lines.append(f"  {row.table:<14}{row.rows:>12,} rows{span}")
            absent = [t for t in self.tables.table[~self.tables.present]] if len(self.tables) else []
            if absent:
                lines.append(f"  not present (optional): {', '.join(absent)}")
        else:
            n = len(self.errors)
            lines.append(f"{self.location or 'data'}: {n} problem{'s' if n != 1 else ''} found")
            lines += [f"  ✗ {p}" for p in self.errors]
        if self.warnings:
            lines.append("warnings:")
            lines += [f"  ! {p}" for p in self.warnings]
        return "\n".join(lines)


@dataclass
class _Rule:
    """A rule waiting to be counted: the rows of ``relation`` where ``where`` holds (or all its rows)."""

    table: str
    column: str | None
    rule: str
    relation: ibis.Table
    where: ibis.BooleanValue | None
    show: list[str]
    severity: str


class _Checker:
    """Rules are collected, then counted by :meth:`finish`: the row rules of every table (and view) in one
    query of one aggregate per relation, the rules over groups and joins one query each; examples are fetched
    only for the rules that are broken. Problems keep the order in which the rules were stated."""

    def __init__(self, source: DataSource, now: dt.datetime):
        self.source = source
        self.now = now
        self.pending: list[Problem | _Rule | Callable[[], list[Problem]]] = []
        self.usable: dict[str, set[str]] = {}  # table -> columns present (and table non-empty)
        self._relations: dict[tuple[str, str], ibis.Table] = {}

    def file(self, table: str) -> str | None:
        path = self.source.files.get(table)
        return path.name if path else None

    def problem(self, table, column, rule, rows=0, examples=(), severity="error") -> Problem:
        return Problem(table, self.file(table), column, rule, int(rows), tuple(examples), severity)

    def add(self, table, column, rule, rows=0, examples=(), severity="error"):
        self.pending.append(self.problem(table, column, rule, rows, examples, severity))

    def rule(self, table: str, column: str | None, rule: str, relation: ibis.Table, show: list[str],
             severity: str = "error", where: ibis.BooleanValue | None = None) -> None:
        """A problem when ``relation`` has rows (with ``where``: rows where it holds; such rules on the same
        relation are counted together); examples are the ``show`` columns of a few rows."""
        self.pending.append(_Rule(table, column, rule, relation, where, show, severity))

    def later(self, problems: Callable[[], list[Problem]]) -> None:
        """A rule with its own query (duplicates), run in its place by :meth:`finish`."""
        self.pending.append(problems)

    def finish(self) -> list[Problem]:
        counts: dict[int, int] = {}
        by_relation: dict[int, tuple[ibis.Table, list[int]]] = {}
        for i, item in enumerate(self.pending):
            if isinstance(item, _Rule) and item.where is not None:
                by_relation.setdefault(id(item.relation), (item.relation, []))[1].append(i)
        if by_relation:
            row = one_row([relation.aggregate(**{f"r{i}": self.pending[i].where.cast("int64").sum() for i in rules})
                           for relation, rules in by_relation.values()])
            counts = {i: 0 if pd.isna(row[f"r{i}"]) else int(row[f"r{i}"]) for _, rules in by_relation.values()
                      for i in rules}
        problems = []
        for i, item in enumerate(self.pending):
            if isinstance(item, Problem):
                problems.append(item)
            elif isinstance(item, _Rule):
                offending = item.relation if item.where is None else item.relation.filter(item.where)
                rows = counts[i] if i in counts else int(offending.count().to_pandas())
                if rows:
                    sample = offending.select(*item.show).limit(MAX_EXAMPLES).to_pandas()
                    problems.append(self.problem(item.table, item.column, item.rule, rows,
                                                 [_fmt_row(r) for r in sample.itertuples(index=False)],
                                                 item.severity))
            else:
                problems += item()
        self.pending = []
        return problems

    def has(self, table: str, *columns: str) -> bool:
        return table in self.usable and set(columns) <= self.usable[table]

    def _raw(self, name: str) -> ibis.Table:
        """One expression per table, so that its row rules are counted in one query (:meth:`finish`)."""
        if (name, "raw") not in self._relations:
            self._relations[name, "raw"] = self.source.raw_table(name)
        return self._relations[name, "raw"]

    def _typed(self, name: str) -> ibis.Table:
        if (name, "typed") not in self._relations:
            self._relations[name, "typed"] = self.source.table(name)
        return self._relations[name, "typed"]

    # ----------------------------------------------------------------------------------------------

    def schema(self) -> None:
        stored = [name for name in TABLES if name not in self.source.empty and self.source.has(name)]
        rows = one_row([self._raw(n).aggregate(**{n: self._raw(n).count()}) for n in stored]) if stored else {}
        for name, spec in TABLES.items():
            if name in self.source.empty:
                self.add(name, None, "the table is empty; it counts as absent", severity="warning")
                continue
            if not self.source.has(name):
                if spec.required:
                    where = self.source.data_dir or "the connection"
                    self.pending.append(Problem(name, f"{name}.parquet", None,
                                                 f"required table is missing (expected {name}.parquet or "
                                                 f"{name}.csv in {where})", 0))
                continue
            raw, typed = self._raw(name), self._typed(name)
            if int(rows[name]) == 0:
                self.add(name, None, "the table is empty")
                continue
            present = set(raw.columns)
            for col in spec.required_columns:
                if col not in present:
                    self.add(name, col, f"required column is missing (the file has {', '.join(raw.columns)})")
            self.usable[name] = present & {c.name for c in spec.columns}
            for col in spec.columns:
                if col.name not in present:
                    continue
                bad = _unparseable(raw, col.name, col.kind)
                if bad is not None:
                    what = ("unparseable timestamp" if col.kind == TIMESTAMP
                            else f"wrong type: expected {_KIND_WORDS[col.kind]}")
                    self.rule(name, col.name, what, raw, [col.name], where=bad)
                keys = [c for c in spec.key if c in present and c != col.name][:2]
                if col.kind == FLOAT:
                    self.rule(name, col.name, f"{col.name} must be a finite number", typed, [*keys, col.name],
                              where=typed[col.name].isnan() | typed[col.name].isinf())
                if not col.nullable:
                    self.rule(name, col.name, "empty value where one is required", raw, keys or [col.name],
                              where=_empty(raw[col.name]))
            key = DUPLICATE_KEYS.get(name, ())
            if key and set(key) <= present:
                self.later(lambda name=name, key=key, typed=typed: self._duplicates(name, key, typed))

    def _duplicates(self, name: str, key: tuple[str, ...], typed: ibis.Table) -> list[Problem]:
        keyed = typed.filter(*[typed[c].notnull() for c in key])  # empty keys are reported above
        groups = keyed.group_by(list(key)).aggregate(n=keyed.count())
        dup = groups.filter(groups.n > 1)
        found = dup.aggregate(groups=dup.count(), rows=dup.n.sum()).to_pandas().iloc[0]
        if not found["groups"]:
            return []
        sample = dup.select(*key).limit(MAX_EXAMPLES).to_pandas()
        return [self.problem(name, ", ".join(key), f"duplicate {' + '.join(key)}", int(found["rows"]),
                             [_fmt_row(r) for r in sample.itertuples(index=False)])]

    def values(self) -> None:
        t = self._typed
        # non-finite values are reported by the schema rules, so -inf is not "negative" as well
        if self.has("orders", "revenue"):
            o = t("orders")
            self.rule("orders", "revenue", "negative revenue", o,
                      ["order_id", "revenue"] if self.has("orders", "order_id") else ["revenue"],
                      where=(o.revenue < 0) & ~o.revenue.isinf())
        if self.has("subscriptions", "mrr"):
            s = t("subscriptions")
            self.rule("subscriptions", "mrr", "negative mrr", s, ["customer_id", "mrr"],
                      where=(s.mrr < 0) & ~s.mrr.isinf())
        if self.has("subscriptions", "started_at", "ended_at"):
            s = t("subscriptions")
            self.rule("subscriptions", "ended_at", "subscription ends before it starts", s,
                      ["customer_id", "started_at", "ended_at"], where=s.ended_at < s.started_at)
        if self.has("experiments", "weight"):
            e = t("experiments")
            self.rule("experiments", "weight", "weight must be greater than 0", e,
                      ["experiment_id", "variant", "weight"], where=(e.weight <= 0) & ~e.weight.isinf())
        if self.has("experiments", "experiment_id", "is_control"):
            e = t("experiments")
            per = e.group_by("experiment_id").aggregate(controls=e.is_control.cast("int64").sum())
            self.rule("experiments", "is_control", "each experiment needs exactly one control variant",
                      per.filter(per.controls.fill_null(0) != 1), ["experiment_id", "controls"])
        for column, low, high, name in (("nps", 0, 10, "NPS"), ("csat", 1, 5, "CSAT")):
            if self.has("surveys", column):
                raw = self._raw("surveys")
                stored = raw[column]
                v = stored.cast("float64") if stored.type().is_numeric() else stored.try_cast("float64")
                self.rule("surveys", column, f"{name} must be a whole number from {low} to {high}", raw, [column],
                          where=v.notnull() & ((v < low) | (v > high) | (v != v.floor())))

    def times(self) -> None:
        now = ibis.literal(self.now.replace(tzinfo=None))
        for name, spec in TABLES.items():
            for col in spec.columns:
                if col.kind == TIMESTAMP and self.has(name, col.name):
                    t = self._typed(name)
                    self.rule(name, col.name, f"{_FUTURE} (after {self.now:%Y-%m-%d %H:%M} UTC)", t,
                              [col.name], where=t[col.name] > now)

    def relations(self) -> None:
        if not self.has("customers", "customer_id"):
            return
        customers = self._typed("customers")
        ids = customers.select("customer_id").distinct()
        for name in ["orders", "subscriptions", "events", "assignments", "surveys"]:
            if self.has(name, "customer_id"):
                t = self._typed(name)
                t = t.filter(t.customer_id.notnull())  # empty ids are reported by the schema rules
                self.rule(name, "customer_id", "customer_id not found in customers",
                          t.anti_join(ids, "customer_id"), ["customer_id"])
        if self.has("leads", "customer_id"):
            leads = self._typed("leads")
            linked = leads.filter(leads.customer_id.notnull())
            self.rule("leads", "customer_id", "customer_id not found in customers",
                      linked.anti_join(ids, "customer_id"), ["lead_id", "customer_id"])
            if self.has("leads", "created_at") and self.has("customers", "converted_at"):
                j = linked.join(customers.select("customer_id", "converted_at"), "customer_id")
                self.rule("leads", "created_at", "lead created after its customer converted",
                          j.filter(j.created_at > j.converted_at), ["lead_id", "created_at", "converted_at"])
        if self.has("customers", "converted_at"):
            conv = customers.select("customer_id", "converted_at")
            for name, col in AFTER_CONVERSION.items():
                if self.has(name, "customer_id", col):
                    t = self._typed(name)
                    j = t.join(conv, "customer_id")
                    self.rule(name, col, "timestamp before the customer's conversion",
                              j.filter(j[col] < j.converted_at), ["customer_id", col, "converted_at"])
        if self.has("assignments", "experiment_id", "customer_id", "variant"):
            a = self._typed("assignments")
            per = a.group_by(["experiment_id", "customer_id"]).aggregate(variants=a.variant.nunique())
            self.rule("assignments", "variant", "customer assigned to more than one variant of an experiment",
                      per.filter(per.variants > 1), ["experiment_id", "customer_id"])
            if self.has("experiments", "experiment_id", "variant"):
                e = self._typed("experiments").select("experiment_id", "variant").distinct()
                named = a.filter(a.experiment_id.notnull() & a.variant.notnull())
                self.rule("assignments", "variant", "experiment and variant not listed in experiments",
                          named.anti_join(e, ["experiment_id", "variant"]), ["experiment_id", "variant"])

_KIND_WORDS = {INT: "a whole number", FLOAT: "a number", BOOL: "true or false", TIMESTAMP: "a timestamp"}
_TRY_TYPES = {TIMESTAMP: "timestamp('UTC')", FLOAT: "float64", INT: "float64", BOOL: "boolean"}


def _unparseable(raw: ibis.Table, column: str, kind: str) -> ibis.BooleanValue | None:
    """Whether the stored value in ``column`` cannot be read as ``kind`` (None: the type already fits)."""
    stored = raw[column].type()
    if kind not in _TRY_TYPES or stored.is_unknown():  # unknown: e.g. DuckDB's TIMESTAMPTZ_NS, a timestamp
        return None
    fits = {TIMESTAMP: stored.is_timestamp() or stored.is_date(), FLOAT: stored.is_numeric(),
            INT: stored.is_numeric(), BOOL: stored.is_boolean()}[kind]
    if fits:
        return None
    return raw[column].notnull() & raw[column].try_cast(_TRY_TYPES[kind]).isnull()


def _empty(stored: ibis.Value) -> ibis.BooleanValue:
    """NULL, or text that is blank."""
    return stored.isnull() | (stored.strip() == "") if stored.type().is_string() else stored.isnull()


def _fmt(value) -> str:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else str(value)
    return repr(value) if isinstance(value, str) else str(value)


def _fmt_row(row) -> str:
    values = [_fmt(v) for v in row]
    return values[0] if len(values) == 1 else "(" + ", ".join(values) + ")"


def check_source(source: DataSource, now: dt.datetime | None = None, location: str = "") -> CheckReport:
    """Validate every present table of ``source`` (timestamps after ``now``, default the current UTC time,
    are in the future)."""
    from .summaries import table_overview

    now = now or dt.datetime.now(dt.UTC)
    checker = _Checker(source, now)
    checker.schema()
    checker.values()
    checker.times()
    checker.relations()
    problems = checker.finish()
    usable = [n for n in TABLES if n in checker.usable]
    tables = table_overview(source, only=usable) if usable else pd.DataFrame(
        columns=["table", "present", "rows", "first", "last"])
    return CheckReport(tuple(problems), tables, location or str(source.data_dir or "connection"))


CACHE_ENV = "PCO_CHECK_CACHE"  # folder of remembered validations (the runner sets it for a report's kernel)
CACHE_KEEP = 20  # validations kept per cache folder, newest first
_FUTURE = "timestamp in the future"


def _cache_key(source: DataSource) -> str | None:
    """What a validation depends on: the input files (full path, size, modification time, via the source's
    fingerprint), the mapping, and the code of the rules. None for a database, whose tables change unseen."""
    if not source.files:
        return None
    code = b"".join((Path(__file__).parent / name).read_bytes() for name in ("checks.py", "model.py"))
    h = hashlib.sha256(code)
    h.update(f"{source.fingerprint()}|{source.data_dir and Path(source.data_dir).resolve()}".encode())
    h.update(repr(sorted((n, str(Path(p).resolve())) for n, p in source.files.items())).encode())
    return h.hexdigest()[:20]


def _to_json(report: CheckReport) -> str:
    tables = [{k: (None if pd.isna(v) else v.isoformat() if isinstance(v, pd.Timestamp) else
                   int(v) if k == "rows" else v) for k, v in row.items()}
              for row in report.tables.to_dict("records")]
    return json.dumps({"problems": [asdict(p) for p in report.problems], "tables": tables})


def _from_json(text: str, location: str) -> CheckReport:
    payload = json.loads(text)
    problems = tuple(Problem(**{**p, "examples": tuple(p["examples"])}) for p in payload["problems"])
    tables = pd.DataFrame(payload["tables"], columns=["table", "present", "rows", "first", "last"])
    for col in ("first", "last"):
        tables[col] = [None if v is None else pd.Timestamp(v) for v in tables[col]]
    return CheckReport(problems, tables.astype({"rows": "Int64", "present": bool}), location)


def check_source_cached(source: DataSource, cache_dir: str | Path | None = None, location: str = "",
                        ) -> tuple[CheckReport, bool]:
    """:func:`check_source`, done once per version of the data: the outcome is kept in ``cache_dir``
    (default ``$PCO_CHECK_CACHE``; none: no cache) under a key of the input files and the rules' code, so
    every report of a scheduled run, and data_overview's own page, reuse one validation. A change to any
    input file (size or modification time), to the mapping or to pco's rules is a new key. An outcome with
    timestamps in the future is not kept (they stop being in the future). Returns the report and whether it
    came from the cache."""
    cache_dir = cache_dir or os.environ.get(CACHE_ENV)
    key = _cache_key(source) if cache_dir else None
    where = location or str(source.data_dir or "connection")
    path = Path(cache_dir) / f"checks-{key}.json" if key else None
    if path is not None:
        try:
            return _from_json(path.read_text(), where), True
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not there yet, or unreadable: validate
    report = replace(check_source(source, location=location), location=where)
    if path is not None and not any(p.rule.startswith(_FUTURE) for p in report.problems):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(_to_json(report))
            os.replace(tmp, path)
            for old in sorted(path.parent.glob("checks-*.json"), key=lambda p: p.stat().st_mtime)[:-CACHE_KEEP]:
                old.unlink(missing_ok=True)
        except OSError:
            pass  # a cache that cannot be written only costs time
    return report, False


def check_folder(data_dir: str | Path, now: dt.datetime | None = None) -> CheckReport:
    """Validate a data folder; a missing folder or unreadable files are problems, not an exception."""
    try:
        source = connect(data_dir)
    except DataError as exc:
        problems = [Problem(p.table, p.file, p.column, p.rule, 0) for p in exc.problems]
        return CheckReport(tuple(problems) or (Problem(FOLDER, None, None, str(exc), 0),),
                           location=str(data_dir))
    return check_source(source, now=now, location=str(data_dir))
