"""A folder of `<table>.csv` files: the user's own snapshots, and the format of the Kaggle dataset.

Values are read as text and checked against their declared type with exact patterns, so nothing is rounded or
guessed (`1.5` is not an integer, `50.005` not a `decimal(18,2)`), then cast by DuckDB.

A good file is read once: DuckDB parses it, checks each value in the same pass and writes the typed snapshot
with its own COPY, while a thread counts the file's lines; the rows read must account for every line. DuckDB
silently drops a last line longer than its line limit, so a file whose count disagrees, or that DuckDB
refused, is read the careful way: a streaming scan in Python (UTF-8, header, field count and line of every
record), then DuckDB's parser with a line limit above the longest record and one query that finds the first bad
value of every column. That path names the table, file, line, column and value of what is wrong.

Every read of one capture must see one version of the file: its version (`FileVersion`) is taken before the
first read and checked by the engine after the last one (`Snapshot.verify`)."""

from __future__ import annotations

import re
import threading
from array import array
from bisect import bisect_right
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from ingestion.catalog import Table
from ingestion.config import DEFAULT_DUCKDB_MEMORY_LIMIT
from ingestion.duck import check_io, connect, copy_to_parquet, quote_identifier, sql_literal
from ingestion.errors import BadCsvError, BadValueError, OptionError, SnapshotError, SourceChangedError
from ingestion.readers.base import CaptureContext, Snapshot, parquet_snapshot

# DuckDB's default line limit; raised per file to fit its longest record
DUCKDB_DEFAULT_MAX_LINE = 2 << 20
_QUOTED = re.compile(rb'"(?:[^"]|"")*"', re.DOTALL)

# Patterns a value must match before it is cast: DuckDB's casts round (`1.5` -> 2) and accept `0x1F` or `1_000`.
_INTEGER = r"^[+-]?[0-9]+$"
_DOUBLE = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_OFFSET = r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)"
_TIMESTAMP = rf"^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}([ T][0-9]{{2}}:[0-9]{{2}}(:[0-9]{{2}}(\.[0-9]{{1,6}})?)?)?{_OFFSET}?$"
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")


@dataclass(frozen=True)
class TypeRule:
    pattern: str | None  # a regular expression the text must match in full; None: the cast alone decides
    why: str


def type_rule(data_type: str) -> TypeRule:
    """What text a declared type accepts, and how to say it when a value does not."""
    kind = data_type.strip().lower()
    if kind in ("integer", "bigint"):
        return TypeRule(_INTEGER, "an integer is digits with an optional sign, in range; no decimals or separators")
    if kind == "double":
        return TypeRule(_DOUBLE, "a finite number with '.' as decimal point and an optional exponent")
    if kind == "date":
        return TypeRule(_DATE, "a date is YYYY-MM-DD")
    if kind == "timestamp":
        return TypeRule(_TIMESTAMP, "a timestamp is YYYY-MM-DD[ HH:MM[:SS[.ffffff]]] with an optional UTC offset or Z")
    match = _DECIMAL.match(kind)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        places = rf"(\.[0-9]{{0,{scale}}})?" if scale else ""
        fraction = rf"|\.[0-9]{{1,{scale}}}" if scale else ""
        return TypeRule(
            rf"^[+-]?([0-9]+{places}{fraction})$",
            f"at most {precision - scale} digits before '.' and {scale} after it; nothing is rounded",
        )
    return TypeRule(None, "not a value of this type")


def cast_expression(value: str, data_type: str, cast: str = "cast") -> str:
    """SQL turning checked text into the declared type (`cast="try_cast"` to test it); a timestamp with an
    offset is converted to UTC, so an event keeps its instant and its UTC day."""
    if data_type.strip().lower() == "timestamp":
        # the connection's time zone is UTC, so timestamptz -> timestamp gives the UTC wall time
        return (
            f"case when regexp_matches({value}, '{_OFFSET}$') "
            f"then {cast}({cast}({value} as timestamptz) as timestamp) else {cast}({value} as timestamp) end"
        )
    if data_type.strip().lower() == "double":
        # an exponent out of range (`1e999`) casts to infinity, which the text `inf` is refused as: no value
        # (try_cast) or an error (cast), never an infinity
        number = f"{cast}({value} as double)"
        otherwise = "null" if cast == "try_cast" else f"error('out of range for a double: ' || {value})"
        return f"case when isfinite({number}) then {number} else {otherwise} end"
    return f"{cast}({value} as {data_type})"


