"""Exceptions a user can act on. Each maps to a non-zero exit code in the CLI."""

from __future__ import annotations


class IngestionError(Exception):
    """Base class: every failure the CLI reports without a traceback."""

    exit_code = 1


class CatalogError(IngestionError):
    """The table declarations are invalid or a requested table/source is not declared."""

    exit_code = 2


class SnapshotError(IngestionError):
    """A source snapshot is unusable (bad file, bad row, bad key); nothing was published."""

    exit_code = 3


class LakeError(IngestionError):
    """The lake could not be read or written."""

    exit_code = 4


class LakeLockedError(IngestionError):
    """Another ingestion run holds the lake's lock."""

    exit_code = 5
