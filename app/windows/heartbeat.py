"""Lease heartbeats: a live compute pass keeps renewing the leases of the windows it
holds, so leases can be short (LOSSMON_COMPUTE_LEASE_S, default 10 s) and a worker that
died mid-pass (SIGKILL, OOM, lost machine) has its windows taken over within seconds.

Why a thread: the pass spends its time in one long read and numpy; a thread beside it
renews every quarter lease without the pass having to stop for it. It uses the real
clock, never the pass's injected one (tests shift that), and only ever extends a lease.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.windows import dirty

log = logging.getLogger(__name__)

# Renewals per lease: three may fail (a slow or restarting database) before it lapses.
BEATS_PER_LEASE = 4


@contextmanager
def lease_heartbeat(
    *, factory: sessionmaker[Session], token: str, lease_s: float
) -> Iterator[None]:
    """Renew `token`'s leases every lease_s / 4 until the block exits."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(lease_s / BEATS_PER_LEASE):
            try:
                with session_scope(factory) as session:
                    dirty.renew(
                        session=session,
                        token=token,
                        until_us=int((time.time() + lease_s) * 1e6),
                    )
            except Exception as exc:  # the next beat tries again; the pass goes on
                log.warning("lease heartbeat failed: %s", type(exc).__name__)

    thread = threading.Thread(target=beat, name=f"lease-heartbeat-{token[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=lease_s)
