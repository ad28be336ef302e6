"""Request-scoped dependencies. The edge owns the transaction: one session per request,
committed when the route returns, rolled back when it raises."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
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
