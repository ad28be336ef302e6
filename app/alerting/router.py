"""HTTP for monitors and alerts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response

from app.alerting import service
from app.alerting.models import Alert, Monitor
from app.alerting.schemas import (
    AlertDetail,
    AlertList,
    AlertOut,
    DeliveryOut,
    MonitorCreated,
    MonitorIn,
    MonitorList,
    MonitorOut,
    MonitorUpdate,
)
from app.api import responses
from app.api.deps import Admin, Read, ReadSessionDep, SessionDep, SettingsDep
from app.notify.models import WebhookDelivery
from app.registry import service as model_service
from app.registry.router import ModelId

router = APIRouter(tags=["alerting"], responses={**responses.COMMON, **responses.NOT_FOUND})

MonitorId = Annotated[str, Path(max_length=40)]


def monitor_out(m: Monitor) -> MonitorOut:
    return MonitorOut(
        id=m.id,
        monitor_id=m.id,
        model_id=m.model_id,
        name=m.name,
        rule=m.rule,
        min_labeled=m.min_labeled,
        for_windows=m.for_windows,
        model_version=m.model_version,
        segment=m.segment,
        segment_key=m.segment_key,
        webhook_url=m.webhook_url,
        webhook_format=m.webhook_format,
        severity=m.severity,
        has_routing_key=m.routing_key_enc is not None,
        has_webhook_secret=m.webhook_secret_enc is not None,
        webhook_disabled_at=m.webhook_disabled_at,
        enabled=m.enabled,
        state=m.state,
        current_alert_id=m.current_alert_id,
        evaluated_at=m.evaluated_at,
        created_at=m.created_at,
        updated_at=m.updated_at,
    )


def alert_out(a: Alert) -> AlertOut:
    return AlertOut(
        id=a.id,
        alert_id=a.id,
        model_id=a.model_id,
        monitor_id=a.monitor_id,
        monitor=a.monitor_snapshot,
        state=a.state,
        started_at=a.started_at,
        resolved_at=a.resolved_at,
        segment=a.segment,
        window=a.window,
        resolved_window=a.resolved_window,
    )


def delivery_out(d: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        delivery_id=d.id,
        event_type=d.event_type,
        status=d.status,
        attempts=d.attempts,
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        last_attempt_at=d.last_attempt_at,
        next_attempt_at=(
            datetime.fromtimestamp(d.next_attempt_us / 1e6, UTC) if d.status == "pending" else None
        ),
        delivered_at=d.delivered_at,
        created_at=d.created_at,
    )


@router.post(
    "/v1/models/{model_id}/monitors",
    response_model=MonitorCreated,
    status_code=201,
    responses={**responses.BODY, **responses.CONFLICT},
    dependencies=[Admin],
)
def create_monitor(
    model_id: ModelId, body: MonitorIn, session: SessionDep, settings: SettingsDep
) -> MonitorCreated:
    """Create a monitor. The webhook secret is returned in this response only."""
    model_service.require_model(session=session, model_id=model_id)
    monitor, secret = service.create_monitor(
        session=session, model_id=model_id, body=body, settings=settings, now=datetime.now(UTC)
    )
    return MonitorCreated(**monitor_out(monitor).model_dump(), webhook_secret=secret)


@router.get("/v1/models/{model_id}/monitors", response_model=MonitorList, dependencies=[Read])
def list_monitors(model_id: ModelId, session: ReadSessionDep) -> MonitorList:
    model_service.require_model(session=session, model_id=model_id)
    return MonitorList(
        monitors=[monitor_out(m) for m in service.list_monitors(session=session, model_id=model_id)]
    )


@router.get(
    "/v1/models/{model_id}/monitors/{monitor_id}", response_model=MonitorOut, dependencies=[Read]
)
def get_monitor(model_id: ModelId, monitor_id: MonitorId, session: ReadSessionDep) -> MonitorOut:
    return monitor_out(
        service.get_monitor(session=session, model_id=model_id, monitor_id=monitor_id)
    )


@router.put(
    "/v1/models/{model_id}/monitors/{monitor_id}",
    response_model=MonitorOut,
    dependencies=[Admin],
    responses={**responses.BODY, **responses.CONFLICT},
)
def update_monitor(
    model_id: ModelId,
    monitor_id: MonitorId,
    body: MonitorUpdate,
    session: SessionDep,
    settings: SettingsDep,
) -> MonitorOut:
    """Update a monitor; fields left out keep their value. It is re-evaluated next tick."""
    monitor = service.get_monitor(session=session, model_id=model_id, monitor_id=monitor_id)
    return monitor_out(
        service.update_monitor(
            session=session, monitor=monitor, body=body, settings=settings, now=datetime.now(UTC)
        )
    )


@router.delete("/v1/models/{model_id}/monitors/{monitor_id}", status_code=204, dependencies=[Admin])
def delete_monitor(model_id: ModelId, monitor_id: MonitorId, session: SessionDep) -> Response:
    """Delete a monitor with its alert history and pending webhook deliveries."""
    monitor = service.get_monitor(session=session, model_id=model_id, monitor_id=monitor_id)
    service.delete_monitor(session=session, monitor=monitor)
    return Response(status_code=204)


@router.get("/v1/alerts", response_model=AlertList, dependencies=[Read])
def list_alerts(
    session: ReadSessionDep,
    model_id: Annotated[str | None, Query(max_length=128)] = None,
    state: Literal["firing", "resolved"] | None = None,
    monitor_id: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AlertList:
    """Alerts, newest first."""
    alerts = service.list_alerts(
        session=session, model_id=model_id, state=state, monitor_id=monitor_id, limit=limit
    )
    return AlertList(alerts=[alert_out(a) for a in alerts])


@router.get("/v1/alerts/{alert_id}", response_model=AlertDetail, dependencies=[Read])
def get_alert(
    alert_id: Annotated[str, Path(max_length=40)], session: ReadSessionDep
) -> AlertDetail:
    """One alert with its webhook deliveries and their status."""
    alert, deliveries = service.get_alert(session=session, alert_id=alert_id)
    return AlertDetail(
        **alert_out(alert).model_dump(), deliveries=[delivery_out(d) for d in deliveries]
    )
