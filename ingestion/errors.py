"""Exceptions a user can act on. Each class carries its exit code, and the facts of the failure as fields, so a
caller (or a test) reads `error.line` rather than parsing a message."""

from __future__ import annotations

from typing import Literal

# What is wrong with a CSV file, for a caller that acts on the kind of failure rather than its wording
CsvProblem = Literal[
    "not-found",
    "empty",
    "no-rows",
    "encoding",
    "fields",
    "unclosed-quote",
    "separator",
    "repeated-columns",
    "missing-columns",
    "extra-columns",
    "unreadable",
    "partial-read",
    "empty-key",
]


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
    `problem` what is wrong with it, `setting` the YAML key at fault (`meta.primary_key`) and `value` what it
    holds, when one setting is."""

    def __init__(self, where: str, problem: str, *, setting: str = "", value: object = None) -> None:
        self.where, self.problem, self.setting, self.value = where, problem, setting, value
        super().__init__(f"{where}: {problem}")


class BadIdentifierError(CatalogError):
    """A name (of a source, table or column) that is not a plain identifier: names go into lake paths and SQL."""

    def __init__(self, what: str, name: object) -> None:
        self.what, self.name = what, name
        super().__init__(
            f"{what} {name!r} is not a plain identifier (letters, digits and '_', not starting with a digit, "
            "at most 63 characters); names are used in lake paths and SQL"
        )


class BadSettingError(CatalogError):
    """A declared setting whose value is not one the ingestion understands (a mode, a duration)."""

    def __init__(self, where: str, value: object, expected: str) -> None:
        self.where, self.value, self.expected = where, value, expected
        super().__init__(f"{where} must be {expected}, not {value!r}")


class NoDeclarationsError(CatalogError):
    """The project holds no sources YAML at all."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        super().__init__(f"no sources YAML found ({pattern})")


class UnknownSourceError(CatalogError):
    """A source the command line names is not declared."""

    def __init__(self, source: str, declared: tuple[str, ...]) -> None:
        self.source, self.declared = source, declared
        super().__init__(f"no source {source!r} is declared; declared: {', '.join(declared)}")


class UnknownTableError(CatalogError):
    """A table the command line names is not declared in its source."""

    def __init__(self, source: str, table: str, declared: tuple[str, ...]) -> None:
        self.source, self.table, self.declared = source, table, declared
        super().__init__(f"source {source} has no table {table!r}; declared: {', '.join(declared)}")


class UndeclaredTablesError(CatalogError):
    """`--tables` names tables that no source the reader serves declares all of."""

    def __init__(self, tables: tuple[str, ...], reader: str, declared: tuple[str, ...]) -> None:
        self.tables, self.reader, self.declared = tables, reader, declared
        super().__init__(
            f"--tables {', '.join(tables)}: no source that --from {reader} reads declares them all "
            f"(declared sources: {', '.join(declared)})"
        )


class UnreadTablesError(CatalogError):
    """A run of every declared table, whose reader has no snapshot for some of them."""

    def __init__(self, source: str, tables: tuple[str, ...], reader: str) -> None:
        self.source, self.tables, self.reader = source, tables, reader
        super().__init__(
            f"source {source}: no snapshot for declared table(s) {', '.join(tables)} from the {reader} reader; "
            "provide them or limit the run with --tables"
        )


class ArrivalColumnError(CatalogError):
    """`--arrival-column` names no timestamp or date column of the table."""

    def __init__(self, column: str, table: str, columns: tuple[str, ...]) -> None:
        self.column, self.table, self.columns = column, table, columns
        super().__init__(
            f"--arrival-column {column}: table {table} has no timestamp or date column of that name (columns: "
            f"{', '.join(columns)})"
        )


class ScaleError(CatalogError):
    """A simulator scale below what the simulator can simulate."""

    def __init__(self, scale: int, requirement: str) -> None:
        self.scale, self.requirement = scale, requirement
        super().__init__(f"simulator scale must be {requirement}, got {scale}")


