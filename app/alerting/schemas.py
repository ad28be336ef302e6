"""Pydantic shapes of monitors and alerts (API.md "Monitors and alerts")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from app.alerting.rules import Rule

# Standard Webhooks secret: "whsec_" + base64 of 24..64 random bytes. Only this form is
# accepted so that receivers' standardwebhooks verifiers derive the same key we sign with.
WEBHOOK_SECRET_PATTERN = (
    r"^whsec_(?:[A-Za-z0-9+/]{4}){8,22}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
)


class MonitorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="unique per model")
    rule: Rule
    min_labeled: int = Field(
        default=200, ge=1, description="windows with fewer labeled rows are not evaluated"
    )
    for_windows: int = Field(
        default=1, ge=1, le=100, description="consecutive evaluated windows before firing"
    )
    webhook_url: AnyHttpUrl | None = Field(default=None, max_length=2048)
    webhook_secret: str | None = Field(
        default=None,
        pattern=WEBHOOK_SECRET_PATTERN,
        description="Standard Webhooks secret: whsec_ + base64 of 24-64 random bytes; "
        "generated when omitted. Returned once, in the creation response.",
    )
    enabled: bool = True


class MonitorUpdate(BaseModel):
    """PUT body: fields left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    rule: Rule | None = None
    min_labeled: int | None = Field(default=None, ge=1)
    for_windows: int | None = Field(default=None, ge=1, le=100)
    webhook_url: AnyHttpUrl | None = Field(default=None, max_length=2048)
    webhook_secret: str | None = Field(default=None, pattern=WEBHOOK_SECRET_PATTERN)
    enabled: bool | None = None


class MonitorOut(BaseModel):
    monitor_id: str
    model_id: str
    name: str
    rule: dict[str, Any]
    min_labeled: int
    for_windows: int
    webhook_url: str | None
    has_webhook_secret: bool
    webhook_disabled_at: datetime | None = Field(
        description="set when the receiver answered 410 Gone; update webhook_url to re-enable"
    )
    enabled: bool
    state: str = Field(description="ok | firing | no_data | pending (not yet evaluated)")
    current_alert_id: str | None
    evaluated_at: datetime | None
    created_at: datetime
    updated_at: datetime


class MonitorCreated(MonitorOut):
    webhook_secret: str | None = Field(
        description="the signing secret; shown only in this response"
    )


class MonitorList(BaseModel):
    monitors: list[MonitorOut]


class DeliveryOut(BaseModel):
    delivery_id: str = Field(description="also the webhook-id header, stable across retries")
    event_type: str
    status: str = Field(description="pending | delivered | dead | cancelled")
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime


class AlertOut(BaseModel):
    alert_id: str
    model_id: str
    monitor_id: str
    monitor: dict[str, Any]
    state: str
    started_at: datetime
    resolved_at: datetime | None
    window: dict[str, Any]
    resolved_window: dict[str, Any] | None


class AlertDetail(AlertOut):
    deliveries: list[DeliveryOut]


class AlertList(BaseModel):
    alerts: list[AlertOut]