@dataclass
class CsvScan:
    """What the first pass learns about a file."""

    header: list[str]
    records: int = 0
    longest: int = 0  # bytes of the longest record
    # (record index, line) wherever the record -> line mapping stops being `index + 2` (blank or multi-line)
    # where the record -> line mapping stops being `index + 1` (blank lines, multi-line records): the record
    # index and the line it starts on, so the mapping costs nothing for a regular file
    break_records: array[int] = field(default_factory=lambda: array("q"))
    break_lines: array[int] = field(default_factory=lambda: array("q"))

    def line_of(self, index: int) -> int:
        """The line a record starts on; `index` counts records from 1, the header is line 1."""
        position = bisect_right(self.break_records, index) - 1
        if position < 0:
            return index + 1
        return self.break_lines[position] + index - self.break_records[position]


def scan_csv(table: Table, csv_path: Path) -> CsvScan:
    """Stream the file once: UTF-8, header, field counts and record lines, without holding the file in memory."""
    qualified, name = table.qualified_name, csv_path.name
    separator = table.csv_separator.encode()
    scan: CsvScan | None = None
    expected = 0
    record: list[bytes] = []
    record_start = 0
    quotes = 0
    with csv_path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadCsvError(
                    qualified, name, f"not valid UTF-8 (byte {exc.start} of the line)", number, kind="encoding"
                ) from exc
            if scan is None:
                if not line.strip():
                    continue
                scan = CsvScan(_header(table, name, line))
                expected = len(scan.header)
                continue
            if not record:
                if not line.strip():
                    continue  # DuckDB skips blank lines too
                record_start = number
            record.append(line)
            quotes += line.count(b'"')
            if quotes % 2:
                continue  # a quoted field goes on over the next line
            text = b"".join(record)
            record, quotes = [], 0
            scan.records += 1
            scan.longest = max(scan.longest, len(text))
            if record_start != scan.line_of(scan.records):
                scan.break_records.append(scan.records)
                scan.break_lines.append(record_start)
            fields = (_QUOTED.sub(b"", text) if b'"' in text else text).count(separator) + 1
            if fields != expected:
                which = "too many" if fields > expected else "some missing"
                raise BadCsvError(
                    qualified,
                    name,
                    f"{fields} fields where the header has {expected} ({which})",
                    record_start,
                    kind="fields",
                )
    if scan is None:
        raise BadCsvError(
            qualified,
            name,
            f"file is empty (expected a header line with {', '.join(table.column_names)})",
            kind="empty",
        )
    if record:
        raise BadCsvError(qualified, name, "a quoted field is never closed", record_start, kind="unclosed-quote")
    if scan.records == 0:
        raise BadCsvError(
            qualified, name, "the file has a header but no rows; refusing to capture an empty table", kind="no-rows"
        )
    return scan


