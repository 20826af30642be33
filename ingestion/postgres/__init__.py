"""Postgres as a source system: connections (`connection.py`), the declared tables in a database (`schema.py`)
and the simulator's day written into a database (`simulate.py`). The snapshot reader is `readers/postgres.py`."""

import importlib.util

from ingestion.errors import MissingExtraError

# psycopg comes with the `postgres` extra: without it, `--from postgres` says so instead of a traceback
if importlib.util.find_spec("psycopg") is None:
    raise MissingExtraError("Postgres sources", "postgres")