class NotSimulatedError(CatalogError):
    """A table a simulator has no simulation for."""

    def __init__(self, simulator: str, table: str) -> None:
        self.simulator, self.table = simulator, table
        super().__init__(f"{simulator} does not simulate table {table}")


class ReaderError(CatalogError):
    """The reader chosen with `--from` cannot serve the run: it reads another capture mode (`wants` is the mode
    the source needs) or lacks an option it needs (`wants` is the option)."""

    def __init__(self, reader: str, wants: str, problem: str) -> None:
        self.reader, self.wants, self.problem = reader, wants, problem
        super().__init__(f"--from {reader} {problem}")


class ConfigError(UsageError):
    """An environment variable holds a value the ingestion cannot use."""

    def __init__(self, variable: str, value: str, problem: str) -> None:
        self.variable, self.value, self.problem = variable, value, problem
        super().__init__(f"environment variable {variable}={value!r}: {problem}")


class OptionError(UsageError):
    """A command-line option (or command) given where it does not apply, or with a value that cannot be used:
    `option` names it (`--tables`, `stream`), `value` is what it was given when that is at fault, `problem` says
    why."""

    def __init__(self, option: str, problem: str, *, value: str | None = None) -> None:
        self.option, self.problem, self.value = option, problem, value
        super().__init__(f"{option} {value!r}: {problem}" if value is not None else f"{option} {problem}")


class MissingOptionError(UsageError):
    """A command run without an option it cannot do without."""

    def __init__(self, command: str, option: str, purpose: str) -> None:
        self.command, self.option, self.purpose = command, option, purpose
        super().__init__(f"{command}: name the {purpose} with {option}")


class MissingExtraError(UsageError):
    """A feature whose optional dependencies (a `pip install -e '.[extra]'`) are not installed."""

    def __init__(self, feature: str, extra: str) -> None:
        self.feature, self.extra = feature, extra
        super().__init__(f"{feature} need the {extra} extra: pip install -e '.[{extra}]'")


class DbtStartError(UsageError):
    """`--dbt-build` could not start dbt (not installed, not on PATH)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"--dbt-build: cannot start dbt: {reason}")


class UncapturedLakeError(UsageError):
    """A command that needs a lake's identity, on a lake never captured into."""

    def __init__(self, lake: str, consequence: str) -> None:
        self.lake, self.consequence = lake, consequence
        super().__init__(f"lake {lake} has never been captured into: {consequence}")


class NothingHeldError(UsageError):
    """`approve` of a table whose capture the circuit breaker did not hold."""

    def __init__(self, table: str) -> None:
        self.table = table
        super().__init__(f"table {table}: no capture is held; nothing to approve")


class LakeUriError(UsageError):
    """A `--lake` that names neither a folder nor an S3 prefix (`gs://...`, `s3:/bucket`)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        super().__init__(f"lake {uri!r}: only local folders and s3://bucket/prefix URIs are supported")


class UnknownReaderError(UsageError):
    """`--from` names no registered reader."""

    def __init__(self, reader: str, known: tuple[str, ...]) -> None:
        self.reader, self.known = reader, known
        super().__init__(f"reader {reader!r} is not known; readers: {', '.join(known)}")


class SourceChoiceError(UsageError):
    """A command needs one source and the command line does not settle which of the declared ones."""

    def __init__(self, reader: str, declared: tuple[str, ...], candidates: tuple[str, ...], why: str) -> None:
        self.reader, self.declared, self.candidates = reader, declared, candidates
        super().__init__(f"{why}; name one with --source (declared: {', '.join(declared)})")


class SnapshotError(IngestionError):
    """A source snapshot is unusable (bad file, bad row, bad key); nothing was published."""

    exit_code = 3


class BadCsvError(SnapshotError):
    """A CSV file is not the declared table: its header, its shape, or a line of it. `kind` says which, `columns`
    names the columns at fault when some are."""

    def __init__(
        self,
        table: str,
        file: str,
        problem: str,
        line: int | None = None,
        *,
        kind: CsvProblem,
        columns: tuple[str, ...] = (),
    ) -> None:
        self.table, self.file, self.line, self.problem = table, file, line, problem
        self.kind, self.columns = kind, columns
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


class CaptureStepError(SnapshotError):
    """The engine failed on a step of a table's capture (reading, diffing, writing its snapshot): `step` names it,
    `detail` is the engine's first line."""

    def __init__(self, table: str, step: str, detail: str) -> None:
        self.table, self.step, self.detail = table, step, detail
        super().__init__(f"table {table}: {step} failed: {detail}")


