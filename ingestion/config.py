"""Every environment variable of the ingestion and its orchestration, read in one place into frozen dataclasses.

A command reads its configuration once, when it starts (never at import, so a test or a Dagster code location
may set the environment first), and passes it down. An invalid value stops the command before it touches the
lake, with an error naming the variable and the value.

Three exceptions are read where they act, by the functions at the end of this module: secrets (only to blank
them out of error texts; keeping them out of the configuration keeps them out of every repr and log line of it),
the crash tests' failpoint, and the local Postgres's server binaries (only that tool needs them). The one secret
a command itself uses, a Postgres source's connection string, is in the configuration but never in its repr, and
`redact` blanks it and its password out of error texts all the same.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar, get_args
from urllib.parse import parse_qs, unquote, urlsplit

from ingestion.errors import ConfigError

Env = Mapping[str, str]
RetryMode = Literal["standard", "adaptive", "legacy"]
Number = TypeVar("Number", int, float)

# The dbt project holding the declarations: this checkout, or env LAGO_PROJECT_DIR where the package is installed
# apart from the project (a wheel on a Databricks job cluster).
CHECKOUT = Path(__file__).resolve().parent.parent
# the CLI's lake when neither --lake nor LAKE_URI names one (Dagster's is `lake` under the project directory)
DEFAULT_LAKE = "./lake"
DEFAULT_DUCKDB_MEMORY_LIMIT = "3GB"
# A run against an endpoint that accepts connections and never answers fails within about a minute: 4 attempts of
# at most 5 s to connect and 10 s to read, plus botocore's backoff between them.
DEFAULT_MAX_ATTEMPTS = 4
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 10.0
# Dagster: every six hours, as the reference tool's own scheduler does by default
DEFAULT_CRON = "0 */6 * * *"

# a Postgres source's connection string (`--dsn` overrides it); it may hold the database's password
POSTGRES_DSN_ENV = "LAGO_POSTGRES_DSN"
# the local Postgres (`orchestration.local_postgres`, also the tests'): where its server binaries are
POSTGRES_BIN_ENV = "LAGO_POSTGRES_BIN"
DEFAULT_POSTGRES_BIN = "/usr/lib/postgresql/15/bin"
SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "KAGGLE_KEY",
    "KAGGLE_API_TOKEN",
    POSTGRES_DSN_ENV,
)
FAILPOINT_ENV = "LAGO_FAILPOINT"
# what DuckDB's memory_limit takes: a positive size with a unit (3GB, 512MiB, 2T) or a share of the RAM (75%)
_MEMORY = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:[KMGT]i?B?|B|%)\s*", re.IGNORECASE)


def _text(env: Env, name: str) -> str | None:
    """A variable's value; an empty one counts as unset, as a shell's `NAME=` means."""
    return env.get(name) or None


def _memory(env: Env, name: str, default: str) -> str:
    text = _text(env, name)
    if text is None:
        return default
    match = _MEMORY.fullmatch(text)
    if match is None or not float(match.group(1)) > 0:
        raise ConfigError(name, text, "give a positive size with a unit, e.g. 3GB, 512MiB, or a share of the RAM, 75%")
    return text


def _number(env: Env, name: str, kind: Callable[[str], Number], default: Number, *, zero: bool = False) -> Number:
    """A number variable: `kind` parses it; it must be finite and positive (or 0 when `zero`)."""
    text = _text(env, name)
    if text is None:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(name, text, "is not a number") from None
    if not math.isfinite(value) or not (value >= 0 if zero else value > 0):
        raise ConfigError(name, text, "must be a finite number, 0 or more" if zero else "must be positive and finite")
    return value


@dataclass(frozen=True)
class S3Settings:
    """botocore's retries and this project's timeouts, for every S3 client of a lake (boto3 and s3fs)."""

    retry_mode: RetryMode = "standard"
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS
    read_timeout: float = READ_TIMEOUT_SECONDS

    @classmethod
    def from_env(cls, env: Env | None = None) -> S3Settings:
        env = os.environ if env is None else env
        mode = _text(env, "AWS_RETRY_MODE") or "standard"
        modes: tuple[RetryMode, ...] = get_args(RetryMode)
        if mode not in modes:
            raise ConfigError("AWS_RETRY_MODE", mode, f"use {', '.join(modes)}")
        return cls(
            retry_mode=next(m for m in modes if m == mode),
            max_attempts=_number(env, "AWS_MAX_ATTEMPTS", int, DEFAULT_MAX_ATTEMPTS),
            connect_timeout=_number(env, "LAGO_S3_CONNECT_TIMEOUT", float, CONNECT_TIMEOUT_SECONDS),
            read_timeout=_number(env, "LAGO_S3_READ_TIMEOUT", float, READ_TIMEOUT_SECONDS),
        )


@dataclass(frozen=True)
class OrchestrationSettings:
    """The Dagster side's own variables (paths as given: `orchestration.settings` resolves them)."""

    duckdb_path: str = "warehouse/lago_mago.duckdb"
    dbt_target: str = "dev"
    # dbt's artefacts for Dagster's runs, apart from the ones of dbt run by hand
    dbt_target_path: str = "target/dagster"
    cron: str = DEFAULT_CRON
    max_retries: int = 3
    retry_delay_seconds: float = 30.0
    lock_wait_seconds: float = 300.0

    @classmethod
    def from_env(cls, env: Env) -> OrchestrationSettings:
        default = cls()
        return cls(
            # the dbt profile reads DUCKDB_PATH too, with the same default
            duckdb_path=_text(env, "DUCKDB_PATH") or default.duckdb_path,
            dbt_target=_text(env, "LAGO_DBT_TARGET") or default.dbt_target,
            dbt_target_path=_text(env, "LAGO_DBT_TARGET_PATH") or default.dbt_target_path,
            cron=_text(env, "LAGO_SCHEDULE_CRON") or default.cron,
            max_retries=_number(env, "LAGO_MAX_RETRIES", int, default.max_retries, zero=True),
            retry_delay_seconds=_number(env, "LAGO_RETRY_DELAY_SECONDS", float, default.retry_delay_seconds, zero=True),
            lock_wait_seconds=_number(env, "LAGO_LOCK_WAIT_SECONDS", float, default.lock_wait_seconds, zero=True),
        )


