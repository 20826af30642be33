"""The lake's identity: `_ingestion/lake.json`, written once at the lake's first capture and never changed.

dbt reads it to refuse building a warehouse from a lake other than the one it was built from. It is created
like every other write-once object (hard link locally, `If-None-Match: *` on S3), so two first runs racing
each other still leave exactly one identity.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from ingestion.errors import IdentityError
from ingestion.lake import STATE_PREFIX, Lake

log = logging.getLogger(__name__)

IDENTITY_KEY = f"{STATE_PREFIX}/lake.json"


@dataclass(frozen=True)
class LakeIdentity:
    lake_id: str  # uuid4, 32 hex digits
    created_at: str  # ISO 8601, UTC

    def to_json(self) -> bytes:
        return json.dumps({"lake_id": self.lake_id, "created_at": self.created_at}).encode()


def read_identity(lake: Lake) -> LakeIdentity | None:
    """The lake's identity, None when it has none yet; LakeError when the file is not a valid identity."""
    raw = lake.read_bytes(IDENTITY_KEY)
    if raw is None:
        return None
    try:
        body = json.loads(raw)
        identity = LakeIdentity(str(body["lake_id"]), str(body["created_at"]))
        uuid.UUID(hex=identity.lake_id)
        datetime.fromisoformat(identity.created_at)
    except (ValueError, KeyError, TypeError) as exc:
        raise IdentityError(
            lake.uri_for(IDENTITY_KEY),
            f"is not a lake identity ({exc}); it is written once by ingestion and must not be edited: restore it "
            "from a backup of this lake",
        ) from exc
    return identity


def ensure_identity(lake: Lake) -> LakeIdentity:
    """The lake's identity, created now when the lake has none (its first capture, or an older lake)."""
    existing = read_identity(lake)
    if existing is not None:
        return existing
    candidate = LakeIdentity(uuid.uuid4().hex, datetime.now(UTC).isoformat())
    if lake.create_exclusive(IDENTITY_KEY, candidate.to_json()):
        log.info("lake %s: identity %s created", lake.uri, candidate.lake_id)
        return candidate
    # another writer created it between our read and our create: theirs stands
    winner = read_identity(lake)
    if winner is None:
        raise IdentityError(lake.uri_for(IDENTITY_KEY), "could neither be created nor read")
    return winner