class PartialSnapshotError(SnapshotError):
    """A snapshot the engine could not read whole, from a reader that has no careful way to say which row failed."""

    def __init__(self, table: str) -> None:
        self.table = table
        super().__init__(f"table {table}: the snapshot could not be read whole")


class PreviousSnapshotError(SnapshotError):
    """The table's previous snapshot in the lake (the baseline of a diff) is unreadable or another table's."""

    def __init__(self, table: str, file: str, problem: str) -> None:
        self.table, self.file, self.problem = table, file, problem
        super().__init__(f"table {table}: the previous snapshot {file} {problem}")


class ApplyWindowError(SnapshotError):
    """The rows a cursor capture read could not be applied to the table's stored state."""

    def __init__(self, table: str, detail: str) -> None:
        self.table, self.detail = table, detail
        super().__init__(
            f"table {table}: applying the rows read to the stored state failed: {detail}; nothing was published"
        )


class BadEventsError(SnapshotError):
    """A batch of events of which some have no arrival time or a NULL key."""

    def __init__(self, table: str, reader: str, events: int, key: tuple[str, ...]) -> None:
        self.table, self.reader, self.events, self.key = table, reader, events, key
        super().__init__(
            f"table {table} ({reader} reader): {events} event(s) have no arrival time or a NULL key "
            f"({', '.join(key)}); nothing was published"
        )


class EventsReadError(SnapshotError):
    """The engine could not read a batch of new events."""

    def __init__(self, table: str, detail: str) -> None:
        self.table, self.detail = table, detail
        super().__init__(f"table {table}: cannot read the new events: {detail}")


class InputNotFoundError(SnapshotError):
    """A folder or file the reader was pointed at does not exist."""

    def __init__(self, what: str, path: str, problem: str) -> None:
        self.what, self.path, self.problem = what, path, problem
        super().__init__(f"{what} {path} {problem}")


class IncompleteReadError(SnapshotError):
    """Fewer rows were read from a snapshot than it holds (a parser that skipped a line): nothing is published."""

    def __init__(self, table: str, read: int, expected: int) -> None:
        self.table, self.read, self.expected = table, read, expected
        super().__init__(
            f"table {table}: read {read} row(s) of the {expected} the snapshot holds; nothing was published"
        )


class BaselineMismatchError(SnapshotError):
    """The table's stored snapshot does not hold the rows its last capture recorded, each key once: the key was
    declared otherwise then, or the state is not this table's."""

    def __init__(self, table: str, recorded_rows: int, key: tuple[str, ...]) -> None:
        self.table, self.recorded_rows, self.key = table, recorded_rows, key
        super().__init__(
            f"table {table}: the stored snapshot does not hold the {recorded_rows} row(s) its capture recorded, "
            f"each key once (was the primary key ({', '.join(key)}) declared otherwise then?); restore the "
            "declaration, or move the table's state aside to start again with a full load"
        )


class StateCountError(SnapshotError):
    """The stored state with a capture's changes applied does not hold as many rows as the snapshot."""

    def __init__(self, table: str, state_rows: int, snapshot_rows: int) -> None:
        self.table, self.state_rows, self.snapshot_rows = table, state_rows, snapshot_rows
        super().__init__(
            f"table {table}: the stored state with this capture's changes holds {state_rows} row(s), the snapshot "
            f"{snapshot_rows}; nothing was published. Move the table's state aside to start again with a full load"
        )


class DatasetNameError(SnapshotError):
    """A Kaggle dataset name that is not `owner/dataset-name`."""

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        super().__init__(f"Kaggle dataset {dataset!r}: expected 'owner/dataset-name'")


