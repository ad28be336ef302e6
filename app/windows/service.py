"""Window computation over the database: dirty windows -> window_metrics rows.

A pass (1) sweeps actuals that were written before their prediction was visible,
(2) repeatedly folds the window change log into the dirty queue and leases a batch of
dirty windows, reads their joined rows in one query
per model, computes every metric with numpy, and (3) writes the results only for
claims it still holds, deleting the dirty mark only if no write came in meanwhile.
Each step is its own short transaction, so ingestion never waits on the math.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import delete, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import is_postgres, session_scope
from app.registry import horizon
from app.registry.models import MonitoredModel
from app.windows import dirty, heartbeat, history_json, slice_store
from app.windows.models import SPARK, WindowMetric
from app.windows.reader import read_joined
from app.windows.values import compute_stats, metric_values

log = logging.getLogger(__name__)


@dataclass
class PassResult:
    swept_windows: int = 0
    computed: int = 0
    retried: int = 0  # computed, but inputs changed meanwhile: queued again
    stale: int = 0  # our lease lapsed and another pass took the window
    taken_over: int = 0  # claimed from a lapsed lease (a dead pass)
    seconds: float = 0.0
    models: set[str] = field(default_factory=set)
    # compute_until_done only:
    dirty_at_start: int = 0
    # windows another live pass held (was computing) when we started
    held_at_start: int = 0
    waited_for: int = 0  # windows another live pass held while we waited
    unfinished: int = 0  # dirty at start and still not computed when we gave up
    # (model_id, window_start) -> newest generation we computed it from
    computed_generations: dict[tuple[str, int], int] = field(default_factory=dict)


def sweep_pending_actuals(*, session: Session) -> int:
    """Mark dirty the windows of pending actuals whose prediction has since arrived."""
    if is_postgres(session):
        rows = session.execute(
            text(
                "UPDATE actuals AS a SET pending = false, window_start = p.window_start "
                "FROM predictions AS p "
                "WHERE a.pending AND p.model_id = a.model_id "
                "AND p.prediction_id = a.prediction_id "
                "RETURNING a.model_id, p.window_start"
            )
        ).all()
    else:
        # One BEGIN IMMEDIATE transaction: nobody can write between the two statements.
        rows = session.execute(
            text(
                "SELECT a.model_id, p.window_start FROM actuals AS a JOIN predictions AS p "
                "ON p.model_id = a.model_id AND p.prediction_id = a.prediction_id "
                "WHERE a.pending"
            )
        ).all()
        if rows:
            session.execute(
                text(
                    "UPDATE actuals SET pending = 0, window_start = (SELECT p.window_start "
                    "FROM predictions AS p WHERE p.model_id = actuals.model_id "
                    "AND p.prediction_id = actuals.prediction_id) "
                    "WHERE pending AND EXISTS (SELECT 1 "
                    "FROM predictions AS p WHERE p.model_id = actuals.model_id "
                    "AND p.prediction_id = actuals.prediction_id)"
                )
            )
    by_model: dict[str, set[int]] = defaultdict(set)
    for model_id, window_start in rows:
        by_model[model_id].add(window_start)
    return sum(
        dirty.mark_dirty(session=session, model_id=m, window_starts=ws)
        for m, ws in sorted(by_model.items())
    )


def write_metrics(*, session: Session, values: list[dict[str, object]]) -> None:
    if not values:
        return
    insert = postgresql.insert if is_postgres(session) else sqlite.insert
    stmt = insert(WindowMetric).values(values)
    keys = {"model_id", "window_start"}
    stmt = stmt.on_conflict_do_update(
        index_elements=[WindowMetric.model_id, WindowMetric.window_start],
        set_={c: stmt.excluded[c] for c in values[0] if c not in keys},
    )
    session.execute(stmt)


def _spark_windows(
    *, session: Session, windows: Collection[tuple[str, int]]
) -> set[tuple[str, int]]:
    if not windows:
        return set()
    rows = session.execute(
        select(WindowMetric.model_id, WindowMetric.window_start).where(
            tuple_(WindowMetric.model_id, WindowMetric.window_start).in_(sorted(windows)),
            WindowMetric.source == SPARK,
        )
    ).all()
    return {(m, ws) for m, ws in rows}


@dataclass
class _Computed:
    values: list[dict[str, object]] = field(default_factory=list)
    slices: list[dict[str, object]] = field(default_factory=list)
    empty: list[tuple[str, int]] = field(default_factory=list)  # no predictions any more
    # past retention: metrics and slices stay as they are
    retired: list[tuple[str, int]] = field(default_factory=list)


class PinnedSlices(Protocol):
    """(kind, key, value) of a model's slices that are always precomputed (those its
    monitors watch): alerting provides it (app/jobs.py), windows does not import it."""

    def __call__(self, *, session: Session, model_id: str) -> set[tuple[str, str, str]]: ...


def no_pinned_slices(*, session: Session, model_id: str) -> set[tuple[str, str, str]]:
    return set()


def _compute_claims(
    *,
    session: Session,
    claims: Sequence[dirty.Claim],
    now: datetime,
    top_n: int,
    pinned_slices: PinnedSlices,
) -> _Computed:
    by_model: dict[str, list[int]] = defaultdict(list)
    for c in claims:
        by_model[c.model_id].append(c.window_start)
    out = _Computed()
    now_s = int(now.timestamp())
    for model_id, all_starts in by_model.items():
        model = session.get(MonitoredModel, model_id)
        if model is None:  # deleted meanwhile; its rows cascade away
            continue
        # A window past retention keeps the metrics it has: its raw rows are (being)
        # deleted, so recomputing it could only lose information.
        starts = [
            ws
            for ws in all_starts
            if not horizon.window_expired(
                window_start=ws,
                now_s=now_s,
                retention_days=model.retention_days,
                window_seconds=model.window_seconds,
            )
        ]
        kept = set(starts)
        out.retired.extend((model_id, ws) for ws in all_starts if ws not in kept)
        if not starts:
            continue
        rows = read_joined(
            session=session,
            model_id=model_id,
            window_starts=starts,
            multiclass=model.task == "multiclass",
            with_slices=True,
        )
        stats = compute_stats(rows, model.clip_eps)
        for ws in starts:
            st = stats.get(ws)
            if st is None or st.predictions == 0:
                # With retention, an empty window is one retention emptied after our
                # horizon check (another worker's later clock): keep its metrics.
                target = out.retired if model.retention_days is not None else out.empty
                target.append((model_id, ws))
                continue
            out.values.append(
                metric_values(
                    model_id=model_id,
                    window_start=ws,
                    window_seconds=model.window_seconds,
                    stats=st,
                    now=now,
                    classes=model.classes,
                )
            )
        pinned = pinned_slices(session=session, model_id=model_id)
        out.slices.extend(
            slice_store.slice_values(
                rows=rows,
                model=model,
                top_n=top_n,
                now=now,
                pinned=pinned,
                window_stats=stats,
            )
        )
    return out


def _compute_claimed(
    *,
    factory: sessionmaker[Session],
    read_factory: sessionmaker[Session],
    settings: Settings,
    clock: Callable[[], float],
    on_written: Callable[[Session, set[str], datetime], None] | None,
    token: str,
    result: PassResult,
    pinned_slices: PinnedSlices,
) -> None:
    """Lease, compute and settle batches until no window is free to claim."""
    lease_us = int(settings.compute_lease_s * 1e6)
    while True:
        with session_scope(factory) as session:
            dirty.fold(session=session)
            claims = dirty.claim(
                session=session,
                token=token,
                now_us=int(clock() * 1e6),
                lease_us=lease_us,
                limit=settings.compute_batch_windows,
            )
        if not claims:
            return
        now = datetime.fromtimestamp(clock(), UTC)
        with session_scope(read_factory) as session:
            computed = _compute_claims(
                session=session,
                claims=claims,
                now=now,
                top_n=settings.slice_top_n,
                pinned_slices=pinned_slices,
            )
        # Writes that landed while we computed bump their windows' generation now, so
        # those windows are retried below rather than settled. Its own short transaction:
        # folding locks dirty_windows rows in another order than lock_own_claims (see
        # dirty.fold). A change committed after this fold stays in the log, and the next
        # fold re-queues its window even if we settle it: nothing is computed from stale
        # inputs and left that way.
        with session_scope(factory) as session:
            dirty.fold(session=session)
        with session_scope(factory) as session:
            # Model rows before window rows (a concurrent model DELETE's order): a model
            # deleted meanwhile took its claims with it, so nothing is written for it.
            dirty.lock_models(session=session, model_ids={c.model_id for c in claims})
            held = dirty.lock_own_claims(session=session, token=token, claims=claims)
            # A window Spark computed is owned by `lossmon spark compute`: its claim
            # settles, its rows stay.
            spark = _spark_windows(session=session, windows=held)
            writable = {k for k in held if k not in spark}
            values = [v for v in computed.values if (v["model_id"], v["window_start"]) in writable]
            empty = [k for k in computed.empty if k in writable]
            write_metrics(session=session, values=values)
            slice_rows = [
                v for v in computed.slices if (v["model_id"], v["window_start"]) in writable
            ]
            retired = set(computed.retired)
            slice_store.replace_slices(
                session=session,
                windows=sorted(k for k in writable if k not in retired),
                values=slice_rows,
            )
            if empty:
                session.execute(
                    delete(WindowMetric).where(
                        tuple_(WindowMetric.model_id, WindowMetric.window_start).in_(empty)
                    )
                )
            done = [c for c in claims if held.get((c.model_id, c.window_start)) == c.generation]
            retry = [
                c
                for c in claims
                if (c.model_id, c.window_start) in held
                and held[(c.model_id, c.window_start)] != c.generation
            ]
            dirty.settle(session=session, token=token, done=done, retry=retry)
            written = {str(v["model_id"]) for v in values} | {m for m, _ in empty}
            if on_written is not None and written:
                on_written(session, written, now)  # `now`: the windows' computed_at
        result.computed += len(values) + len(empty)
        result.retried += len(retry)
        result.stale += len(claims) - len(held)
        result.taken_over += sum(1 for c in claims if c.took_over)
        result.models.update(c.model_id for c in claims)
        for c in claims:
            if (c.model_id, c.window_start) in held:
                # Computed from inputs at least as new as generation c.generation.
                key = (c.model_id, c.window_start)
                result.computed_generations[key] = max(
                    c.generation, result.computed_generations.get(key, 0)
                )


def _log_pass(result: PassResult) -> None:
    if result.computed or result.swept_windows:
        log.info(
            "compute pass: %d windows computed, %d re-queued, %d stale, %d taken over, %.3fs",
            result.computed,
            result.retried,
            result.stale,
            result.taken_over,
            result.seconds,
        )


def compute_pass(
    *,
    factory: sessionmaker[Session],
    read_factory: sessionmaker[Session],
    settings: Settings,
    clock: Callable[[], float] = time.time,
    on_written: Callable[[Session, set[str], datetime], None] | None = None,
    pinned_slices: PinnedSlices = no_pinned_slices,
) -> PassResult:
    """Compute every dirty window once. Safe to run in several processes at once.

    `on_written(session, model_ids, computed_at)` runs inside the transaction that writes the new
    window rows (alerting uses it to flag monitors for evaluation atomically);
    `pinned_slices` names the slices precomputed whatever their rank (alerting's).
    """
    started = time.perf_counter()
    result = PassResult()
    token = uuid.uuid4().hex
    with heartbeat.lease_heartbeat(factory=factory, token=token, lease_s=settings.compute_lease_s):
        with session_scope(factory) as session:
            result.swept_windows = sweep_pending_actuals(session=session)
        _compute_claimed(
            factory=factory,
            read_factory=read_factory,
            settings=settings,
            clock=clock,
            on_written=on_written,
            token=token,
            result=result,
            pinned_slices=pinned_slices,
        )
    result.seconds = time.perf_counter() - started
    _log_pass(result)
    return result


def _outstanding(
    *,
    target: dict[tuple[str, int], int],
    queue: dict[tuple[str, int], dirty.Queued],
    computed: dict[tuple[str, int], int],
) -> dict[tuple[str, int], dirty.Queued]:
    """Windows dirty at the start that are not computed yet: still queued, and not
    computed by us from inputs at least as new as they were at the start (a window
    that keeps receiving data stays queued, but its start-time inputs are in)."""
    return {
        key: row
        for key, generation in target.items()
        if (row := queue.get(key)) is not None and computed.get(key, 0) < generation
    }


def compute_until_done(
    *,
    factory: sessionmaker[Session],
    read_factory: sessionmaker[Session],
    settings: Settings,
    max_wait_s: float,
    clock: Callable[[], float] = time.time,
    on_written: Callable[[Session, set[str], datetime], None] | None = None,
    progress: Callable[[str], None] | None = None,
    poll_s: float = 0.2,
    pinned_slices: PinnedSlices = no_pinned_slices,
) -> PassResult:
    """`lossmon compute`: return once every window that was dirty at the start is
    computed (or after max_wait_s, with `unfinished` > 0).

    Computes what it can claim, recomputes what is re-queued (its own retries and those
    of other passes), waits for windows other live passes hold, and takes over the
    leases of dead ones (they stop renewing and lapse within LOSSMON_COMPUTE_LEASE_S).
    """
    started = time.perf_counter()
    deadline = time.monotonic() + max_wait_s
    result = PassResult()
    token = uuid.uuid4().hex
    with heartbeat.lease_heartbeat(factory=factory, token=token, lease_s=settings.compute_lease_s):
        # What other passes hold right now, from a read-only snapshot: the write
        # transactions below may first wait for theirs (SQLite has one writer at a time).
        with session_scope(read_factory) as session:
            start_us = int(clock() * 1e6)
            result.held_at_start = sum(
                q.leased_by_other(token, start_us) for q in dirty.queued(session=session).values()
            )
        with session_scope(factory) as session:
            result.swept_windows = sweep_pending_actuals(session=session)
        with session_scope(factory) as session:
            dirty.fold(session=session)
            target = {k: q.generation for k, q in dirty.queued(session=session).items()}
        result.dirty_at_start = len(target)
        waited: set[tuple[str, int]] = set()
        reported = time.monotonic()
        while True:
            _compute_claimed(
                factory=factory,
                read_factory=read_factory,
                settings=settings,
                clock=clock,
                on_written=on_written,
                token=token,
                result=result,
                pinned_slices=pinned_slices,
            )
            # Read-only: changes that arrived after the start do not matter here.
            with session_scope(read_factory) as session:
                queue = dirty.queued(session=session)
            left = _outstanding(target=target, queue=queue, computed=result.computed_generations)
            if not left:
                break
            now_us = int(clock() * 1e6)
            held = [k for k, row in left.items() if row.leased_by_other(token, now_us)]
            waited.update(held)
            if time.monotonic() >= deadline:
                result.unfinished = len(left)
                break
            if held and progress is not None and time.monotonic() - reported >= 1.0:
                reported = time.monotonic()
                progress(
                    f"waiting for {len(held)} of {len(target)} windows that other workers "
                    f"are computing ({time.perf_counter() - started:.0f}s; a dead worker's "
                    f"lease lapses within {settings.compute_lease_s:g}s)"
                )
            time.sleep(poll_s)
    result.waited_for = len(waited)
    result.seconds = time.perf_counter() - started
    _log_pass(result)
    return result


# Window starts per mark_dirty statement: bounded statement size on a long history.
_MARK_CHUNK = 5000


def recompute_windows(session: Session, model_id: str) -> int:
    """Mark every computed window of the model dirty (its slices are recomputed with
    it); returns how many. Used when what a window means changed: a new clip_eps, a
    newly watched slice."""
    starts = list(
        session.scalars(
            select(WindowMetric.window_start)
            .where(WindowMetric.model_id == model_id)
            .order_by(WindowMetric.window_start)
        )
    )
    # Ascending chunks keep the sorted lock order mark_dirty relies on.
    for i in range(0, len(starts), _MARK_CHUNK):
        dirty.mark_dirty(
            session=session, model_id=model_id, window_starts=starts[i : i + _MARK_CHUNK]
        )
    return len(starts)


def history(
    *,
    session: Session,
    model: MonitoredModel,
    start: int | None,
    end: int | None,
    limit: int | None = None,
) -> list[history_json.Fragment]:
    """Stored windows starting in [start, end), oldest first, at most `limit`."""
    where = [WindowMetric.model_id == model.id]
    if start is not None:
        where.append(WindowMetric.window_start >= start)
    if end is not None:
        where.append(WindowMetric.window_start < end)
    return history_json.read_fragments(
        session=session, table=WindowMetric, where=where, limit=limit
    )


def _on_demand(
    *,
    session: Session,
    model: MonitoredModel,
    model_version: str | None,
    segments: Sequence[tuple[str, str]],
    now: datetime,
    start: int | None = None,
    end: int | None = None,
    window_starts: Sequence[int] | None = None,
) -> list[history_json.Fragment]:
    rows = read_joined(
        session=session,
        model_id=model.id,
        window_starts=window_starts,
        start=start,
        end=end,
        model_version=model_version,
        segments=segments,
        multiclass=model.task == "multiclass",
    )
    stats = compute_stats(rows, model.clip_eps)
    return [
        history_json.fragment_from_values(
            metric_values(
                model_id=model.id,
                window_start=ws,
                window_seconds=model.window_seconds,
                stats=stats[ws],
                now=now,
                classes=model.classes,
            )
        )
        for ws in sorted(stats)
        if stats[ws].predictions > 0
    ]


def filtered_history(
    *,
    session: Session,
    model: MonitoredModel,
    start: int | None,
    end: int | None,
    model_version: str | None,
    segments: Sequence[tuple[str, str]],
    now: datetime,
) -> list[history_json.Fragment]:
    """Windows restricted to a model version and/or segments.

    A single version or segment is read from the precomputed slices (plus, on demand,
    the windows where the value was not among the top N); combinations are computed
    on demand from the matching predictions."""
    single = slice_store.parse_slice(model_version, segments)
    if single is None:
        return _on_demand(
            session=session,
            model=model,
            model_version=model_version,
            segments=segments,
            now=now,
            start=start,
            end=end,
        )
    kind, key, value = single
    stored, maybe = slice_store.read_slice(
        session=session, model_id=model.id, kind=kind, key=key, value=value, start=start, end=end
    )
    out = list(stored)
    if maybe:
        out += _on_demand(
            session=session,
            model=model,
            model_version=model_version,
            segments=segments,
            now=now,
            window_starts=maybe,
        )
        out.sort(key=lambda f: f[0])
    return out
