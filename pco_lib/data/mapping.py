"""Reading a raw export through a mapping file (YAML), without renaming or converting anything first.

A mapping file says, per canonical table, where the table comes from (``file:`` relative to the mapping file,
a glob, or ``table:`` in a database named by ``connection: env:NAME``) and which source column is which
canonical column (``columns:``). ``connect("mapping.yml")`` gives a normal :class:`~.source.DataSource`:
raw views ``raw_NAME`` with canonical names and the source's values (for validation), typed views ``NAME``
with canonical types. Timestamps are read with ``date_format`` (strptime) in ``time_zone`` and become naive
UTC like everywhere in pco. The format is documented in ``docs/mapping.md``.
"""

from __future__ import annotations

import glob
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import ibis

from .model import TABLES, TIMESTAMP, Table
from .source import (
    _IBIS_TYPES,
    _SQL_TYPES,
    CONNECTION_PREFIX,
    FILE_OPENERS,
    DataError,
    DataSource,
    _quote,
    _sql_string,
    connection_from_environment,
    naive_utc_sql,
    quiet_duckdb,
)

MAPPING_SUFFIXES = (".yml", ".yaml")
TOP_KEYS = ("tables", "connection")
TABLE_KEYS = ("file", "table", "from_orders", "format", "header", "names", "delimiter", "columns", "date_format",
              "time_zone")
FORMATS = ("parquet", "csv", "whitespace")
SUFFIX_FORMATS = {".parquet": "parquet", ".csv": "csv", ".tsv": "csv"}
GENERATED_IDS = {"orders": "order_id", "leads": "lead_id"}  # columns that may be mapped to null
ROW_ID_PREFIX = "row-"
# A time of day followed by something other than digits: an offset (+01:00, Z) or a zone name (UTC, Europe/Berlin).
_HAS_ZONE = r"\d\d:\d\d(:\d\d([.,]\d+)?)?\s*[^\s\d:.,]"


def is_mapping_file(path: str | Path) -> bool:
    return Path(str(path)).suffix.lower() in MAPPING_SUFFIXES


@dataclass(frozen=True)
class TableMapping:
    """Where one canonical table comes from (one entry under ``tables:``)."""

    name: str
    file: str | None = None
    table: str | None = None
    from_orders: bool = False
    format: str | None = None
    header: bool = True
    names: tuple[str, ...] | None = None
    delimiter: str | None = None
    columns: dict[str, str | None] = field(default_factory=dict)  # canonical -> source column (None: generate)
    date_format: str | None = None
    time_zone: str = "UTC"


@dataclass(frozen=True)
class Mapping:
    path: Path
    tables: dict[str, TableMapping]
    connection: str | None = None


def _fail(path: Path, where: str, message: str) -> DataError:
    return DataError(f"{path}: {where}: {message}" if where else f"{path}: {message}")


def _check_keys(path: Path, where: str, given: dict, valid) -> None:
    unknown = [k for k in given if k not in valid]
    if unknown:
        raise _fail(path, where, f"unknown key {unknown[0]!r} (valid keys: {', '.join(valid)})")


def _expect(path: Path, where: str, value, kind, what: str):
    if value is not None and not isinstance(value, kind):
        raise _fail(path, where, f"must be {what}, not {value!r}")
    return value


