"""Connections to a Postgres source: the connection string from `--dsn` or env LAGO_POSTGRES_DSN, and every
failure to connect named by host, port, database and user, never by password (libpq's own text is redacted too)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict

from ingestion.config import redact as redact_secrets
from ingestion.postgres.errors import NoDsnError, PostgresAccessError

# an unreachable host fails a run in seconds, not after the TCP stack's minutes (a DSN may set its own)
CONNECT_TIMEOUT_SECONDS = 10
APPLICATION_NAME = "lago-mago"


def resolve_dsn(explicit: str | None, configured: str | None) -> str:
    """`--dsn` when given, else the configuration's (env LAGO_POSTGRES_DSN, read by `ingestion.config`)."""
    dsn = explicit or configured
    if not dsn:
        raise NoDsnError()
    return dsn


@dataclass(frozen=True)
class Endpoint:
    """Where a connection string points, without its password: what error messages and logs name."""

    host: str
    port: str
    database: str
    user: str

    def __str__(self) -> str:
        return f"{self.host}:{self.port}, database {self.database}, user {self.user}"


def _parameters(dsn: str) -> dict[str, object]:
    try:
        return dict(conninfo_to_dict(dsn))
    except psycopg.Error:
        # libpq's message quotes the string it could not parse, password included: it is not repeated
        raise PostgresAccessError(
            "(unparsable connection string)",
            "the connection string is not a URI (postgresql://user:password@host:port/database) nor key=value pairs",
        ) from None


def endpoint_of(dsn: str) -> Endpoint:
    params = _parameters(dsn)

    def value(key: str, variable: str, default: str) -> str:
        return str(params.get(key) or os.environ.get(variable) or default)

    user = value("user", "PGUSER", os.environ.get("USER", "?"))
    return Endpoint(
        host=value("host", "PGHOST", "localhost"),
        port=value("port", "PGPORT", "5432"),
        database=value("dbname", "PGDATABASE", user),
        user=user,
    )


def redact(text: str, dsn: str) -> str:
    """`text` without the connection string's password, nor any `password=...` it quotes."""
    password = str(_parameters(dsn).get("password") or os.environ.get("PGPASSWORD") or "")
    if password:
        text = text.replace(password, "***")
    # and every secret of the environment, LAGO_POSTGRES_DSN's password among them, as every error text is
    return redact_secrets(re.sub(r"(password\s*=\s*)\S+", r"\1***", text))


def connect(dsn: str, *, autocommit: bool = False) -> psycopg.Connection[tuple[object, ...]]:
    """A connection, or a PostgresAccessError naming the endpoint and libpq's reason (one line, redacted)."""
    endpoint = endpoint_of(dsn)
    params = _parameters(dsn)
    options: dict[str, object] = {"application_name": APPLICATION_NAME}
    if "connect_timeout" not in params:
        options["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    try:
        return psycopg.connect(dsn, autocommit=autocommit, **options)  # type: ignore[arg-type]
    except psycopg.Error as exc:
        reason = " ".join(redact(str(exc), dsn).split())
        raise PostgresAccessError(str(endpoint), f"cannot connect: {reason}") from None
