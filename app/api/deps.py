"""Request-scoped dependencies. The edge owns the transaction: one session per request,
committed when the route returns, rolled back when it raises."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy.orm import Session, sessionmaker

from app.api.errors import ApiError
from app.api.rate_limit import RateLimiter
from app.api.write_gate import write_slot
from app.auth import service as auth_service
from app.auth.cache import KeyCache, KeyInfo
from app.config import Settings
from app.db import session_scope

# Dependencies that do no I/O are `async def`: FastAPI runs a plain `def` dependency in
# the threadpool, and on a single-prediction POST each such hop cost more than the insert.


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(
    request: Request,
    # Bounded wait before the thread hop (SQLite: one writer; the request's deadline).
    _slot: Annotated[None, Depends(write_slot, scope="function")],
) -> Iterator[Session]:
    factory: sessionmaker[Session] = request.app.state.session_factory
    session = factory()
    try:
        yield session
        # Commit before the response is sent: a 200 means committed.
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# scope="function": the commit runs when the route returns, before the response is
# sent, so a client never sees a 2xx for a write that then failed to commit.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_read_session(request: Request) -> Iterator[Session]:
    """A session for routes that only read (on SQLite it does not take the write lock)."""
    factory: sessionmaker[Session] = request.app.state.read_session_factory
    session = factory()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


ReadSessionDep = Annotated[Session, Depends(get_read_session)]

Transaction = Callable[[], AbstractContextManager[Session]]


async def get_transaction(
    request: Request,
    # The same bounded writer admission as SessionDep (app/api/write_gate.py).
    _slot: Annotated[None, Depends(write_slot, scope="function")],
) -> Transaction:
    """For hot write routes: `with transaction() as session:` opens, commits (or rolls
    back) and closes the unit of work inside the route's own threadpool call. SessionDep
    commits in the dependency's teardown, a second thread hop after the route returned,
    and the transaction (with its row locks) stays open across that hop while other
    requests queue for threads. Returning after the commit keeps "200 means committed"."""
    factory: sessionmaker[Session] = request.app.state.session_factory
    return lambda: session_scope(factory)


TransactionDep = Annotated[Transaction, Depends(get_transaction)]


_bearer = HTTPBearer(auto_error=False, description="API key: Authorization: Bearer <key>")
_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


def _any_active_key(factory: sessionmaker[Session]) -> bool:
    with factory() as session:
        return auth_service.any_active_key(session=session)


def _lookup_key(factory: sessionmaker[Session], presented: str) -> KeyInfo | None:
    with factory() as session:
        row = auth_service.lookup(session=session, presented=presented)
        return None if row is None else KeyInfo(id=row.id, scope=row.scope)


def bearer_token(authorization: str | None) -> str | None:
    """The key in an `Authorization: Bearer <key>` header, None without one (as
    HTTPBearer(auto_error=False) reads it)."""
    scheme, token = get_authorization_scheme_param(authorization)
    return token if scheme.lower() == "bearer" and token else None


async def authorize(request: Request, presented: str | None, scope: auth_service.Scope) -> None:
    """Raises ApiError (401, 403, 429) unless the presented key grants `scope` (admin
    grants all). With no active key at all the API is open (serve refuses that unless
    bound to loopback)."""
    # On the event loop: a cache hit costs no thread hop; a miss reads the database in
    # the threadpool.
    factory: sessionmaker[Session] = request.app.state.read_session_factory
    cache: KeyCache = request.app.state.key_cache
    if presented is None:
        if not (
            cache.known_closed()
            or await run_in_threadpool(cache.any_active, lambda: _any_active_key(factory))
        ):
            return
        raise ApiError(
            401,
            "missing API key: send the header Authorization: Bearer <key> "
            "(create one with `lossmon keys create --scope ...`)",
            headers=_UNAUTHORIZED,
        )
    key = cache.cached(presented) or await run_in_threadpool(
        cache.lookup, presented, lambda: _lookup_key(factory, presented)
    )
    if key is None:
        raise ApiError(401, "unknown or revoked API key", headers=_UNAUTHORIZED)
    if not auth_service.allows(key.scope, scope):
        raise ApiError(403, f"this API key has scope {key.scope!r}; this call needs {scope!r}")
    request.state.api_key_id = key.id
    limiter: RateLimiter | None = request.app.state.rate_limiter
    if limiter is not None:
        wait = (
            await run_in_threadpool(limiter.retry_after, key.id)
            if limiter.blocking
            else limiter.retry_after(key.id)
        )
        if wait is not None:
            raise ApiError(
                429,
                f"rate limit exceeded for this API key; retry in {wait}s",
                headers={"Retry-After": str(wait)},
            )


def require_scope(scope: auth_service.Scope) -> Any:
    """A dependency: the request's key must grant `scope` (authorize)."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        await authorize(request, None if credentials is None else credentials.credentials, scope)

    return Depends(dependency)


Ingest = require_scope("ingest")
Read = require_scope("read")
Admin = require_scope("admin")
