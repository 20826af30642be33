"""Postgres as a source system: connections (`connection.py`), the declared tables in a database (`schema.py`)
and the simulator's day written into a database (`simulate.py`). The snapshot reader is `readers/postgres.py`."""
