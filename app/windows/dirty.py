"""The dirty-window queue: marking (ingest side), folding and leasing (compute side).

Marks are appended to the `window_changes` log: inserts only, so concurrent writers of
one window never queue on a shared row. Compute passes fold the log into
`dirty_windows` (bumping `generation`); only they write that table. Its rows are always
touched in sorted key order so concurrent transactions take row locks in the same order
(no deadlocks).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    Result,
    and_,
    case,
    delete,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.orm import Session

from app.db import is_postgres
from app.registry.models import MonitoredModel
from app.windows.models import DirtyWindow, WindowChange


@dataclass(frozen=True, slots=True)
class Claim:
    model_id: str
    window_start: int
    generation: int
    # The window was leased by another pass whose lease ran out (a dead worker: live
    # ones renew theirs, see app/windows/heartbeat.py).
    took_over: bool = False


@dataclass(frozen=True, slots=True)
class Queued:
    """A dirty window as the queue holds it now."""

    generation: int
    claim_token: str | None
    leased_until_us: int | None

    def leased_by_other(self, token: str, now_us: int) -> bool:
        return (
            self.claim_token is not None
            and self.claim_token != token
            and (self.leased_until_us or 0) >= now_us
        )


def mark_dirty(*, session: Session, model_id: str, window_starts: Iterable[int]) -> int:
    """Log that these windows' inputs changed (one row per distinct window); returns how
    many. Visible to compute passes when the caller's transaction commits."""
    starts = sorted({int(w) for w in window_starts})
    if starts:
        session.execute(
            insert(WindowChange), [{"model_id": model_id, "window_start": w} for w in starts]
        )
    return len(starts)


# PostgreSQL: one statement. A change row committed after the DELETE's snapshot stays in
# the log for the next fold; two concurrent folds never move one row twice (the second
# DELETE waits for the first's row lock and then skips the deleted row).
_PG_FOLD = """
WITH moved AS (
    DELETE FROM window_changes WHERE model_id = ANY(:models) RETURNING model_id, window_start
)
INSERT INTO dirty_windows (model_id, window_start, generation)
SELECT DISTINCT model_id, window_start, 1 FROM moved ORDER BY model_id, window_start
ON CONFLICT (model_id, window_start) DO UPDATE SET generation = dirty_windows.generation + 1
"""
# SQLite: the caller's BEGIN IMMEDIATE transaction holds the write lock, so nothing lands
# between the two statements. (`WHERE true` disambiguates the upsert's SELECT.)
_SQLITE_FOLD = """
INSERT INTO dirty_windows (model_id, window_start, generation)
SELECT DISTINCT model_id, window_start, 1 FROM window_changes WHERE true
ORDER BY model_id, window_start
ON CONFLICT (model_id, window_start) DO UPDATE SET generation = dirty_windows.generation + 1
"""


def _rowcount(result: Result[Any]) -> int:
    return int(cast(CursorResult[Any], result).rowcount or 0)


def fold(*, session: Session) -> int:
    """Move the logged changes into `dirty_windows`: a new row at generation 1, or the
    existing row's generation bumped (so a claim computed from older inputs is retried).
    Returns the number of windows touched.

    Keep the transaction that calls this short and free of other `dirty_windows` row
    locks taken in a different order (e.g. lock_own_claims): two sorted lock sequences
    in one transaction can deadlock against another pass.

    PostgreSQL: the logged models' rows are locked first (lock_models) and only their
    entries are folded. Folding deletes log rows and then inserts window rows whose
    foreign-key check waits for the model row; a model DELETE holds that row and then
    cascades into the same log rows, so without the model lock first the two deadlock
    (tests/windows/test_fold.py). A model whose first entry lands after the lock is
    folded next time.
    """
    if is_postgres(session):
        logged = session.scalars(select(WindowChange.model_id).distinct()).all()
        models = lock_models(session=session, model_ids=logged)
        if not models:
            return 0
        return _rowcount(session.execute(text(_PG_FOLD), {"models": sorted(models)}))
    touched = _rowcount(session.execute(text(_SQLITE_FOLD)))
    if touched:
        session.execute(delete(WindowChange))
    return touched


def claim(*, session: Session, token: str, now_us: int, lease_us: int, limit: int) -> list[Claim]:
    """Lease up to `limit` unleased (or lease-expired) windows for this token.

    PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent claimers take disjoint rows
    without waiting. SQLite: the BEGIN IMMEDIATE transaction serialises claimers.
    """
    free = or_(DirtyWindow.claim_token.is_(None), DirtyWindow.leased_until_us < now_us)
    rows = session.execute(
        select(
            DirtyWindow.model_id,
            DirtyWindow.window_start,
            DirtyWindow.generation,
            DirtyWindow.claim_token,
        )
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
    return [
        Claim(r.model_id, r.window_start, r.generation, took_over=r.claim_token is not None)
        for r in rows
    ]


def renew(*, session: Session, token: str, until_us: int) -> int:
    """Extend this token's leases to `until_us` (never shorten them): the heartbeat of a
    live pass. Rows are locked in sorted key order, like everywhere else (no deadlocks
    with a fold or a settle). Returns how many leases it renewed."""
    mine = (
        select(DirtyWindow.model_id, DirtyWindow.window_start)
        .where(DirtyWindow.claim_token == token)
        .order_by(DirtyWindow.model_id, DirtyWindow.window_start)
        .with_for_update()
    )
    keys = [tuple(k) for k in session.execute(mine).all()]
    if not keys:
        return 0
    lease = DirtyWindow.leased_until_us
    later = case((lease > until_us, lease), else_=until_us)
    result = session.execute(
        update(DirtyWindow)
        .where(
            tuple_(DirtyWindow.model_id, DirtyWindow.window_start).in_(keys),
            DirtyWindow.claim_token == token,
        )
        .values(leased_until_us=later)
    )
    return _rowcount(result)


def queued(*, session: Session) -> dict[tuple[str, int], Queued]:
    """Every dirty window with its generation and lease (after a fold: the whole queue)."""
    rows = session.execute(
        select(
            DirtyWindow.model_id,
            DirtyWindow.window_start,
            DirtyWindow.generation,
            DirtyWindow.claim_token,
            DirtyWindow.leased_until_us,
        )
    ).all()
    return {
        (r.model_id, r.window_start): Queued(r.generation, r.claim_token, r.leased_until_us)
        for r in rows
    }


def lock_models(*, session: Session, model_ids: Iterable[str]) -> set[str]:
    """Hold these models' rows FOR KEY SHARE (PostgreSQL), in id order, before any
    window row is locked or written; returns the ids still registered.

    A model DELETE locks the model row first and then cascades into the window tables.
    A transaction that locked window rows first and then wrote rows referencing the
    model (whose foreign-key check waits for the model row) could deadlock against it;
    taking the model rows first is the DELETE's own order, so the two queue instead.
    SQLite: the write transaction already excludes every other writer."""
    ids = sorted(set(model_ids))
    if not ids:
        return set()
    rows = session.scalars(
        select(MonitoredModel.id)
        .where(MonitoredModel.id.in_(ids))
        .order_by(MonitoredModel.id)
        .with_for_update(read=True, key_share=True)  # FOR KEY SHARE
    )
    return set(rows)


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
