"""Failures of a Postgres source, each with its facts as fields. A connection failure names the host, port, database
and user, never the password; a table's failure names the table, its place in the database and the column."""

from __future__ import annotations

from ingestion.config import POSTGRES_DSN_ENV as DSN_VARIABLE
from ingestion.errors import CatalogError, SnapshotError, SourceAccessError, UsageError


class PostgresAccessError(SourceAccessError):
    """The database could not be reached or refused the connection (address, credentials, a missing database)."""

    def __init__(self, endpoint: str, problem: str) -> None:
        self.endpoint, self.problem = endpoint, problem
        super().__init__(
            f"Postgres {endpoint}: {problem}; nothing was published. Check the connection string (--dsn or env "
            f"{DSN_VARIABLE})"
        )


class LogInterruptedError(PostgresAccessError):
    """The database went away while its log was followed, after some changes were published: those stay."""

    def __init__(self, endpoint: str, problem: str) -> None:
        self.endpoint, self.problem = endpoint, problem
        SourceAccessError.__init__(
            self,
            f"Postgres {endpoint}: {problem}; the changes published before stay in the lake, confirmed to the slot. "
            "Run again (or restart the stream) once the database is back: it goes on from there, nothing twice",
        )


class NoDsnError(UsageError):
    """A Postgres command was given no connection string."""

    def __init__(self) -> None:
        self.variable = DSN_VARIABLE  # the environment variable that would have given it
        super().__init__(
            f"no Postgres database given: set env {DSN_VARIABLE} or pass --dsn "
            "(postgresql://user:password@host:port/database)"
        )


class MissingTableError(SnapshotError):
    """A declared table is not in the database."""

    def __init__(self, table: str, relation: str, database: str) -> None:
        self.table, self.relation, self.database = table, relation, database
        super().__init__(
            f"table {table}: {relation} does not exist in Postgres database {database}; nothing was published. "
            "Create it, declare where it is (meta.database_table: schema.table), or leave it out with --tables"
        )


class MissingColumnError(SnapshotError):
    """A declared column is not a column of the database's table."""

    def __init__(self, table: str, relation: str, column: str, found: tuple[str, ...]) -> None:
        self.table, self.relation, self.column, self.found = table, relation, column, found
        super().__init__(
            f"table {table}: {relation} has no column {column} (its columns: {', '.join(found)}); nothing was published"
        )


class IncompatibleColumnError(SnapshotError):
    """A column whose database type cannot hold only values of its declared type (no value is rounded or cut)."""

    def __init__(self, table: str, relation: str, column: str, found: str, declared: str) -> None:
        self.table, self.relation, self.column, self.found, self.declared = table, relation, column, found, declared
        super().__init__(
            f"table {table}: column {column} of {relation} is {found} in the database, which does not fit the "
            f"declared {declared}; nothing was published. Change the declaration or the column's type"
        )


class CursorColumnError(CatalogError):
    """`--mode cursor` for a table that declares no cursor column."""

    def __init__(self, table: str) -> None:
        self.table = table
        super().__init__(
            f"table {table}: --mode cursor needs the table's cursor column, and it declares none; declare "
            "meta.cursor_column (a column that grows on every insert and update), or capture it with --mode snapshot"
        )


class CopyCountError(SnapshotError):
    """A COPY out of the database sent another number of rows than were read from it."""

    def __init__(self, table: str, relation: str, sent: int, read: int, *, keys: bool = False) -> None:
        self.table, self.relation, self.sent, self.read, self.keys = table, relation, sent, read, keys
        what = f"the keys of {relation}" if keys else relation
        super().__init__(f"table {table}: COPY of {what} sent {sent} rows but {read} were read; nothing was published")


class DatabaseValueError(SnapshotError):
    """A value read from the database (by COPY, or from its log) that is not of its column's declared type."""

    def __init__(self, table: str, relation: str, detail: str, *, from_log: bool = False) -> None:
        self.table, self.relation, self.detail, self.from_log = table, relation, detail, from_log
        source = f"{relation} from the log" if from_log else relation
        super().__init__(
            f"table {table}: a value of {source} is not of its declared type: {detail}; nothing was published"
        )


class SlotScopeError(UsageError):
    """A log capture that leaves out tables its source's replication slot follows: confirming the slot would
    lose their changes."""

    def __init__(self, slot: str, left_out: tuple[str, ...]) -> None:
        self.slot, self.left_out = slot, left_out
        super().__init__(
            f"slot {slot} also follows {', '.join(left_out)}: capture every table it follows in one run (name them "
            "in --tables too, or leave --tables out), or drop the slot (python -m ingestion drop-slot) to follow "
            "fewer tables"
        )


class NullKeyError(SnapshotError):
    """Rows of a table with a NULL in a primary key column (declared in the YAML, not a database constraint)."""

    def __init__(self, table: str, relation: str, column: str, rows: int) -> None:
        self.table, self.relation, self.column, self.rows = table, relation, column, rows
        super().__init__(
            f"table {table}: {rows} row(s) of {relation} have a NULL in primary key column {column}; nothing was "
            "published"
        )


class SimulatedDatabaseError(UsageError):
    """The database holds another simulation (another seed or scale) than the one asked for."""

    def __init__(self, database: str, held: str, asked: str) -> None:
        self.database, self.held, self.asked = database, held, asked
        super().__init__(
            f"Postgres database {database} holds {held}, not {asked}; run with the same --seed and --scale, or "
            "start from an empty database"
        )


class ReplicaIdentityError(SnapshotError):
    """A table log mode cannot follow: its deletes and updates would not carry the declared key."""

    def __init__(self, table: str, relation: str, identity: tuple[str, ...] | None) -> None:
        self.table, self.relation, self.identity = table, relation, identity
        found = (
            "has no primary key nor replica identity"
            if identity is None
            else f"identifies its rows by ({', '.join(identity)}), not by the declared primary key"
        )
        super().__init__(
            f"table {table}: {relation} {found}, so the write-ahead log cannot name the row a delete or update "
            f"removes; nothing was published. Add the key in the database (ALTER TABLE {relation} ADD PRIMARY KEY "
            f"(...)) or set ALTER TABLE {relation} REPLICA IDENTITY FULL, or capture the table with --mode snapshot"
        )


class SchemaChangeError(SnapshotError):
    """The source's table gained or lost a column the declaration does not know of, seen in the log."""

    def __init__(self, table: str, relation: str, column: str, change: str, sources_file: str) -> None:
        self.table, self.relation, self.column, self.change = table, relation, column, change
        fix = (
            f"declare column {column} (with its data_type) in {sources_file}"
            if change == "added"
            else f"restore column {column} in the database, or remove it from {sources_file}"
        )
        super().__init__(
            f"table {table}: column {column} was {change} in {relation}, which the declaration does not match; "
            f"nothing was published and the slot was not advanced. To go on, {fix} and run again"
        )