class DatasetContentError(SnapshotError):
    """A downloaded Kaggle dataset whose files cannot be told apart or read (a corrupt zip, one name twice)."""

    def __init__(self, dataset: str, problem: str) -> None:
        self.dataset, self.problem = dataset, problem
        super().__init__(f"Kaggle dataset {dataset} {problem}")


class CorruptDownloadError(SnapshotError):
    """The dataset arrived but cannot be unpacked (a corrupt zip) or stored (a full disk)."""

    def __init__(self, dataset: str, detail: str) -> None:
        self.dataset, self.detail = dataset, detail
        super().__init__(f"downloading Kaggle dataset {dataset} failed: {detail}")


class MissingTableFileError(SnapshotError):
    """A dataset (or folder) that holds no `<table>.csv` for a table the run captures; `found` lists its CSVs."""

    def __init__(self, table: str, dataset: str, file: str, found: tuple[str, ...]) -> None:
        self.table, self.dataset, self.file, self.found = table, dataset, file, found
        super().__init__(
            f"table {table}: Kaggle dataset {dataset} has no {file} (its CSV files: {', '.join(found) or 'none'})"
        )


class SourceAccessError(IngestionError):
    """The source could not be reached or refused us (credentials, HTTP): not a bad snapshot."""

    exit_code = 3


class KaggleCredentialsError(SourceAccessError):
    """No Kaggle credentials, or credentials Kaggle would not validate; `problem` says which and how to fix it."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


class KaggleRefusedError(SourceAccessError):
    """Kaggle answered the dataset's download with a refusal: HTTP `status` (401/403 credentials, 404 no such
    dataset)."""

    def __init__(self, dataset: str, status: int, problem: str) -> None:
        self.dataset, self.status, self.problem = dataset, status, problem
        super().__init__(f"downloading Kaggle dataset {dataset}: {problem}")


class KaggleDownloadError(SourceAccessError):
    """The dataset's download failed on the way (another HTTP status, a connection error)."""

    def __init__(self, dataset: str, detail: str, status: int | None = None) -> None:
        self.dataset, self.detail, self.status = dataset, detail, status
        super().__init__(f"downloading Kaggle dataset {dataset} failed: {detail}")


class LakeError(IngestionError):
    """The lake could not be read or written."""

    exit_code = 4


class PublishError(LakeError):
    """A table of the warehouse could not be published into the lake as a Delta table."""

    def __init__(self, table: str, location: str, reason: str) -> None:
        self.table, self.location, self.reason = table, location, reason
        super().__init__(f"publishing {table} to {location}: {reason}")


class BuildRecordError(LakeError):
    """A published table's build record (`tables/_builds/...json`, written by the build) is not what it writes."""

    def __init__(self, file: str, problem: str) -> None:
        self.file, self.problem = file, problem
        super().__init__(f"{file} is not a build record: {problem}; the next build of the table writes it again")


class LakeLocationError(LakeError):
    """The lake's own location is unusable: a file where its folder belongs, a folder that does not exist, an S3
    URI without a bucket."""

    def __init__(self, lake: str, problem: str) -> None:
        self.lake, self.problem = lake, problem
        super().__init__(f"lake {lake} {problem}")


class S3UriError(LakeError):
    """An `s3://` lake URI without a bucket."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        super().__init__(f"lake {uri!r}: no bucket name")


class ProbeRefusedError(LakeError):
    """The S3 endpoint refused a new probe object, written to check that it enforces conditional writes."""

    def __init__(self, endpoint: str, probe: str) -> None:
        self.endpoint, self.probe = endpoint, probe
        super().__init__(f"S3 endpoint {endpoint}: a new probe object {probe} was refused")


class ReplayError(LakeError):
    """The lake's change files of a table could not be replayed (by `verify`)."""

    def __init__(self, table: str, detail: str) -> None:
        self.table, self.detail = table, detail
        super().__init__(f"table {table}: the lake's change files could not be replayed: {detail}")