@dataclass(frozen=True)
class Config:
    """The whole configuration of one command, CLI or Dagster."""

    project_dir: Path
    # LAKE_URI as given; None when unset (the CLI and Dagster each have their default)
    lake_uri: str | None
    # DuckDB's memory cap in the ingestion's own connections; it spills past it to the run's work folder
    duckdb_memory_limit: str
    s3: S3Settings
    orchestration: OrchestrationSettings
    # LAGO_POSTGRES_DSN, the connection string `--from postgres` reads without --dsn (None when unset). A secret:
    # kept out of the repr, so a logged or displayed configuration never shows it
    postgres_dsn: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Env | None = None) -> Config:
        env = os.environ if env is None else env
        return cls(
            project_dir=project_dir(env),
            lake_uri=_text(env, "LAKE_URI"),
            duckdb_memory_limit=_memory(env, "LAGO_DUCKDB_MEMORY_LIMIT", DEFAULT_DUCKDB_MEMORY_LIMIT),
            s3=S3Settings.from_env(env),
            orchestration=OrchestrationSettings.from_env(env),
            postgres_dsn=_text(env, POSTGRES_DSN_ENV),
        )


def project_dir(env: Env | None = None) -> Path:
    """The dbt project whose declarations the ingestion reads (LAGO_PROJECT_DIR, else this checkout)."""
    env = os.environ if env is None else env
    return Path(_text(env, "LAGO_PROJECT_DIR") or CHECKOUT).resolve()


def dbt_project_dir(env: Env | None = None) -> Path:
    """The dbt project the scheduler's builds run: DBT_PROJECT_DIR, dbt's own variable, as the `dbt` command
    reads it; else the working directory."""
    env = os.environ if env is None else env
    return Path(_text(env, "DBT_PROJECT_DIR") or ".")


def postgres_bin_dir(env: Env | None = None) -> Path:
    """The Postgres server binaries the local Postgres runs (LAGO_POSTGRES_BIN, else Debian's postgresql-15).

    Read when a server is started, not with a command's configuration: only the local Postgres needs it."""
    env = os.environ if env is None else env
    return Path(_text(env, POSTGRES_BIN_ENV) or DEFAULT_POSTGRES_BIN)


def redact(text: str) -> str:
    """`text` with the value of every secret variable blanked out (botocore and the Kaggle client can echo them),
    and the password of LAGO_POSTGRES_DSN too (libpq's messages can quote it without the rest of the string)."""
    secrets = [os.environ.get(name) for name in SECRET_VARIABLES]
    dsn = os.environ.get(POSTGRES_DSN_ENV)
    if dsn:
        secrets.extend(dsn_passwords(dsn))
    # the longest first: a password inside the connection string must not break the string's own replacement
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


_KEY_VALUE_PASSWORD = re.compile(r"(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")


def dsn_passwords(dsn: str) -> tuple[str, ...]:
    """The password a connection string holds, as written and as libpq reads it: a URI's userinfo or `password`
    parameter (postgresql://user:password@host/db, percent-encoded), or a `password=...` pair (quoted or not)."""
    found: list[str] = []
    if "://" in dsn:
        try:
            parts = urlsplit(dsn)
            password = parts.password
        except ValueError:
            return ()
        if password:
            found += [password, unquote(password)]
        found += parse_qs(parts.query).get("password", [])
        return tuple(dict.fromkeys(found))
    for match in _KEY_VALUE_PASSWORD.finditer(dsn):
        value = match.group(1)
        found.append(value)
        if len(value) >= 2 and value[0] == value[-1] == "'":
            found.append(re.sub(r"\\(.)", r"\1", value[1:-1]))
    return tuple(dict.fromkeys(found))


def armed_failpoint() -> str | None:
    """The crash tests' failpoint (LAGO_FAILPOINT=<step>): the step at which the process kills itself."""
    return _text(os.environ, FAILPOINT_ENV)
