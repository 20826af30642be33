"""Exceptions a user can act on. Each class carries its exit code, and the facts of the failure as fields, so a
caller (or a test) reads `error.line` rather than parsing a message."""

from __future__ import annotations


class IngestionError(Exception):
    """Base class: every failure the CLI reports without a traceback."""

    exit_code = 1


class UsageError(IngestionError):
    """The command line asks for something impossible (a missing folder, a bad interval, a repeated table)."""

    exit_code = 2


class CatalogError(UsageError):
    """The table declarations are invalid or a requested table/source is not declared."""


class DeclarationError(CatalogError):
    """A table or source declaration (the sources YAML) that cannot be used: `where` names the file and the table,
    `problem` what is wrong with it."""

    def __init__(self, where: str, problem: str) -> None:
        self.where, self.problem = where, problem
        super().__init__(f"{where}: {problem}")


class ConfigError(UsageError):
    """An environment variable holds a value the ingestion cannot use."""

    def __init__(self, variable: str, value: str, problem: str) -> None:
        self.variable, self.value, self.problem = variable, value, problem
        super().__init__(f"environment variable {variable}={value!r}: {problem}")


class SourceChoiceError(UsageError):
    """A command needs one source and the command line does not settle which of the declared ones."""

    def __init__(self, reader: str, declared: tuple[str, ...], candidates: tuple[str, ...], why: str) -> None:
        self.reader, self.declared, self.candidates = reader, declared, candidates
        super().__init__(f"{why}; name one with --source (declared: {', '.join(declared)})")


class SnapshotError(IngestionError):
    """A source snapshot is unusable (bad file, bad row, bad key); nothing was published."""

    exit_code = 3


class BadCsvError(SnapshotError):
    """A CSV file is not the declared table: its header, its shape, or a line of it."""

    def __init__(self, table: str, file: str, problem: str, line: int | None = None) -> None:
        self.table, self.file, self.line, self.problem = table, file, line, problem
        at = f", line {line}" if line is not None else ""
        super().__init__(f"table {table}, file {file}{at}: {problem}; nothing was published")


class SourceChangedError(SnapshotError):
    """A source file changed while it was being captured (a new export landed mid-read): what was read may mix
    two versions, so nothing of it is published."""

    def __init__(self, table: str, file: str, change: str) -> None:
        self.table, self.file, self.change = table, file, change
        super().__init__(
            f"table {table}, file {file}: the file changed while it was being captured ({change}); nothing was "
            "published. Run the capture again once the export is complete (an exporter that writes elsewhere and "
            "renames the finished file into place never triggers this)"
        )


class BadValueError(SnapshotError):
    """A value that is not of its column's declared type (nothing is rounded or guessed)."""

    def __init__(
        self, table: str, file: str, line: int, column: str, value: str, data_type: str, why: str, also: str = ""
    ) -> None:
        self.table, self.file, self.line = table, file, line
        self.column, self.value, self.data_type = column, value, data_type
        # the first bad value of every other column, from the same scan
        self.also = also
        others = f" (other bad values: {also})" if also else ""
        super().__init__(
            f"table {table}, file {file}, line {line}: column {column} has {value!r}, which is not a valid "
            f"{data_type} ({why}){others}; nothing was published"
        )


class BadKeyError(SnapshotError):
    """A snapshot whose primary key is NULL in some rows, or repeats: its changes cannot be told apart."""

    def __init__(
        self, table: str, key: tuple[str, ...], *, null_rows: int = 0, repeated: int = 0, examples: str = ""
    ) -> None:
        self.table, self.key, self.null_rows, self.repeated, self.examples = table, key, null_rows, repeated, examples
        label = ", ".join(key)
        problem = (
            f"{null_rows} row(s) have a NULL in primary key ({label})"
            if null_rows
            else f"{repeated} value(s) of primary key ({label}) repeat" + (f", e.g. {examples}" if examples else "")
        )
        super().__init__(f"table {table}: {problem}; nothing was published")


class SourceAccessError(IngestionError):
    """The source could not be reached or refused us (credentials, HTTP): not a bad snapshot."""

    exit_code = 3


class LakeError(IngestionError):
    """The lake could not be read or written."""

    exit_code = 4


class WorkspaceError(LakeError):
    """The local work folder (TMPDIR) failed: full, read-only, no permission. Nothing was published."""


class LakeStateError(LakeError):
    """The ingestion state of a table is missing or contradicts the data already in the lake."""

    def __init__(self, table: str, problem: str, repair: str) -> None:
        self.table, self.problem, self.repair = table, problem, repair
        super().__init__(f"table {table}: {problem}; nothing was published. Repair: {repair}")


MISSING: object = object()  # StateFileError's value when the field is absent


class StateFileError(LakeError):
    """A document of the ingestion state (`state.json`, `pending.json`, a held capture) is not what ingestion
    writes: not JSON, a missing field, a value of the wrong type or out of range."""

    def __init__(self, file: str, field: str, value: object, problem: str) -> None:
        self.file, self.field, self.value, self.problem = file, field, value, problem
        found = "" if value is MISSING else f" (found {value!r})"
        super().__init__(
            f"{file} is unreadable: {field} {problem}{found}; nothing was published. Repair: restore the file "
            "from a backup of the lake (ingestion writes it; it must not be edited)"
        )


class CorruptCaptureError(LakeError):
    """A file ingestion kept aside to publish later (a held or an interrupted capture) is not the file it kept:
    unreadable, another row count or other bytes. Nothing is published from it."""

    def __init__(self, table: str, file: str, problem: str) -> None:
        self.table, self.file, self.problem = table, file, problem
        super().__init__(
            f"table {table}: {file} {problem}; it is not the file that was captured, so nothing was published "
            "and the table's state is unchanged. Repair: restore the file from a backup of the lake, or remove "
            "it and capture the table again"
        )


class LakeLockedError(IngestionError):
    """Another ingestion run holds the lake's lock."""

    exit_code = 5


class MassDeleteError(IngestionError):
    """A capture would delete or drop more of a table than its thresholds allow: held, not published."""

    exit_code = 6

    def __init__(self, table: str, message: str) -> None:
        self.table = table
        super().__init__(message)


def interrupted_query(exc: BaseException) -> bool:
    """Whether `exc` is a Ctrl-C that arrived while DuckDB ran a query. DuckDB's Python client takes SIGINT over
    while a query runs, stops the query and raises a plain `RuntimeError('Query interrupted')`: Python's own
    handler never runs, so no KeyboardInterrupt is raised. The caller treats it as one (exit 130)."""
    return type(exc) is RuntimeError and str(exc).startswith("Query interrupted")
