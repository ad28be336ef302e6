"""Pydantic shapes of monitors and alerts (API.md "Monitors and alerts")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StrictBool

from app.alerting.rules import Rule
from app.api.json_types import NameText, PositiveInt, WindowCount

WebhookUrl = Annotated[
    AnyHttpUrl,
    Field(
        max_length=2048,
        # IRI, not URI: internationalised host names are accepted (sent as punycode).
        json_schema_extra={"pattern": "^https?://", "format": "iri"},
        description="http(s) URL of a public host (private/loopback refused unless "
        "LOSSMON_WEBHOOK_ALLOW_PRIVATE)",
    ),
]

# Standard Webhooks secret: "whsec_" + base64 of 24..64 random bytes. Only this form is
# accepted so that receivers' standardwebhooks verifiers derive the same key we sign with.
WEBHOOK_SECRET_PATTERN = (
    r"^whsec_(?:[A-Za-z0-9+/]{4}){8,22}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
)


class MonitorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: NameText = Field(description="unique per model")
    rule: Rule
    min_labeled: PositiveInt = Field(
        default=200, description="windows with fewer labeled rows are not evaluated"
    )
    for_windows: WindowCount = Field(
        default=1, description="consecutive evaluated windows before firing"
    )
    webhook_url: WebhookUrl | None = None
    webhook_secret: str | None = Field(
        default=None,
        pattern=WEBHOOK_SECRET_PATTERN,
        description="Standard Webhooks secret: whsec_ + base64 of 24-64 random bytes; "
        "generated when omitted. Returned once, in the creation response.",
    )
    enabled: StrictBool = True


class MonitorUpdate(BaseModel):
    """PUT body: fields left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    name: NameText | None = None
    rule: Rule | None = None
    min_labeled: PositiveInt | None = None
    for_windows: WindowCount | None = None
    webhook_url: WebhookUrl | None = None
    webhook_secret: str | None = Field(default=None, pattern=WEBHOOK_SECRET_PATTERN)
    enabled: StrictBool | None = None


class MonitorOut(BaseModel):
    id: str = Field(description="the monitor id (also as monitor_id)")
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
    id: str = Field(description="the alert id (also as alert_id, as in webhooks)")
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
