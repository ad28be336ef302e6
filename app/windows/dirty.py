"""The dirty-window queue: marking (ingest side) and leasing (compute side).

Marks are bulk upserts that bump `generation`. Rows are always touched in sorted key
order so concurrent transactions take row locks in the same order (no deadlocks).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, delete, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db import is_postgres
from app.windows.models import DirtyWindow


@dataclass(frozen=True, slots=True)
class Claim:
    model_id: str
    window_start: int
    generation: int


def mark_dirty(*, session: Session, model_id: str, window_starts: Iterable[int]) -> int:
    starts = sorted({int(w) for w in window_starts})
    if not starts:
        return 0
    insert = postgresql.insert if is_postgres(session) else sqlite.insert
    stmt = insert(DirtyWindow).values(
        [{"model_id": model_id, "window_start": w, "generation": 1} for w in starts]
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[DirtyWindow.model_id, DirtyWindow.window_start],
        set_={"generation": DirtyWindow.generation + 1},
    )
    session.execute(stmt)
    return len(starts)


def claim(*, session: Session, token: str, now_us: int, lease_us: int, limit: int) -> list[Claim]:
    """Lease up to `limit` unleased (or lease-expired) windows for this token.

    PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent claimers take disjoint rows
    without waiting. SQLite: the BEGIN IMMEDIATE transaction serialises claimers.
    """
    free = or_(DirtyWindow.claim_token.is_(None), DirtyWindow.leased_until_us < now_us)
    rows = session.execute(
        select(DirtyWindow.model_id, DirtyWindow.window_start, DirtyWindow.generation)
        .where(free)
        .order_by(DirtyWindow.model_id, DirtyWindow.window_start)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return []
    keys = [(r.model_id, r.window_start) for r in rows]
    session.execute(
        update(DirtyWindow)
        .where(tuple_(DirtyWindow.model_id, DirtyWindow.window_start).in_(keys))
        .values(claim_token=token, leased_until_us=now_us + lease_us)
    )
    return [Claim(r.model_id, r.window_start, r.generation) for r in rows]


def lock_own_claims(
    *, session: Session, token: str, claims: Sequence[Claim]
) -> dict[tuple[str, int], int]:
    """Lock the claims this token still holds; returns their current generations.

    A claim whose lease expired and was taken over is not returned: its result is
    stale and must not be written.
    """
    if not claims:
        return {}
    keys = sorted((c.model_id, c.window_start) for c in claims)
    rows = session.execute(
        select(DirtyWindow.model_id, DirtyWindow.window_start, DirtyWindow.generation)
        .where(
            and_(
                tuple_(DirtyWindow.model_id, DirtyWindow.window_start).in_(keys),
                DirtyWindow.claim_token == token,
            )
        )
        .order_by(DirtyWindow.model_id, DirtyWindow.window_start)
        .with_for_update()
    ).all()
    return {(r.model_id, r.window_start): r.generation for r in rows}


def settle(*, session: Session, token: str, done: Sequence[Claim], retry: Sequence[Claim]) -> None:
    """Delete the windows computed from current inputs; release those that changed meanwhile."""
    if done:
        session.execute(
            delete(DirtyWindow).where(
                tuple_(DirtyWindow.model_id, DirtyWindow.window_start, DirtyWindow.generation).in_(
                    [(c.model_id, c.window_start, c.generation) for c in done]
                ),
                DirtyWindow.claim_token == token,
            )
        )
    if retry:
        session.execute(
            update(DirtyWindow)
            .where(
                tuple_(DirtyWindow.model_id, DirtyWindow.window_start).in_(
                    [(c.model_id, c.window_start) for c in retry]
                ),
                DirtyWindow.claim_token == token,
            )
            .values(claim_token=None, leased_until_us=None)
        )
