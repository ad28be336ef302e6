"""Request-scoped dependencies. The edge owns the transaction: one session per request,
committed when the route returns, rolled back when it raises."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from app.api.errors import ApiError
from app.api.write_gate import write_slot
from app.auth import service as auth_service
from app.config import Settings


def get_settings(request: Request) -> Settings:
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


_bearer = HTTPBearer(auto_error=False, description="API key: Authorization: Bearer <key>")
_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


def require_scope(scope: auth_service.Scope) -> Any:
    """A dependency: the request's key must grant `scope` (admin grants all). With no
    active key at all the API is open (serve refuses that unless bound to loopback)."""

    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        factory: sessionmaker[Session] = request.app.state.read_session_factory
        with factory() as session:
            if credentials is None:
                if not auth_service.any_active_key(session=session):
                    return
                raise ApiError(
                    401,
                    "missing API key: send the header Authorization: Bearer <key> "
                    "(create one with `lossmon keys create --scope ...`)",
                    headers=_UNAUTHORIZED,
                )
            key = auth_service.lookup(session=session, presented=credentials.credentials)
            if key is None:
                raise ApiError(401, "unknown or revoked API key", headers=_UNAUTHORIZED)
            if not auth_service.allows(key.scope, scope):
                raise ApiError(
                    403, f"this API key has scope {key.scope!r}; this call needs {scope!r}"
                )
            request.state.api_key_id = key.id
        limiter = request.app.state.rate_limiter
        if limiter is not None:
            wait = limiter.retry_after(key.id)
            if wait is not None:
                raise ApiError(
                    429,
                    f"rate limit exceeded for this API key; retry in {wait}s",
                    headers={"Retry-After": str(wait)},
                )

    return Depends(dependency)


Ingest = require_scope("ingest")
Read = require_scope("read")
Admin = require_scope("admin")
