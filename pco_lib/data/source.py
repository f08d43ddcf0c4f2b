"""Reading the canonical tables through an Ibis connection.

DuckDB in-process by default, reading ``NAME.parquet`` or ``NAME.csv`` from a data folder. A user with a
warehouse passes their own Ibis connection instead (or names it with ``env:NAME``); the tables must then
exist under the canonical names (or be mapped with ``tables={"orders": "fct_orders"}``).

Everything downstream asks a :class:`DataSource` for Ibis tables and turns them into small pandas frames
as late as possible, so the heavy work runs where the data lives.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import ibis
import pandas as pd

from .model import BOOL, FILE_SUFFIXES, FLOAT, ID, INT, STRING, TABLES, TIMESTAMP, Table


class DataError(Exception):
    """Input data cannot be used; the message says which file and why."""


MISSING = "(missing)"  # the label of a missing group value, in every report


def latest_timestamp(*columns, error: type[Exception] = ValueError) -> pd.Timestamp:
    """The latest value over Ibis timestamp columns (naive UTC): the end of the data they cover."""
    values = [pd.Timestamp(c.max().to_pandas()) for c in columns]
    values = [v.tz_convert("UTC").tz_localize(None) if v.tzinfo else v for v in values if not pd.isna(v)]
    if not values:
        raise error("the data has no timestamps")
    return max(values)


def calendar_day(value, name: str, error: type[Exception] = ValueError) -> dt.date:
    """A date, timestamp or ISO string as a UTC calendar day; ``error`` (with ``name`` in the message) when it
    is not one."""
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise error(f"{name} must be a date or timestamp, not {value!r}") from exc
    if ts is pd.NaT:
        raise error(f"{name} must be a date or timestamp, not {value!r}")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.date()


def table_file(data_dir: str | Path, name: str) -> Path | None:
    """The file that holds table ``name`` in ``data_dir`` (Parquet preferred over CSV), or None."""
    data_dir = Path(data_dir)
    for suffix in FILE_SUFFIXES:
        path = data_dir / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


@dataclass
class DataSource:
    """Canonical tables behind one Ibis connection.

    Build one with :func:`connect`. ``table(name)`` returns an Ibis table expression with the canonical
    column types (ids as strings, timestamps as naive UTC, revenue as float); ``raw_table(name)`` returns
    the table as stored, for validation. Nothing is read until a result is executed.
    """

    con: object
    names: dict[str, str] = field(default_factory=dict)  # canonical name -> raw name in the connection
    data_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return name in self.names

    def _check_name(self, name: str) -> None:
        if name not in TABLES:
            raise KeyError(f"unknown table {name!r}; the data model has {', '.join(TABLES)}")
        if name not in self.names:
            where = f"in {self.data_dir}" if self.data_dir else "in the connection"
            raise DataError(f"table {name!r} not found {where}")

    def raw_table(self, name: str) -> ibis.Table:
        self._check_name(name)
        return self.con.table(self.names[name])

    def table(self, name: str) -> ibis.Table:
        self._check_name(name)
        if self.data_dir is not None:
            return self.con.table(name)  # typed view made by connect()
        return _typed(self.con.table(self.names[name]), TABLES[name])

    def fingerprint(self) -> str:
        """A short hash of the input files (name, size, modification time), or of the table names."""
        h = hashlib.sha256()
        if self.files:
            for name, path in sorted(self.files.items()):
                st = path.stat()
                h.update(f"{name}:{path.name}:{st.st_size}:{st.st_mtime_ns}".encode())
        else:
            h.update(json.dumps(sorted(self.names.items())).encode())
        return h.hexdigest()[:16]


_IBIS_TYPES = {ID: "string", STRING: "string", TIMESTAMP: "timestamp", FLOAT: "float64", INT: "int64",
               BOOL: "boolean"}
_SQL_TYPES = {ID: "VARCHAR", STRING: "VARCHAR", TIMESTAMP: "TIMESTAMP", FLOAT: "DOUBLE", INT: "BIGINT",
              BOOL: "BOOLEAN"}


def _typed(raw: ibis.Table, spec: Table) -> ibis.Table:
    """Cast the known columns of ``raw`` to their canonical Ibis types (for user connections)."""
    casts = {}
    for col in spec.columns:
        if col.name in raw.columns:
            casts[col.name] = raw[col.name].cast(_IBIS_TYPES[col.kind])
    return raw.mutate(**casts)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def raw_relation(con, path: Path, spec: Table) -> str:
    """DuckDB table function that reads ``path`` as stored.

    CSV: the data model's columns are read as text (so that a bad value is reported by validation rather
    than failing the read), other columns are sniffed.
    """
    if path.suffix == ".parquet":
        return f"read_parquet({_sql_string(str(path))})"
    header = f"read_csv({_sql_string(str(path))}, header=true, all_varchar=true)"
    present = [r[0] for r in con.raw_sql(f"DESCRIBE SELECT * FROM {header}").fetchall()]
    known = [c.name for c in spec.columns if c.name in present]
    types = ", ".join(f"{_sql_string(c)}: 'VARCHAR'" for c in known)
    return f"read_csv({_sql_string(str(path))}, header=true, types={{{types}}})"


def _exists(con, name: str) -> bool:
    """Whether the connection has a table ``name`` (asked table by table: Ibis 12's DuckDB
    ``list_tables`` fails with duckdb 2.0)."""
    try:
        con.table(name)
        return True
    except Exception:  # backends raise different errors for a missing table
        return False


CONNECTION_PREFIX = "env:"


def connection_from_environment(spec: str):
    """``env:NAME`` → an Ibis connection from the URL in the environment variable NAME (e.g.
    ``postgres://user:password@host:5432/shop``, ``snowflake://…``, ``bigquery://project/dataset``,
    ``duckdb:///path/shop.duckdb``): the URL — and the secrets in it — stay in the environment, never in
    report parameters, manifests or logs."""
    import os

    name = spec[len(CONNECTION_PREFIX):]
    url = os.environ.get(name)
    if not name or not url:
        raise DataError(f"data source {spec!r}: set the environment variable {name or 'NAME'} to an Ibis "
                        "connection URL (for example postgres://user:password@host/database)")
    try:
        return ibis.connect(url)
    except Exception as exc:  # every backend raises its own errors; the URL itself is never shown
        raise DataError(f"data source {spec!r}: cannot connect ({type(exc).__name__})") from None


FILE_OPENERS: dict = {}  # file suffix -> function opening a DataSource from such a file (see .mapping)


def connect(
    data_dir: str | Path | None = None,
    con: object | None = None,
    tables: dict[str, str] | None = None,
) -> DataSource:
    """Open the canonical tables.

    - ``connect("data/sample")``: DuckDB in memory; each ``NAME.parquet``/``NAME.csv`` becomes a raw view
      ``raw_NAME`` and a typed view ``NAME``. Files are only read, never written.
    - ``connect(con=ibis.postgres.connect(...))``: the tables already in a user's database, under their
      canonical names or mapped by ``tables``.
    - ``connect("mapping.yml")``: a raw export read through a mapping file (:mod:`.mapping`).
    - ``connect("env:PCO_WAREHOUSE")``: the same through the connection URL in an environment variable (see
      :func:`connection_from_environment`), which is how a report's ``data_dir`` parameter names a database.
    """
    opener = FILE_OPENERS.get(Path(str(data_dir)).suffix.lower()) if data_dir is not None and con is None else None
    if opener is not None:  # a mapping file (.yml) over a raw export: .mapping registers itself here
        return opener(data_dir)
    if data_dir is not None and str(data_dir).startswith(CONNECTION_PREFIX):
        con, tables = connection_from_environment(str(data_dir)), tables
    if con is not None:
        mapping = {n: (tables or {}).get(n, n) for n in TABLES}
        return DataSource(con=con, names={n: t for n, t in mapping.items() if _exists(con, t)})

    if data_dir is None:
        raise ValueError("give a data folder or an Ibis connection")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data folder {data_dir} does not exist")
    con = ibis.duckdb.connect()
    names, files = {}, {}
    for name, spec in TABLES.items():
        path = table_file(data_dir, name)
        if path is None:
            continue
        raw = f"raw_{name}"
        try:
            # CSV is parsed once into a table (DuckDB would otherwise push our TRY_CASTs into the reader,
            # which then fails on a bad value instead of returning NULL); Parquet stays a view.
            kind = "VIEW" if path.suffix == ".parquet" else "TABLE"
            con.raw_sql(f"CREATE {kind} {_quote(raw)} AS SELECT * FROM {raw_relation(con, path, spec)}")
            present = [r[0] for r in con.raw_sql(f"DESCRIBE {_quote(raw)}").fetchall()]
        except Exception as exc:  # duckdb raises many types; the message is what matters
            raise DataError(f"{path}: cannot be read ({str(exc).splitlines()[0]})") from None
        replace = [
            f"TRY_CAST({_quote(c.name)} AS {_SQL_TYPES[c.kind]}) AS {_quote(c.name)}"
            if c.kind != TIMESTAMP
            else f"CAST(TRY_CAST({_quote(c.name)} AS TIMESTAMPTZ) AS TIMESTAMP) AS {_quote(c.name)}"
            for c in spec.columns
            if c.name in present
        ]
        select = f"SELECT * REPLACE ({', '.join(replace)})" if replace else "SELECT *"
        con.raw_sql(f"CREATE VIEW {_quote(name)} AS {select} FROM {_quote(raw)}")
        files[name] = path
        names[name] = raw
    return DataSource(con=con, names=names, data_dir=data_dir, files=files)
