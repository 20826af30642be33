"""A decoder of Postgres's `pgoutput` logical replication messages (protocol version 1), the few kinds log mode
needs: a transaction's begin and commit, a relation's description, insert, update, delete and truncate.

Values stay in Postgres's text output form up to the change file, where DuckDB casts them to the declared types.
A column's value is one of: None (SQL NULL), `UNCHANGED` (a TOASTed value the update did not touch, which pgoutput
does not resend), or its text. A delete under REPLICA IDENTITY DEFAULT carries only the key columns
(`Change.key_only`).

Layout of each message: https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

# Postgres counts time in microseconds since 2000-01-01 UTC
POSTGRES_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


# an unchanged TOASTed value (pgoutput's 'u'): the lake's last value of the key's column stands
UNCHANGED: Final = _Marker("UNCHANGED")

Value = str | None | _Marker
Operation = Literal["I", "U", "D"]


class DecodeError(ValueError):
    """A message that is not pgoutput protocol 1 as this decoder knows it."""


def format_lsn(lsn: int) -> str:
    """An LSN as Postgres shows it: `16/B374D848`."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def timestamp_of(microseconds: int) -> datetime:
    return POSTGRES_EPOCH + timedelta(microseconds=microseconds)


@dataclass(frozen=True)
class Begin:
    final_lsn: int
    commit_time: datetime
    xid: int


@dataclass(frozen=True)
class Commit:
    commit_lsn: int
    # the position just past the transaction: what is confirmed to the slot once the transaction is durable
    end_lsn: int
    commit_time: datetime


@dataclass(frozen=True)
class RelationColumn:
    name: str
    type_oid: int
    is_key: bool


@dataclass(frozen=True)
class Relation:
    oid: int
    namespace: str
    name: str
    # 'd' default (primary key), 'n' nothing, 'f' full, 'i' index
    replica_identity: str
    columns: tuple[RelationColumn, ...]


@dataclass(frozen=True)
class Change:
    relation_oid: int
    operation: Operation
    # the row after the change (insert, update), or the old row a delete carries (its key under REPLICA IDENTITY
    # DEFAULT, whole under FULL)
    values: tuple[Value, ...]
    # an update that changed the key (or under REPLICA IDENTITY FULL): the old row's key or whole row
    old_values: tuple[Value, ...] | None = None
    # a delete's old row holds the replica identity's columns only: pgoutput sends the others as NULLs, which are
    # then not the row's values: they are filled from the lake
    key_only: bool = False


@dataclass(frozen=True)
class Truncate:
    relation_oids: tuple[int, ...]


Message = Begin | Commit | Relation | Change | Truncate | None


_INT16, _INT32, _UINT32 = struct.Struct("!h"), struct.Struct("!i"), struct.Struct("!I")
_INT64, _UINT64 = struct.Struct("!q"), struct.Struct("!Q")


class _Reader:
    """Reads a message's fields in order. Offsets, not slices: a row's values are decoded straight from the
    message's bytes (this is the hot loop of log mode)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def _advance(self, size: int) -> int:
        at = self.at
        if at + size > len(self.data):
            raise DecodeError(f"message ends at byte {len(self.data)}, {size} more byte(s) expected at {at}")
        self.at = at + size
        return at

    def byte(self) -> str:
        return chr(self.data[self._advance(1)])

    def int8(self) -> int:
        return self.data[self._advance(1)]

    def int16(self) -> int:
        return int(_INT16.unpack_from(self.data, self._advance(2))[0])

    def int32(self) -> int:
        return int(_INT32.unpack_from(self.data, self._advance(4))[0])

    def uint32(self) -> int:
        return int(_UINT32.unpack_from(self.data, self._advance(4))[0])

    def int64(self) -> int:
        return int(_INT64.unpack_from(self.data, self._advance(8))[0])

    def uint64(self) -> int:
        return int(_UINT64.unpack_from(self.data, self._advance(8))[0])

    def string(self) -> str:
        end = self.data.find(b"\0", self.at)
        if end < 0:
            raise DecodeError(f"unterminated string at byte {self.at}")
        text = self.data[self.at : end].decode()
        self.at = end + 1
        return text

    def tuple_data(self) -> tuple[Value, ...]:
        data, at = self.data, self.at
        try:
            (count,) = _INT16.unpack_from(data, at)
            at += 2
            values: list[Value] = []
            for _ in range(count):
                kind = data[at]
                at += 1
                if kind == 116:  # 't': text
                    (size,) = _INT32.unpack_from(data, at)
                    at += 4
                    if at + size > len(data):
                        raise DecodeError(f"a value of {size} bytes at byte {at} runs past the message's end")
                    values.append(data[at : at + size].decode())
                    at += size
                elif kind == 110:  # 'n': NULL
                    values.append(None)
                elif kind == 117:  # 'u': unchanged TOASTed value
                    values.append(UNCHANGED)
                else:  # 'b' (binary) is only sent when asked for
                    raise DecodeError(f"column value of kind {chr(kind)!r} is not decoded (text output only)")
        except (struct.error, IndexError):
            raise DecodeError(f"row data ends early, at byte {len(data)}") from None
        self.at = at
        return tuple(values)


def decode(data: bytes) -> Message:
    """One message; None for kinds log mode has no use for (origin, type, logical decoding messages)."""
    reader = _Reader(bytes(data))
    kind = reader.byte()
    if kind == "B":
        return Begin(reader.uint64(), timestamp_of(reader.int64()), reader.uint32())
    if kind == "C":
        reader.int8()  # flags, unused
        return Commit(reader.uint64(), reader.uint64(), timestamp_of(reader.int64()))
    if kind == "R":
        oid, namespace, name = reader.uint32(), reader.string(), reader.string()
        identity = reader.byte()
        columns = []
        for _ in range(reader.int16()):
            flags, column, type_oid = reader.int8(), reader.string(), reader.uint32()
            reader.int32()  # type modifier
            columns.append(RelationColumn(column, type_oid, bool(flags & 1)))
        return Relation(oid, namespace, name, identity, tuple(columns))
    if kind == "I":
        oid = reader.uint32()
        if reader.byte() != "N":
            raise DecodeError("insert without its new row")
        return Change(oid, "I", reader.tuple_data())
    if kind == "U":
        oid = reader.uint32()
        marker = reader.byte()
        old = None
        if marker in ("K", "O"):
            old = reader.tuple_data()
            marker = reader.byte()
        if marker != "N":
            raise DecodeError("update without its new row")
        return Change(oid, "U", reader.tuple_data(), old)
    if kind == "D":
        oid = reader.uint32()
        marker = reader.byte()
        if marker not in ("K", "O"):
            raise DecodeError("delete without its old row")
        return Change(oid, "D", reader.tuple_data(), key_only=marker == "K")
    if kind == "T":
        count = reader.int32()
        reader.int8()  # options: CASCADE, RESTART IDENTITY
        return Truncate(tuple(reader.uint32() for _ in range(count)))
    if kind in ("O", "Y", "M"):
        return None
    raise DecodeError(f"unknown pgoutput message kind {kind!r}")
