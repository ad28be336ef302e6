"""API keys: creation, lookup in constant time, revocation.

A key looks like `lm_<id>_<secret>`: `id` (12 hex chars) is stored in clear to find
the row; the whole key is stored only as its SHA-256 (keys are 256-bit random, so a
fast hash is enough: there is nothing to brute-force) and compared with
hmac.compare_digest.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from app.auth.models import ApiKey

Scope = Literal["ingest", "read", "admin"]
SCOPES: tuple[Scope, ...] = ("ingest", "read", "admin")


@dataclass(frozen=True, slots=True)
class NewKey:
    key_id: str
    key: str
    scope: str
    name: str


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(*, session: Session, scope: Scope, name: str, now: datetime) -> NewKey:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    key_id = secrets.token_hex(6)
    key = f"lm_{key_id}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(id=key_id, name=name, scope=scope, key_hash=_hash(key), created_at=now))
    session.flush()
    return NewKey(key_id=key_id, key=key, scope=scope, name=name)


def any_active_key(*, session: Session) -> bool:
    return bool(session.scalar(select(exists().where(ApiKey.revoked_at.is_(None)))))


def lookup(*, session: Session, presented: str) -> ApiKey | None:
    """The active key matching `presented`, or None. Constant-time on the secret part."""
    parts = presented.split("_")
    if len(parts) < 3 or parts[0] != "lm":
        return None
    row = session.get(ApiKey, parts[1])
    if row is None or row.revoked_at is not None:
        # Still hash, so timing does not tell "no such id" from "wrong secret".
        hmac.compare_digest(_hash(presented), "0" * 64)
        return None
    return row if hmac.compare_digest(_hash(presented), row.key_hash) else None


def list_keys(*, session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def revoke(*, session: Session, key_id: str, now: datetime) -> bool:
    row = session.get(ApiKey, key_id)
    if row is None:
        return False
    if row.revoked_at is None:
        row.revoked_at = now
        session.flush()
    return True


def allows(granted: str, needed: Scope) -> bool:
    """admin may do everything; ingest and read only their own."""
    return granted == "admin" or granted == needed