def read_mapping(path: str | Path) -> Mapping:
    """Parse and check a mapping file: unknown keys, wrong types and unknown tables or columns are errors."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise DataError(f"mapping file {path} does not exist")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise DataError(f"{path}: not valid YAML{line} ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("tables"), dict):
        raise _fail(path, "", "a mapping file needs a 'tables:' section (see docs/mapping.md)")
    _check_keys(path, "", doc, TOP_KEYS)
    connection = _expect(path, "connection", doc.get("connection"), str, "env:NAME")
    if connection is not None and not connection.startswith(CONNECTION_PREFIX):
        raise _fail(path, "connection", f"must be env:NAME (the URL stays in the environment), not {connection!r}")
    tables = {}
    for name, entry in doc["tables"].items():
        where = f"tables.{name}"
        if name not in TABLES:
            raise _fail(path, where, f"unknown table (the data model has {', '.join(TABLES)})")
        tables[name] = _table_mapping(path, where, name, entry or {}, connection)
    for name, spec in TABLES.items():
        if spec.required and name not in tables:
            hint = " or from_orders: true" if name == "customers" else ""
            raise _fail(path, "tables", f"the required table {name!r} is not mapped (add file: or table:{hint})")
    return Mapping(path, tables, connection)


def _table_mapping(path: Path, where: str, name: str, entry, connection: str | None) -> TableMapping:
    if not isinstance(entry, dict):
        raise _fail(path, where, "must be a set of keys (file:, columns:, ...)")
    _check_keys(path, where, entry, TABLE_KEYS)
    for key, kind, what in [("file", str, "a file name or glob"), ("table", str, "a table name"),
                            ("from_orders", bool, "true or false"), ("header", bool, "true or false"),
                            ("format", str, "a format name"), ("delimiter", str, "a character"),
                            ("date_format", str, "a strptime format such as %Y%m%d"),
                            ("time_zone", str, "a time zone name such as Europe/Berlin"),
                            ("names", list, "a list of column names"), ("columns", dict, "canonical: source pairs")]:
        _expect(path, f"{where}.{key}", entry.get(key), kind, what)
    sources = [k for k in ("file", "table", "from_orders") if entry.get(k)]
    if len(sources) != 1:
        raise _fail(path, where, "give exactly one of file:, table: or from_orders: true")
    if entry.get("from_orders") and name != "customers":
        raise _fail(path, where, "from_orders works for customers only")
    if entry.get("table") and connection is None:
        raise _fail(path, where, "table: needs a database: add connection: env:NAME at the top")
    if entry.get("file") and connection is not None:
        raise _fail(path, where, "with connection: every table comes from the database (table:), not file:")
    fmt = entry.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise _fail(path, f"{where}.format", f"unknown format {fmt!r} (valid: {', '.join(FORMATS)})")
    spec = TABLES[name]
    columns = entry.get("columns") or {}
    for canonical, source in columns.items():
        if spec.column(canonical) is None:
            raise _fail(path, f"{where}.columns", f"unknown column {canonical!r} for {name} (valid: "
                        f"{', '.join(c.name for c in spec.columns)}; other source columns are kept as they are)")
        if source is None and GENERATED_IDS.get(name) != canonical:
            raise _fail(path, f"{where}.columns.{canonical}", "only order_id (orders) and lead_id (leads) can be "
                        "null (generated from the row number)")
        _expect(path, f"{where}.columns.{canonical}", source, str, "a source column name")
    zone = entry.get("time_zone") or "UTC"
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(zone)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise _fail(path, f"{where}.time_zone", f"unknown time zone {zone!r} (e.g. UTC, Europe/Berlin)") from None
    names = entry.get("names")
    return TableMapping(name=name, file=entry.get("file"), table=entry.get("table"),
                        from_orders=bool(entry.get("from_orders")), format=fmt,
                        header=entry.get("header") is not False,
                        names=tuple(str(n) for n in names) if names else None, delimiter=entry.get("delimiter"),
                        columns=dict(columns), date_format=entry.get("date_format"), time_zone=zone)


@dataclass
class MappedSource(DataSource):
    """A :class:`DataSource` read through a mapping file: ``data_dir`` is the mapping file, ``files`` the input
    file of each table (a glob's pattern when it matched several), ``inputs`` every file read."""

    mapping_file: Path | None = None
    inputs: dict[str, tuple[Path, ...]] = field(default_factory=dict)
    raw_tables: dict[str, ibis.Table] = field(default_factory=dict)
    typed_tables: dict[str, ibis.Table] = field(default_factory=dict)

    def raw_table(self, name: str) -> ibis.Table:
        self._check_name(name)
        return self.raw_tables[name]

    def table(self, name: str) -> ibis.Table:
        self._check_name(name)
        return self.typed_tables[name]

    def fingerprint(self) -> str:
        """A short hash of the mapping file's content and the input files (name, size, modification time)."""
        h = hashlib.sha256(self.mapping_file.read_bytes() if self.mapping_file else b"")
        for name, paths in sorted(self.inputs.items()):
            for path in paths:
                st = path.stat()
                h.update(f"{name}:{path}:{st.st_size}:{st.st_mtime_ns}".encode())
        h.update(repr(sorted(self.names.items())).encode())
        return h.hexdigest()[:16]


def connect_mapping(path: str | Path) -> MappedSource:
    """Open the tables a mapping file describes (files through DuckDB in memory, or a database)."""
    mapping = read_mapping(path)
    order = sorted(mapping.tables.values(), key=lambda t: t.from_orders)  # derived tables after their sources
    if mapping.connection is not None:
        return _connect_database(mapping, order)
    con = quiet_duckdb()
    source = MappedSource(con=con, data_dir=mapping.path, mapping_file=mapping.path.resolve())
    for tm in order:
        raw, typed = f"raw_{tm.name}", tm.name
        if tm.from_orders:
            sql = _customers_from_orders_sql()
            con.raw_sql(f"CREATE VIEW {_quote(raw)} AS {sql}")
            con.raw_sql(f"CREATE VIEW {_quote(typed)} AS SELECT * FROM {_quote(raw)}")
            source.files[tm.name] = source.files["orders"]
        else:
            paths = _input_files(mapping.path, tm)
            _create_file_views(con, mapping.path, tm, paths)
            source.inputs[tm.name] = tuple(paths)
            source.files[tm.name] = paths[0] if len(paths) == 1 else mapping.path.parent / tm.file
        source.names[tm.name] = raw
        source.raw_tables[tm.name], source.typed_tables[tm.name] = con.table(raw), con.table(typed)
    return source


# --------------------------------------------------------------------------------------------------------------
# Files, through DuckDB SQL


def _input_files(mapping_path: Path, tm: TableMapping) -> list[Path]:
    pattern = Path(tm.file).expanduser()
    if not pattern.is_absolute():
        pattern = mapping_path.resolve().parent / pattern
    if glob.has_magic(str(pattern)):
        paths = sorted(Path(p) for p in glob.glob(str(pattern)) if Path(p).is_file())
        if not paths:
            raise _fail(mapping_path, f"tables.{tm.name}.file", f"no file matches {pattern}")
        return paths
    if not pattern.is_file():
        raise _fail(mapping_path, f"tables.{tm.name}.file", f"{pattern} does not exist")
    return [pattern]


def _file_format(mapping_path: Path, tm: TableMapping, path: Path) -> str:
    fmt = tm.format or SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise _fail(mapping_path, f"tables.{tm.name}", f"cannot tell the format of {path.name} from its suffix: "
                    f"add format: ({', '.join(FORMATS)})")
    return fmt


def _describe(con, relation: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.raw_sql(f"DESCRIBE {relation}").fetchall()]


def _create_file_views(con, mapping_path: Path, tm: TableMapping, paths: list[Path]) -> None:
    """``src_NAME`` (the files as read), ``raw_NAME`` (canonical names, source values) and ``NAME`` (typed)."""
    spec, src = TABLES[tm.name], _quote(f"src_{tm.name}")
    fmt = _file_format(mapping_path, tm, paths[0])
    files = "[" + ", ".join(_sql_string(str(p)) for p in paths) + "]"
    shown = paths[0] if len(paths) == 1 else tm.file
    try:
        if fmt == "parquet":
            con.raw_sql(f"CREATE VIEW {src} AS SELECT * FROM read_parquet({files}, union_by_name=true, "
                        "filename='__pco_file', file_row_number=true)")
            row_number = "row_number() OVER (ORDER BY __pco_file, file_row_number)"
            internal = {"__pco_file", "file_row_number"}
        elif fmt == "csv":
            con.raw_sql(f"CREATE TABLE {src} AS SELECT * FROM {_csv_relation(con, tm, files)}")
            row_number, internal = "rowid + 1", set()
        else:
            width = _create_whitespace_table(con, src, mapping_path, tm, paths, files)
            _check_field_counts(con, src, width, shown)
            row_number, internal = "rowid + 1", set()
        present = [(n, t) for n, t in _describe(con, src) if n not in internal]
    except DataError:
        raise
    except Exception as exc:  # duckdb raises many types; the message is what matters
        raise DataError(f"{shown}: cannot be read ({str(exc).splitlines()[0]})") from None
    types = dict(present)
    select, used = [], set()
    for col in spec.columns:
        source = tm.columns.get(col.name, col.name if col.name in types else "")
        if col.name in tm.columns and source is None:
            select.append(f"{_sql_string(ROW_ID_PREFIX)} || CAST({row_number} AS VARCHAR) AS {_quote(col.name)}")
            continue
        if not source:
            continue
        if source not in types:
            raise DataError(f"{mapping_path}: tables.{tm.name}.columns.{col.name}: the source column {source!r} "
                            f"is not in {shown} (its columns: {', '.join(types)})")
        used.add(source)
        value = (_timestamp_sql(_quote(source), types[source], tm) if col.kind == TIMESTAMP else _quote(source))
        select.append(f"{value} AS {_quote(col.name)}")
    outputs = {c.name for c in spec.columns}
    select += [_quote(n) for n in types if n not in used and n not in outputs]  # extra columns are kept
    raw = _quote(f"raw_{tm.name}")
    con.raw_sql(f"CREATE VIEW {raw} AS SELECT {', '.join(select)} FROM {src}")
    con.raw_sql(f"CREATE VIEW {_quote(tm.name)} AS {_typed_select(con, spec, raw)}")


def _csv_relation(con, tm: TableMapping, files: str) -> str:
    """read_csv over the files: the mapped source columns as text (validation reports bad values), the rest
    sniffed."""
    options = [f"header={'true' if tm.header else 'false'}", "union_by_name=true"]
    if tm.names:
        options.append("names=[" + ", ".join(_sql_string(n) for n in tm.names) + "]")
    if tm.delimiter:
        options.append(f"delim={_sql_string(tm.delimiter)}")
    probe = f"read_csv({files}, {', '.join(options)}, all_varchar=true)"
    present = [n for n, _ in _describe(con, f"SELECT * FROM {probe}")]
    wanted = set(tm.columns.values()) | {c.name for c in TABLES[tm.name].columns}
    text = ", ".join(f"{_sql_string(n)}: 'VARCHAR'" for n in present if n in wanted)
    if text:
        options.append(f"types={{{text}}}")
    return f"read_csv({files}, {', '.join(options)})"


def _create_whitespace_table(con, src: str, mapping_path: Path, tm: TableMapping, paths: list[Path],
                             files: str) -> int:
    """Fields separated by any run of spaces or tabs, leading and trailing blanks ignored, blank lines skipped;
    every field text. Returns the number of names (columns)."""
    names = list(tm.names or [])
    if not names and tm.header:
        with open(paths[0], encoding="utf-8", errors="replace") as fh:
            names = next((line.split() for line in fh if line.strip()), [])
    if not names:
        raise _fail(mapping_path, f"tables.{tm.name}", "header: false needs names: [the columns, in order]")
    lines = (f"read_csv({files}, columns={{'line': 'VARCHAR'}}, delim=E'\\x01', quote='', escape='', "
             f"strict_mode=false, header=false, skip={1 if tm.header else 0})")
    blank = "trim(line, E' \\t\\r')"
    rows = f"SELECT regexp_split_to_array({blank}, E'[ \\t]+') AS f FROM {lines} WHERE {blank} <> ''"
    fields = ", ".join(f"f[{i + 1}] AS {_quote(n)}" for i, n in enumerate(names))
    con.raw_sql(f"CREATE TABLE {src} AS SELECT {fields}, len(f) AS __pco_fields FROM ({rows})")
    return len(names)


def _check_field_counts(con, src: str, width: int, shown) -> None:
    """A line with more or fewer fields than there are names means the names (or the file) are wrong."""
    bad = con.raw_sql(f"SELECT count(*), min(rowid) + 1, arg_min(__pco_fields, rowid) FROM {src} "
                      f"WHERE __pco_fields <> {width}").fetchone()
    if bad[0]:
        raise DataError(f"{shown}: {bad[0]:,} line(s) do not have {width} fields like the names (e.g. data line "
                        f"{bad[1]:,} has {bad[2]})")
    con.raw_sql(f"ALTER TABLE {src} DROP COLUMN __pco_fields")


def _timestamp_sql(column: str, stored: str, tm: TableMapping) -> str:
    """The stored value as UTC: text becomes ISO text with a Z (or stays as written when it cannot be read,
    so validation shows it); native timestamps become naive UTC."""
    zone = _sql_string(tm.time_zone)
    if stored == "TIMESTAMP WITH TIME ZONE":
        return naive_utc_sql(column)
    if stored.startswith("TIMESTAMP") or stored == "DATE":
        return f"timezone('UTC', timezone({zone}, CAST({column} AS TIMESTAMP)))"
    text = column if stored == "VARCHAR" else f"CAST({column} AS VARCHAR)"
    if tm.date_format:
        fmt = _sql_string(tm.date_format)
        parsed = f"try_strptime({text}, {fmt})"
        utc = (f"timezone('UTC', {parsed})" if "%z" in tm.date_format or "%Z" in tm.date_format
               else f"timezone('UTC', timezone({zone}, {parsed}))")
        unread = f"{text} || ' (not in date_format ' || {fmt} || ')'"
    else:
        utc = (f"CASE WHEN regexp_matches({text}, {_sql_string(_HAS_ZONE)}) "
               f"THEN timezone('UTC', TRY_CAST({text} AS TIMESTAMPTZ)) "
               f"ELSE timezone('UTC', timezone({zone}, TRY_CAST({text} AS TIMESTAMP))) END")
        unread = f"{text} || ' (not readable)'"
    return (f"CASE WHEN {text} IS NULL THEN NULL WHEN {utc} IS NOT NULL THEN CAST({utc} AS VARCHAR) || 'Z' "
            f"WHEN TRY_CAST({text} AS TIMESTAMPTZ) IS NULL THEN {text} ELSE {unread} END")


def _typed_select(con, spec: Table, raw: str) -> str:
    """The canonical types over a raw view (as :func:`~.source.connect` does for a data folder)."""
    present = [n for n, _ in _describe(con, raw)]
    replace = [
        f"TRY_CAST({_quote(c.name)} AS {_SQL_TYPES[c.kind]}) AS {_quote(c.name)}"
        if c.kind != TIMESTAMP
        else f"CAST(TRY_CAST({_quote(c.name)} AS TIMESTAMPTZ) AS TIMESTAMP) AS {_quote(c.name)}"
        for c in spec.columns
        if c.name in present
    ]
    return f"SELECT * REPLACE ({', '.join(replace)}) FROM {raw}" if replace else f"SELECT * FROM {raw}"


def _customers_from_orders_sql() -> str:
    return ('SELECT customer_id, MIN(ordered_at) AS converted_at FROM "orders" '
            "WHERE customer_id IS NOT NULL GROUP BY customer_id")


# --------------------------------------------------------------------------------------------------------------
# Database tables, through Ibis expressions (so they run on any backend)


def _connect_database(mapping: Mapping, order: list[TableMapping]) -> MappedSource:
    con = connection_from_environment(mapping.connection)
    source = MappedSource(con=con, data_dir=mapping.path, mapping_file=mapping.path.resolve())
    for tm in order:
        if tm.from_orders:
            o = source.typed_tables["orders"]
            o = o.filter(o.customer_id.notnull())
            raw = o.group_by("customer_id").aggregate(converted_at=o.ordered_at.min())
            source.raw_tables[tm.name] = source.typed_tables[tm.name] = raw
            source.names[tm.name] = f"customers from {source.names['orders']}"
            continue
        if tm.time_zone != "UTC":
            raise _fail(mapping.path, f"tables.{tm.name}.time_zone", "works for files only; for a database table "
                        "convert the timestamps to UTC in a view")
        table = _database_table(con, mapping.path, tm)
        raw = _mapped_expression(mapping.path, tm, table)
        source.raw_tables[tm.name], source.typed_tables[tm.name] = raw, _typed_expression(raw, TABLES[tm.name])
        source.names[tm.name] = tm.table
    return source


def _database_table(con, mapping_path: Path, tm: TableMapping) -> ibis.Table:
    *database, name = tm.table.split(".")
    try:
        if database:
            return con.table(name, database=tuple(database) if len(database) > 1 else database[0])
        return con.table(name)
    except Exception:  # backends raise different errors for a missing table
        raise _fail(mapping_path, f"tables.{tm.name}.table", f"{tm.table!r} not found in the database") from None


def _mapped_expression(mapping_path: Path, tm: TableMapping, table: ibis.Table) -> ibis.Table:
    spec, selected, used = TABLES[tm.name], {}, set()
    for col in spec.columns:
        source = tm.columns.get(col.name, col.name if col.name in table.columns else "")
        if col.name in tm.columns and source is None:
            order = [table[c] for c in table.columns]
            number = (ibis.row_number().over(order_by=order) + 1).cast("string")
            selected[col.name] = ibis.literal(ROW_ID_PREFIX) + number
            continue
        if not source:
            continue
        if source not in table.columns:
            raise DataError(f"{mapping_path}: tables.{tm.name}.columns.{col.name}: the source column {source!r} "
                            f"is not in {tm.table} (its columns: {', '.join(table.columns)})")
        used.add(source)
        value = table[source]
        if col.kind == TIMESTAMP and tm.date_format and value.type().is_string():
            value = value.as_timestamp(tm.date_format)
        selected[col.name] = value
    outputs = {c.name for c in spec.columns}
    extras = {n: table[n] for n in table.columns if n not in used and n not in outputs}
    return table.select(**selected, **extras)


def _typed_expression(raw: ibis.Table, spec: Table) -> ibis.Table:
    """The canonical types over a mapped database table (text is read leniently: bad values become null)."""
    casts = {}
    for col in spec.columns:
        if col.name in raw.columns:
            value, target = raw[col.name], _IBIS_TYPES[col.kind]
            casts[col.name] = value.try_cast(target) if value.type().is_string() else value.cast(target)
    return raw.mutate(**casts)


FILE_OPENERS.update(dict.fromkeys(MAPPING_SUFFIXES, connect_mapping))  # connect("mapping.yml") opens it
