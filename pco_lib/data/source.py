"""Reading the canonical tables through an Ibis connection.

DuckDB in-process by default, reading ``NAME.parquet`` or ``NAME.csv`` from a data folder. A user with a
warehouse passes their own Ibis connection instead (or names it with ``env:NAME``); the tables must then
exist under the canonical names (or be mapped with ``tables={"orders": "fct_orders"}``).

Everything downstream asks a :class:`DataSource` for Ibis tables and turns them into small pandas frames
as late as possible, so the heavy work runs where the data lives.
"""

from __future__ import annotations

import codecs
import datetime as dt
import hashlib
import itertools
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import ibis
import pandas as pd

from .model import BOOL, FILE_SUFFIXES, FLOAT, ID, INT, STRING, TABLES, TIMESTAMP, Column, Table


@dataclass(frozen=True)
class FileProblem:
    """A file of a data folder that cannot be read as a table (found before any row is checked)."""

    table: str
    file: str | None  # the file's name; None when the problem is the table's (two files for it)
    rule: str
    column: str | None = None

    def __str__(self) -> str:
        column = f": column {self.column}" if self.column else ""
        return f"{self.file or self.table}{column}: {self.rule}"


class DataError(Exception):
    """Input data cannot be used; the message says which file and why (``problems``: one per file, when
    a data folder has files that cannot be read)."""

    def __init__(self, message: str, problems: tuple[FileProblem, ...] = ()):
        super().__init__(message)
        self.problems = problems

    @classmethod
    def of(cls, *problems: FileProblem) -> DataError:
        return cls("\n".join(map(str, problems)), problems)


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
    """The file that holds table ``name`` in ``data_dir`` (``NAME.parquet`` or ``NAME.csv``), or None.

    Raises :class:`DataError` when both are present, when the file is a link that leaves the folder (it is
    not read) or when it is a folder.
    """
    data_dir = Path(data_dir)
    found = [data_dir / f"{name}{suffix}" for suffix in FILE_SUFFIXES
             if (data_dir / f"{name}{suffix}").is_symlink() or (data_dir / f"{name}{suffix}").exists()]
    if len(found) > 1:
        names = " and ".join(p.name for p in sorted(found))
        raise DataError.of(FileProblem(name, None, f"both {names} are present; keep one"))
    if not found:
        return None
    path = found[0]
    if path.is_symlink() and _leaves(path, data_dir):
        raise DataError.of(FileProblem(name, path.name, "a link to a file outside the data folder; copy the "
                                                        "file in instead"))
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "a link to a file that does not exist"
        raise DataError.of(FileProblem(name, path.name, what))
    return path


def _leaves(link: Path, folder: Path) -> bool:
    """Whether ``link`` points outside ``folder`` (a loop of links counts as pointing nowhere)."""
    try:
        return not link.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False


@dataclass
class DataSource:
    """Canonical tables behind one Ibis connection.

    Build one with :func:`connect`. ``table(name)`` returns an Ibis table expression with the canonical
    column types (ids as strings, timestamps as naive UTC, revenue as float); ``raw_table(name)`` returns
    the table as stored, for validation. Nothing is read until a result is executed. An optional table
    whose file has no rows counts as absent (``has`` is False); its name is in ``empty``.
    """

    con: object
    names: dict[str, str] = field(default_factory=dict)  # canonical name -> raw name in the connection
    data_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)
    empty: list[str] = field(default_factory=list)  # optional tables whose file has no rows: left out

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
    """Cast the known columns of ``raw`` to their canonical Ibis types (for user connections); blank text
    is empty (NULL)."""
    casts = {}
    for col in spec.columns:
        if col.name in raw.columns:
            value = raw[col.name].cast(_IBIS_TYPES[col.kind])
            if col.kind in (ID, STRING):  # blank text is empty, as in a data folder
                value = (value.strip() == "").ifelse(ibis.null("string"), value)
            casts[col.name] = value
    return raw.mutate(**casts)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def raw_relation(con, path: Path, spec: Table) -> str:
    """DuckDB table function that reads ``path`` as stored.

    Parquet: read with ``can_have_nan`` (a writer's min/max statistics leave NaN out; without it DuckDB
    folds ``isnan`` to false and ``max`` skips NaN). CSV: the data model's columns are read as text (so that
    a bad value is reported by validation rather than failing the read), other columns are sniffed.
    """
    if path.suffix == ".parquet":
        return f"read_parquet({_sql_string(str(path))}, can_have_nan=true)"
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
DATA_ENV = "PCO_DATA"  # the data reports read when none is given: a folder, a mapping file or env:NAME
SAMPLE_DIR = Path(__file__).resolve().parents[2] / "data" / "sample"  # generated by `make sample`