def _header(table: Table, name: str, line: bytes) -> list[str]:
    header = line.decode("utf-8").lstrip("\ufeff").rstrip("\r\n")
    names = [n.strip().strip('"') for n in header.split(table.csv_separator)]
    qualified = table.qualified_name
    if len(names) == 1 and len(table.columns) > 1:
        raise BadCsvError(
            qualified,
            name,
            f"the header has a single column {names[0]!r}; the declared separator is {table.csv_separator!r} — "
            "is the file written with another separator?",
            1,
            kind="separator",
            columns=(names[0],),
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise BadCsvError(
            qualified,
            name,
            f"the header names column(s) {', '.join(repeated)} more than once",
            1,
            kind="repeated-columns",
            columns=tuple(repeated),
        )
    missing = [c for c in table.column_names if c not in names]
    if missing:
        raise BadCsvError(
            qualified,
            name,
            f"missing column(s) {', '.join(missing)} (header: {', '.join(names)})",
            1,
            kind="missing-columns",
            columns=tuple(missing),
        )
    extra = [n for n in names if n not in table.column_names]
    if extra:
        raise BadCsvError(
            qualified,
            name,
            f"column(s) {', '.join(extra)} are not declared; declare them in the sources YAML (a new column then "
            "flows into the lake with the next capture)",
            1,
            kind="extra-columns",
            columns=tuple(extra),
        )
    return names


def csv_snapshot(table: Table, csv_path: Path, dest: Path, memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT) -> Snapshot:
    """The CSV file as a snapshot the engine reads once, checking every value in the same scan (see the module's
    docstring); `dest` is where the careful path writes its Parquet when it is needed."""
    qualified, name = table.qualified_name, csv_path.name
    if not csv_path.is_file():
        raise BadCsvError(qualified, name, "file not found", kind="not-found")
    # taken before anything opens the file: every read of this capture (DuckDB's scan, the line count, the careful
    # path) must see the version it describes
    version = FileVersion.of(csv_path)

    def verify() -> None:
        version.verify(table)

    def careful() -> Snapshot:
        try:
            path = _read_carefully(table, csv_path, dest, memory_limit)
        except SnapshotError:
            verify()  # a file replaced mid-read looks broken: say what happened instead
            raise
        return parquet_snapshot(path)

    header = _first_line_header(table, csv_path)
    if header is None:
        snapshot = careful()
        return Snapshot(snapshot.relation, snapshot.expected_rows, file=snapshot.file, verify=verify)
    lines = _count_lines_aside(csv_path)
    return Snapshot(
        _checked_relation(table, csv_path, header), lambda: lines.result() - 1, careful=careful, verify=verify
    )


@dataclass(frozen=True)
class FileVersion:
    """What tells one version of a file from another without reading it again: a file renamed into place has
    another inode, a file rewritten in place another size or modification/change time (nanoseconds)."""

    path: Path
    device: int
    inode: int
    size: int
    modified_ns: int
    changed_ns: int

    @classmethod
    def of(cls, path: Path) -> FileVersion:
        stat = path.stat()
        return cls(path, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)

    def verify(self, table: Table) -> None:
        """Raise SourceChangedError if the file at `path` is no longer this version."""
        try:
            now = FileVersion.of(self.path)
        except FileNotFoundError:
            raise SourceChangedError(table.qualified_name, self.path.name, "it was removed") from None
        changes = []
        if (now.device, now.inode) != (self.device, self.inode):
            changes.append("replaced by another file")
        if now.size != self.size:
            changes.append(f"size {self.size} -> {now.size} bytes")
        if now.modified_ns != self.modified_ns or now.changed_ns != self.changed_ns:
            changes.append("modified")
        if changes:
            raise SourceChangedError(table.qualified_name, self.path.name, ", ".join(changes))


def csv_to_parquet(table: Table, csv_path: Path, dest: Path, memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT) -> Path:
    """Read `csv_path`, check its header and values against `table`, write typed Parquet to `dest`; a file that
    changed while it was read is refused (SourceChangedError)."""
    snapshot = csv_snapshot(table, csv_path, dest, memory_limit)
    try:
        written = snapshot.to_parquet(dest, table, memory_limit)
    except SnapshotError:
        snapshot.verify_unchanged()  # a file replaced mid-read looks broken: say what happened instead
        raise
    snapshot.verify_unchanged()
    return written


def _count_lines_aside(path: Path) -> Future[int]:
    """Count the file's lines in a thread while DuckDB reads it (DuckDB releases the GIL)."""
    future: Future[int] = Future()

    def run() -> None:
        try:
            future.set_result(count_lines(path))
        except OSError as exc:  # the reader of the future gets the failure
            future.set_exception(exc)

    threading.Thread(target=run, name=f"count-lines-{path.name}", daemon=True).start()
    return future


def count_lines(path: Path) -> int:
    """Lines in the file, a last line without its newline included."""
    lines, last = 0, b"\n"
    buffer = bytearray(8 << 20)
    with path.open("rb", buffering=0) as handle:
        while size := handle.readinto(buffer):
            lines += buffer.count(b"\n", 0, size)
            last = bytes(buffer[size - 1 : size])
    return lines + (last != b"\n")


def _first_line_header(table: Table, csv_path: Path) -> list[str] | None:
    """The header, when it is the file's first line (anything else is left to the careful path)."""
    with csv_path.open("rb") as handle:
        line = handle.readline(1 << 20)
        rest = handle.read(1 << 12)
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not line.strip() or not line.endswith(b"\n") or (len(rest) < 1 << 12 and not rest.strip()):
        return None  # not a header first, or no row after it: the careful path says which
    return _header(table, csv_path.name, line)


def _read_csv_sql(table: Table, csv_path: Path, header: list[str], max_line: int) -> str:
    """The file as text columns. A quoted empty field (`""`) is the empty text and an empty field is NULL, as the
    file says: DuckDB reads both as NULL by default (`allow_quoted_nulls`), which would hide a change between
    them."""
    columns_spec = "{" + ", ".join(f"{sql_literal(n)}: 'VARCHAR'" for n in header) + "}"
    return (
        f"read_csv({sql_literal(str(csv_path))}, delim={sql_literal(table.csv_separator)}, header=true, "
        f"columns={columns_spec}, quote='\"', escape='\"', strict_mode=true, null_padding=false, "
        f"allow_quoted_nulls=false, auto_detect=false, encoding='utf-8', max_line_size={max_line})"
    )


def _text_value(table: Table, column: str) -> str:
    """A column's text as checked: a text column keeps its value as written (`""` the empty text, an empty field
    NULL); any other type is trimmed, and empty, quoted or not, is NULL: no number or date is written as ''."""
    quoted = quote_identifier(column)
    return quoted if table.column(column).data_type == "varchar" else f"nullif(trim({quoted}), '')"


def _missing_test(table: Table, column: str) -> str:
    """SQL true for a value that is no value: NULL, or the empty text (which no key may be either)."""
    value = _text_value(table, column)
    return f"({value} is null or {value} = '')" if table.column(column).data_type == "varchar" else f"{value} is null"


def _bad_value_test(table: Table, column: str) -> str | None:
    """SQL true for a value its column cannot hold; None when every text is valid (a varchar non-key)."""
    data_type = table.column(column).data_type
    value = _text_value(table, column)
    if column in table.primary_key:
        null = _missing_test(table, column)
        if data_type == "varchar":
            return null
    elif data_type == "varchar":
        return None
    rule = type_rule(data_type)
    matches = f"regexp_full_match({value}, {sql_literal(rule.pattern)}) and " if rule.pattern else ""
    casts = cast_expression(value, data_type, "try_cast")
    bad = f"({value} is not null and not coalesce({matches}{casts} is not null, false))"
    return f"({null} or {bad})" if column in table.primary_key else bad


# The one pass's first test of a value: true when its text is of its type in a form whose plain cast is the
# value the careful path reads, so the cast made alongside is taken as is. Most types are compared with the text
# DuckDB writes back, which has one form: a text equal to it was read exactly (nothing rounded) and matches the
# type's pattern, which one comparison tells faster than the pattern. The bounds leave out what DuckDB writes back
# that the pattern refuses (`infinity`, years past 9999, dates before the common era), compared as values, which
# costs less than looking at the text again. A double is matched against its pattern instead: writing a double
# back costs more than the pattern, and a common text such as `12.30` is not written back as such. Any other text
# (`+5`, `007`, `2024-01-01T10:00`, an offset) is matched against the pattern next; a timestamp with an offset is
# converted to UTC by the careful cast.
_OFFSET_FREE_TIMESTAMP = _TIMESTAMP.replace(f"{_OFFSET}?$", "$")
_WRITTEN_BACK_BOUNDS = {
    "integer": None,
    "bigint": None,
    "date": ("date '0001-01-01'", "date '9999-12-31'"),
    "timestamp": ("timestamp '0001-01-01'", "timestamp '9999-12-31 23:59:59.999999'"),
}


def _exact_form_test(data_type: str, text: str, typed: str) -> str | None:
    """SQL true when `text` is of `data_type` and `typed`, its try_cast, is its value; None for a type with no
    pattern (the cast alone decides)."""
    kind = data_type.strip().lower()
    if kind == "double":
        return _plain_form_test(data_type, text, typed)
    if kind not in _WRITTEN_BACK_BOUNDS and not _DECIMAL.match(kind):
        return None
    test = f"cast({typed} as varchar) = {text}"
    bounds = _WRITTEN_BACK_BOUNDS.get(kind)
    return f"{test} and {typed} between {bounds[0]} and {bounds[1]}" if bounds else test


def _plain_form_test(data_type: str, text: str, typed: str) -> str | None:
    """SQL true when `text` matches its type's pattern in a form the plain cast reads as the careful path does (a
    timestamp without an offset), so that `typed`, its try_cast, is its value; None for a type with no pattern."""
    pattern = type_rule(data_type).pattern
    if pattern is None:
        return None
    if data_type.strip().lower() == "timestamp":
        pattern = _OFFSET_FREE_TIMESTAMP
    # a text the pattern allows may still be refused by the cast: its NULL is never taken for a value, nor the
    # infinity of a double's exponent out of range
    known = f"isfinite({typed})" if data_type.strip().lower() == "double" else f"{typed} is not null"
    return f"{known} and regexp_full_match({text}, {sql_literal(pattern)})"


def _checked_relation(table: Table, csv_path: Path, header: list[str]) -> str:
    """The file as typed rows, every value checked as it is read: the first bad value (or NULL key) stops the
    scan with an error, and the careful path then names its line. Its checks accept a subset of what the careful
    path accepts (a padded number, say, stops the scan), never more."""
    inner, outer = [], []
    for position, column in enumerate(table.columns):
        quoted = quote_identifier(column.name)
        pattern = type_rule(column.data_type).pattern
        text = quote_identifier(f"_lago_text_{position}")
        exact = _exact_form_test(column.data_type, text, quoted)
        if exact is not None and pattern:
            # untrimmed: a padded value stops the scan (the careful path trims it), which spares every value a
            # trim. The cast of the empty text is NULL, as the empty text of a quoted empty field is in these
            # columns (see `_text_value`); a good value, the common case, is the first tested.
            inner += [f"{quoted} as {text}", f"try_cast({quoted} as {column.data_type}) as {quoted}"]
            missing = f"({text} is null or {text} = '')"
            absent = "error('null key')" if column.name in table.primary_key else quoted
            checked = cast_expression(text, column.data_type)
            # then a text in another form of its type that the cast made alongside reads as the careful path
            # does (`+5`, `007`, `12.30`, `2024-01-01 10:00:00.000`), which spares it a second cast; then only a
            # timestamp with an offset, converted by the careful cast
            plain = _plain_form_test(column.data_type, text, quoted)
            other = f"when {plain} then {quoted} " if plain != exact else ""
            typed = (
                f"case when {exact} then {quoted} when {missing} then {absent} {other}"
                f"when regexp_full_match({text}, {sql_literal(pattern)}) then {checked} else error('bad value') end"
            )
            outer.append(f"{typed} as {quoted}")
            continue
        inner.append(quoted)
        value = _text_value(table, column.name)
        typed = cast_expression(value, column.data_type)
        if column.data_type != "varchar" and pattern:
            matches = f"regexp_full_match({value}, {sql_literal(pattern)})"
            typed = f"case when not {matches} then error('bad value') else {typed} end"
        if column.name in table.primary_key:
            typed = f"case when {_missing_test(table, column.name)} then error('null key') else {typed} end"
        outer.append(f"{typed} as {quoted}")
    source = _read_csv_sql(table, csv_path, header, DUCKDB_DEFAULT_MAX_LINE)
    return f"(select {', '.join(outer)} from (select {', '.join(inner)} from {source}))"


def _read_carefully(table: Table, csv_path: Path, dest: Path, memory_limit: str) -> Path:
    """Two passes that explain a bad file: a streaming scan in Python (UTF-8, header, field counts, the line of
    every record), then DuckDB's parser with a line limit above the longest record, its text kept with record
    numbers so that one query finds the first bad value of every column."""
    qualified, name = table.qualified_name, csv_path.name
    scan = scan_csv(table, csv_path)
    max_line = max(DUCKDB_DEFAULT_MAX_LINE, scan.longest + 1024)
    con = connect(context_dir=dest.parent, memory_limit=memory_limit)
    try:
        # the text of the file goes to a local Parquet file, not a table in memory: the check below streams it
        text = dest.with_name(f"{dest.stem}.text.parquet")
        copy_to_parquet(
            con,
            f"select row_number() over () as _record, * from {_read_csv_sql(table, csv_path, scan.header, max_line)}",
            text,
        )
        con.execute(f"create temp view raw_csv as select * from read_parquet({sql_literal(str(text))})")
        (rows,) = con.execute("select count(*) from raw_csv").fetchall()[0]
        if rows != scan.records:
            raise BadCsvError(
                qualified,
                name,
                f"the CSV parser read {rows} row(s) of the {scan.records} record(s) in the file; refusing a "
                "partial read",
                kind="partial-read",
            )
        _check_values(con, table, name, scan)
        casts = ", ".join(
            f"{cast_expression(_text_value(table, c.name), c.data_type)} as {quote_identifier(c.name)}"
            for c in table.columns
        )
        # insertion order is preserved (the connection is ordered): no sort of the whole file
        copy_to_parquet(con, f"select {casts} from raw_csv", dest)
        text.unlink()
    except duckdb.Error as exc:
        check_io(exc, f"table {qualified}, file {name}")
        raise BadCsvError(
            qualified, name, f"cannot be read as CSV: {str(exc).splitlines()[0]}", kind="unreadable"
        ) from exc
    finally:
        con.close()
    return dest


def _check_values(con: duckdb.DuckDBPyConnection, table: Table, file: str, scan: CsvScan) -> None:
    """One scan for every column: the first bad value of each, reported from the earliest line."""
    tests = [(c.name, test) for c in table.columns if (test := _bad_value_test(table, c.name)) is not None]
    if not tests:
        return
    figures = ", ".join(
        f"min(_record) filter (where {test}), arg_min({quote_identifier(name)}, _record) filter (where {test})"
        for name, test in tests
    )
    row = con.execute(f"select {figures} from raw_csv").fetchall()[0]
    found = sorted(
        (int(row[2 * i]), name, row[2 * i + 1]) for i, (name, _) in enumerate(tests) if row[2 * i] is not None
    )
    if not found:
        return
    record, column, text = found[0]
    others = "; ".join(f"column {c} line {scan.line_of(r)}: {v!r}" for r, c, v in found[1:])
    if text is None or (column in table.primary_key and not str(text).strip()):
        raise BadCsvError(
            table.qualified_name,
            file,
            f"primary key column {column} is empty (NULL); every row needs a key"
            + (f" (other bad values: {others})" if others else ""),
            scan.line_of(record),
            kind="empty-key",
            columns=(column,),
        )
    data_type = table.column(column).data_type
    raise BadValueError(
        table.qualified_name,
        file,
        scan.line_of(record),
        column,
        str(text),
        data_type,
        type_rule(data_type).why,
        also=others,
    )


class CsvFolderReader:
    """Reads `<folder>/<table>.csv` for each table."""

    name = "csv"
    simulated_days = False

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise OptionError("--path", f"{folder}: no such folder (expected one <table>.csv per table)")
        self.folder = folder

    def available_tables(self, tables: list[Table]) -> list[Table]:
        return [t for t in tables if (self.folder / f"{t.name}.csv").is_file()]

    def read(self, table: Table, context: CaptureContext) -> Snapshot:
        dest = context.workdir / f"{table.name}.parquet"
        return csv_snapshot(table, self.folder / f"{table.name}.csv", dest, context.duckdb_memory_limit)