class LockWaitError(LakeError):
    """A lock wait that is not a finite number of seconds, 0 or more."""

    def __init__(self, wait: float) -> None:
        self.wait = wait
        super().__init__(f"lock wait {wait!r} must be a finite number of seconds, 0 or more")


class LakeFileSystemError(LakeError):
    """The operating system refused an operation on a local lake (read-only, full, no permission)."""

    def __init__(self, lake: str, action: str, path: str, reason: str) -> None:
        self.lake, self.action, self.path, self.reason = lake, action, path, reason
        super().__init__(f"lake {lake}: cannot {action} {path}: {reason}")


class LakeKeyError(LakeError):
    """A key that would leave the lake's root folder (`..`)."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"key {key!r} escapes the lake root")


class LakeObjectError(LakeError):
    """An object of the lake that is not what ingestion keeps there: missing, or a folder where a file belongs."""

    def __init__(self, uri: str, problem: str) -> None:
        self.uri, self.problem = uri, problem
        super().__init__(f"{uri} {problem}")


class OverwriteRefusedError(LakeError):
    """A publish to a key that already holds other bytes: the lake is write-once."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        super().__init__(f"{uri} already exists with other content; refusing to overwrite")


class S3RequestError(LakeError):
    """An S3 request failed: `code` is the server's error code (`NoSuchBucket`), None when no answer came (a
    connection refused, a timeout); `detail` is the client's text, without credentials."""

    def __init__(self, action: str, target: str, code: str | None, detail: str) -> None:
        self.action, self.target, self.code, self.detail = action, target, code, detail
        super().__init__(f"S3 {action} {target} failed: " + (f"{code}: {detail}" if code is not None else detail))


class ConditionalWritesError(LakeError):
    """An S3 endpoint that does not enforce conditional writes: the lake's lock and write-once publishing would
    not hold on it."""

    def __init__(self, endpoint: str, ignored: tuple[str, ...], lake: str) -> None:
        self.endpoint, self.ignored, self.lake = endpoint, ignored, lake
        super().__init__(
            f"S3 endpoint {endpoint} ignores conditional writes ({'; '.join(ignored)} was accepted): the lake's "
            f"lock and write-once publishing would not hold on {lake}. Use a server that enforces them, or pass "
            "--single-writer if this lake has exactly one writer by construction"
        )


class IdentityError(LakeError):
    """The lake's identity file is unreadable, or could neither be created nor read."""

    def __init__(self, file: str, problem: str) -> None:
        self.file, self.problem = file, problem
        super().__init__(f"{file} {problem}")


class WorkspaceError(LakeError):
    """The local work folder (TMPDIR) failed: full, read-only, no permission. Nothing was published. `where` names
    the table (and file) being worked on, `detail` is the engine's first line."""

    def __init__(self, where: str, detail: str) -> None:
        self.where, self.detail = where, detail
        super().__init__(f"{where}: the local work folder failed: {detail}")


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


class LockLostError(LakeLockedError):
    """This run's lease on the lake's lock was lost (a renewal failed and another run may have taken over)."""

    def __init__(self, lake: str, reason: str) -> None:
        self.lake, self.reason = lake, reason
        super().__init__(f"lake {lake}: this run lost its lock ({reason}); nothing more is written")


class LockHeldError(LakeLockedError):
    """Another run holds the lake's lock and kept renewing it for as long as this run waited."""

    def __init__(self, lake: str, holder: str, seen_seconds: float, lease_seconds: float) -> None:
        self.lake, self.holder, self.seen_seconds, self.lease_seconds = lake, holder, seen_seconds, lease_seconds
        super().__init__(
            f"lake {lake} is locked by another ingestion run ({holder}); its lease has been seen unchanged for "
            f"{seen_seconds:.0f} s of its {lease_seconds:g} s lease; wait for the run to finish, or pass --wait "
            f"SECONDS: a holder that stopped renewing is taken over once its lease has been seen unchanged for "
            f"{lease_seconds:g} s"
        )


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