def default_data() -> str:
    """Where a report reads when its ``data_dir`` is empty: ``$PCO_DATA`` when set (so JupyterLab, ``pco run``
    and ``pco run-all`` all read an analyst's own data once it is exported), otherwise the sample."""
    given = os.environ.get(DATA_ENV, "").strip()
    if not given:
        return str(SAMPLE_DIR)
    return given if given.startswith(CONNECTION_PREFIX) else str(Path(given).expanduser().resolve())



ENGINE_MEMORY_ENV = "PCO_ENGINE_MEMORY"  # memory the in-process engine (DuckDB) may use, e.g. 4GB; see engine_memory
_SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20,
               "GIB": 2**30, "TIB": 2**40}
_spill_folders = itertools.count()


def engine_memory(text: str, what: str = ENGINE_MEMORY_ENV) -> int:
    """Bytes in a memory size such as ``8GB``, ``512MB`` or ``1.5GiB`` (at least 100 MB)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)\s*", str(text), flags=re.IGNORECASE)
    if not m:
        raise DataError(f"{what}: {text!r} is not a memory size; write it like 8GB, 512MB or 1.5GiB")
    size = int(float(m.group(1)) * _SIZE_UNITS[m.group(2).upper()])
    if size < 100 * 10**6:
        raise DataError(f"{what}: {text!r} is less than 100MB, too little for the engine to work in")
    return size


def quiet_duckdb(con=None):
    """``con`` (default: a new in-memory DuckDB) set up for reports; other backends are returned as they are.

    - DuckDB's progress bar is off: outside Jupyter it draws itself on the process's output for queries over
      2 s (at a million customers: validation, clv), which ends up in a scheduler's log. Inside a Jupyter
      kernel DuckDB refuses to change the setting without ipywidgets, and draws nothing without it, so it is
      left alone there.
    - Its allocator returns freed memory to the system in the background (at 10M customers 1 GB of the
      2.6 GB it kept after the clv aggregation, within 10 s).
    - With ``PCO_ENGINE_MEMORY`` (``pco run --memory``) it uses at most that much memory and spills the rest
      of a large aggregation or sort to disk, which is slower (at 10M customers the clv aggregation took
      33 s in 4GB and 51 s in 2GB, against 23 s with DuckDB's default of 80% of the machine's memory).
    - It spills into a folder of its own under the system's temporary folder, never into the working
      directory (a report's folder); DuckDB removes the folder when the connection closes.
    """
    import duckdb

    con = ibis.duckdb.connect() if con is None else con
    if getattr(con, "name", None) != "duckdb":
        return con
    try:
        con.raw_sql("SET enable_progress_bar = false")
    except duckdb.InvalidInputException:  # in a kernel: "required package 'ipywidgets' is missing"
        pass
    spill = Path(tempfile.gettempdir()) / f"pco-duckdb-{os.getpid()}-{next(_spill_folders)}"
    con.raw_sql("SET temp_directory = '" + str(spill).replace("'", "''") + "'")
    con.raw_sql("SET allocator_background_threads = true")
    limit = os.environ.get(ENGINE_MEMORY_ENV, "").strip()
    if limit:
        con.raw_sql(f"SET memory_limit = '{engine_memory(limit) // 10**6}MB'")
    return con


def connection_from_environment(spec: str):
    """``env:NAME`` → an Ibis connection from the URL in the environment variable NAME (e.g.
    ``postgres://user:password@host:5432/shop``, ``snowflake://…``, ``bigquery://project/dataset``,
    ``duckdb:///path/shop.duckdb``): the URL — and the secrets in it — stay in the environment, never in
    report parameters, manifests or logs."""
    name = spec[len(CONNECTION_PREFIX):]
    url = os.environ.get(name)
    if not name or not url:
        raise DataError(f"data source {spec!r}: set the environment variable {name or 'NAME'} to an Ibis "
                        "connection URL (for example postgres://user:password@host/database)")
    try:
        con = ibis.connect(url)
    except Exception as exc:  # every backend raises its own errors; the URL itself is never shown
        raise DataError(f"data source {spec!r}: cannot connect ({type(exc).__name__})") from None
    return quiet_duckdb(con)  # a bad PCO_ENGINE_MEMORY is its own DataError, not "cannot connect"


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
    - ``connect("")``: :func:`default_data` (``$PCO_DATA``, else the sample).
    """
    if data_dir == "" and con is None:
        data_dir = default_data()
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
    if data_dir.is_file():
        raise DataError(f"{data_dir} is a file, not a data folder; give the folder that holds it "
                        f"({data_dir.parent})")
    if not data_dir.is_dir():
        raise DataError(f"data folder {data_dir} does not exist")
    source = DataSource(con=quiet_duckdb(), data_dir=data_dir)
    problems: list[FileProblem] = []
    for name, spec in TABLES.items():
        try:
            path = table_file(data_dir, name)
            if path is not None:
                _add_file(source, name, spec, path)
        except DataError as exc:  # every file is looked at, so that one message lists them all
            problems += exc.problems
    if problems:
        raise DataError.of(*problems)
    return source


def _add_file(source: DataSource, name: str, spec: Table, path: Path) -> None:
    """Make the raw view ``raw_NAME`` and the typed view ``NAME`` of the table in ``path``; an empty
    optional table is left out (listed in ``source.empty``)."""
    con, raw = source.con, f"raw_{name}"
    if path.stat().st_size == 0:  # not even a header
        if spec.required:
            raise DataError.of(FileProblem(name, path.name, "the file is empty"))
        source.files[name] = path
        source.empty.append(name)
        return
    try:
        stored = _stored_columns(con, path)
    except Exception as exc:  # duckdb and pyarrow raise many types; the message is what matters
        raise _unreadable(name, path, exc) from None
    _check_names(name, path, stored)
    # CSV is parsed once into a table (DuckDB would otherwise push our TRY_CASTs into the reader, which
    # then fails on a bad value instead of returning NULL); Parquet stays a view.
    kind = "VIEW" if path.suffix == ".parquet" else "TABLE"
    try:
        con.raw_sql(f"CREATE {kind} {_quote(raw)} AS SELECT * FROM {raw_relation(con, path, spec)}")
        stored_types = {r[0]: r[1] for r in con.raw_sql(f"DESCRIBE {_quote(raw)}").fetchall()}
    except Exception as exc:
        raise _unreadable(name, path, exc) from None
    source.files[name] = path
    if not spec.required and not con.raw_sql(f"SELECT 1 FROM {_quote(raw)} LIMIT 1").fetchall():
        con.raw_sql(f"DROP {kind} {_quote(raw)}")
        source.empty.append(name)
        return
    visible = _visible_text_columns(path) if path.suffix == ".parquet" else set()
    typed = {c.name: _typed_sql(c, stored_types[c.name], c.name in visible)
             for c in spec.columns if c.name in stored_types}
    replace = [f"{sql} AS {_quote(name)}" for name, sql in typed.items() if sql != _quote(name)]
    select = f"SELECT * REPLACE ({', '.join(replace)})" if replace else "SELECT *"
    con.raw_sql(f"CREATE VIEW {_quote(name)} AS {select} FROM {_quote(raw)}")
    source.names[name] = raw


def _unreadable(name: str, path: Path, exc: Exception) -> DataError:
    """The problem of a file the engine cannot read: its encoding when a CSV is not UTF-8, else the first
    line of the engine's message (later lines may quote the file)."""
    bad_line = _first_bad_utf8_line(path) if path.suffix == ".csv" else None
    rule = (f"not UTF-8 text (first bad byte at line {bad_line:,}); save it as UTF-8" if bad_line
            else f"cannot be read ({str(exc).splitlines()[0]})")
    return DataError.of(FileProblem(name, path.name, rule))


def _typed_sql(column: Column, stored: str = "VARCHAR", visible: bool = False) -> str:
    """The SQL that reads a column stored as DuckDB type ``stored`` as its canonical type; blank text is
    empty (NULL). Only what needs it is converted: a column stored in its canonical type is read as it is
    (DuckDB can then answer min/max from Parquet statistics and push join filters into the scan), a UTC
    timestamp is only made naive, and text is parsed with TRY_CAST (a bad value becomes NULL, which
    validation reports). ``visible``: the file's statistics show that no value of this text column is
    blank (see :func:`_visible_text_columns`), so it is read as stored."""
    name = _quote(column.name)
    target = _SQL_TYPES[column.kind]
    if column.kind in (ID, STRING):
        if stored == "VARCHAR" and visible:
            return name
        if stored in _INTEGER_TYPES:  # a number as text is never blank
            return f"CAST({name} AS VARCHAR)"
        text = name if stored == "VARCHAR" else f"TRY_CAST({name} AS VARCHAR)"
        # only text that starts with a space or a control character (or is empty) is trimmed: text ≥ '!'
        # (bytewise) starts with a visible character (0.39 -> 0.27 s CPU on 13M ids, against an ascii() test)
        return f"CASE WHEN {text} >= '!' THEN {text} WHEN TRIM({text}) = '' THEN NULL ELSE {text} END"
    if stored == target:
        return name
    if column.kind == TIMESTAMP:
        if stored == "TIMESTAMP WITH TIME ZONE":
            return naive_utc_sql(name)
        if stored.startswith("TIMESTAMP") or stored == "DATE":
            return f"CAST({name} AS TIMESTAMP)"
        return f"CAST(TRY_CAST({name} AS TIMESTAMPTZ) AS TIMESTAMP)"  # text: an offset is honoured
    return f"TRY_CAST({name} AS {target})"


_INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                  "UBIGINT", "UHUGEINT"}


def _visible_text_columns(path: Path) -> set[str]:
    """The text columns of a Parquet file in which every value starts with a visible character, so none is
    blank: by the file's statistics alone, every row group's minimum is ≥ "!" bytewise (a truncated minimum
    is a prefix of the true one, still a lower bound); a row group of nulls only has none and passes.

    Reading such a column as stored, without the blank test, lets DuckDB push a join's filter on the ids
    into the scan (experiment arms at 1M customers: 1.34× → 1.06× the SQL floor)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path)
    except Exception:  # unreadable metadata: the blank test stays
        return set()
    visible = {meta.schema.column(j).path for j in range(meta.num_columns)
               if meta.schema.column(j).physical_type == "BYTE_ARRAY"}
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        for j in range(meta.num_columns):
            chunk = group.column(j)
            if chunk.path_in_schema not in visible:
                continue
            stats = chunk.statistics
            if stats is not None and stats.has_min_max:
                low = stats.min.encode() if isinstance(stats.min, str) else stats.min
                if low >= b"!":
                    continue
            elif stats is not None and stats.null_count == chunk.num_values:
                continue  # nulls only
            visible.discard(chunk.path_in_schema)
    return visible


def naive_utc_sql(expr: str) -> str:
    """SQL for a TIMESTAMP WITH TIME ZONE as the naive UTC TIMESTAMP: its microseconds since the epoch, read
    as they are. ``timezone('UTC', x)`` gives the same values through the time-zone library, row by row:
    10× the time (0.47 against 0.044 s for max over 6.4M orders). (±infinity, which no Parquet file holds,
    becomes NULL.)"""
    return f"make_timestamp(epoch_us({expr}))"


def _stored_columns(con, path: Path) -> list[str]:
    """The column names as the file stores them (DuckDB would rename a repeated one: revenue_1)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_schema(path).names
    first = f"read_csv({_sql_string(str(path))}, header=false, all_varchar=true)"
    return [c for c in con.raw_sql(f"SELECT * FROM {first} LIMIT 1").fetchone() or () if c is not None]


def _check_names(name: str, path: Path, columns: list[str]) -> None:
    """Raise when a column name appears more than once in the file (ignoring case, as DuckDB does)."""
    spellings: dict[str, list[str]] = {}
    for column in columns:
        spellings.setdefault(column.lower(), []).append(column)
    problems = [FileProblem(name, path.name, f"the column name appears {len(same)} times in the file"
                            + (f" (as {', '.join(same)}: names are compared ignoring case)" if len(set(same)) > 1
                               else "") + "; rename or drop all but one", column=same[0])
                for same in spellings.values() if len(same) > 1]
    if problems:
        raise DataError.of(*problems)


def _first_bad_utf8_line(path: Path) -> int | None:
    """The line of the first byte that is not UTF-8 in ``path``, or None when the file is UTF-8 text."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            pending = len(decoder.getstate()[0])  # bytes of a character begun in the previous chunk
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                return line + chunk.count(b"\n", 0, max(exc.start - pending, 0))
            line += chunk.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return line
    return None
