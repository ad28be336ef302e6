"""What the registry asks of the domains built on it, without importing them.

Ingestion and windows import the registry (every row belongs to a model); the registry
must not import them back. Yet a model update needs to know whether the model has data
(a shape change is then a 409) and must have its windows recomputed when `clip_eps`
changes. create_app() (the composition root) wires those two functions in; the PUT
route passes them to the service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session


def _unwired(*_: object) -> bool:
    # Fail loud: a silent default would allow a shape change over stored data, or
    # leave windows computed with a stale eps.
    raise RuntimeError("registry hooks are not wired (see app/registry/hooks.py)")


@dataclass(frozen=True, slots=True)
class RegistryHooks:
    # Does the model hold any stored prediction or actual?
    has_data: Callable[[Session, str], bool] = _unwired
    # Recompute every window (and slice) of the model; returns how many were marked.
    recompute_windows: Callable[[Session, str], int] = _unwired


UNWIRED = RegistryHooks()


def hooks_of(request: Request) -> RegistryHooks:
    hooks: RegistryHooks = getattr(request.app.state, "registry_hooks", UNWIRED)
    return hooks


HooksDep = Annotated[RegistryHooks, Depends(hooks_of)]
