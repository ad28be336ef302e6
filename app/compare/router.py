"""HTTP for champion vs challenger comparison."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import StringConstraints

from app.api import responses
from app.api.deps import Read, ReadSessionDep
from app.api.errors import query_error
from app.compare import service
from app.compare.schemas import CompareOut, Difference, WindowDifference
from app.ingestion.schemas import Timestamp
from app.metrics import PairedDifference
from app.registry import service as model_service
from app.windows.router import epoch_seconds

router = APIRouter(prefix="/v1", tags=["compare"], responses=responses.COMMON)

ModelPair = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,128},[A-Za-z0-9._-]{1,128}$")
]
VersionPair = Annotated[str, StringConstraints(pattern=r"^[^,\x00]{0,128},[^,\x00]{0,128}$")]


def _difference(d: PairedDifference) -> Difference:
    return Difference.model_validate(d, from_attributes=True)


@router.get(
    "/compare", response_model=CompareOut, dependencies=[Read], responses=responses.NOT_FOUND
)
def compare(
    session: ReadSessionDep,
    models: Annotated[ModelPair, Query(description="a,b: champion and challenger model ids")],
    versions: Annotated[
        VersionPair | None,
        Query(description="va,vb: restrict a to version va and b to vb (a may equal b)"),
    ] = None,
    start: Annotated[Timestamp | None, Query(description="RFC 3339, inclusive")] = None,
    end: Annotated[Timestamp | None, Query(description="RFC 3339, exclusive")] = None,
) -> CompareOut:
    """Windowed log-loss difference b − a with its standard error.

    Different models are compared on the prediction ids both scored that have an actual
    (paired: the label and weight are model a's actual, else model b's). Two versions
    of the same model (`models=m,m&versions=v1,v2`) share no prediction id, so that
    comparison is unpaired. Windows are model a's."""
    id_a, id_b = models.split(",")
    version_pair = tuple(versions.split(",")) if versions is not None else None
    a = model_service.require_model(session=session, model_id=id_a)
    b = model_service.require_model(session=session, model_id=id_b)
    service.check_comparable(a, b)
    start_s, end_s = epoch_seconds(start), epoch_seconds(end)
    if id_a == id_b:
        if version_pair is None or version_pair[0] == version_pair[1]:
            raise query_error(
                "versions",
                "comparing a model with itself needs two different versions (versions=va,vb)",
            )
        result = service.unpaired(
            session=session,
            model=a,
            versions=(version_pair[0], version_pair[1]),
            start=start_s,
            end=end_s,
        )
    elif start_s is not None and end_s is not None and start_s >= end_s:
        result = service.empty()
    else:
        result = service.paired(
            session=session,
            a=a,
            b=b,
            versions=(version_pair[0], version_pair[1]) if version_pair else None,
            start=start_s,
            end=end_s,
        )
    return CompareOut(
        models=[id_a, id_b],
        versions=list(version_pair) if version_pair else None,
        paired=id_a != id_b,
        window=a.window,
        overall=_difference(result.overall),
        windows=[
            WindowDifference(
                start=datetime.fromtimestamp(ws, UTC),
                end=datetime.fromtimestamp(ws + a.window_seconds, UTC),
                **_difference(d).model_dump(),
            )
            for ws, d in sorted(result.windows.items())
        ],
    )
