"""Pydantic shapes of monitors and alerts (API.md "Monitors and alerts")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from app.alerting.rules import Rule
from app.api.json_types import NameText, PositiveInt, VersionText, WindowCount

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


# Same form as the metrics endpoint's ?segment= filter: the key as ingestion accepts
# it, then the value (non-empty, may itself contain ':').
SEGMENT_PATTERN = r"^[A-Za-z0-9_.-]{1,64}:[^\x00]+$"
SegmentText = Annotated[str, StringConstraints(pattern=SEGMENT_PATTERN, max_length=400)]

_VERSION_DESCRIPTION = (
    "Watch only this model version's windows (the slice GET .../metrics?model_version= "
    "reports) instead of the whole model. At most one of model_version and segment."
)
_SEGMENT_DESCRIPTION = (
    "Watch only this segment's windows, as key:value (the slice GET "
    ".../metrics?segment=key:value reports). min_labeled is then the minimum size of the "
    "segment's window. At most one of model_version and segment."
)
_BOTH_SLICES = "give model_version or segment, not both (a monitor watches one slice)"


def _at_most_one_slice(schema: dict[str, Any]) -> None:
    # Published so schema-driven clients (and schemathesis) never build a body that is
    # refused: exactly "both present and both non-null", as the validator checks.
    schema["not"] = {
        "required": ["model_version", "segment"],
        "properties": {"model_version": {"type": "string"}, "segment": {"type": "string"}},
    }


def _check_one_slice(segment: str | None, info: ValidationInfo) -> str | None:
    # A validator on `segment` (declared after model_version) so that the 422 names a
    # field, as every other body error does.
    if segment is not None and info.data.get("model_version") is not None:
        raise ValueError(_BOTH_SLICES)
    return segment


class MonitorIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_at_most_one_slice)

    name: NameText = Field(description="unique per model")
    rule: Rule
    min_labeled: PositiveInt = Field(
        default=200,
        description="windows with fewer labeled rows are not evaluated (label_coverage_below: "
        "fewer predictions)",
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
    model_version: VersionText | None = Field(default=None, description=_VERSION_DESCRIPTION)
    segment: SegmentText | None = Field(default=None, description=_SEGMENT_DESCRIPTION)

    _one_slice = field_validator("segment")(_check_one_slice)


class MonitorUpdate(BaseModel):
    """PUT body: fields left out keep their value.

    model_version and segment together name the monitor's slice: setting one of them
    replaces the slice (the other is cleared), null goes back to the whole model.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra=_at_most_one_slice)

    name: NameText | None = None
    rule: Rule | None = None
    min_labeled: PositiveInt | None = None
    for_windows: WindowCount | None = None
    webhook_url: WebhookUrl | None = None
    webhook_secret: str | None = Field(default=None, pattern=WEBHOOK_SECRET_PATTERN)
    enabled: StrictBool | None = None
    model_version: VersionText | None = Field(
        default=None,
        description=_VERSION_DESCRIPTION + " Setting it clears segment; null: whole model.",
    )
    segment: SegmentText | None = Field(
        default=None,
        description=_SEGMENT_DESCRIPTION + " Setting it clears model_version; null: whole model.",
    )

    _one_slice = field_validator("segment")(_check_one_slice)


class MonitorOut(BaseModel):
    id: str = Field(description="the monitor id (also as monitor_id)")
    monitor_id: str
    model_id: str
    name: str
    rule: dict[str, Any]
    min_labeled: int
    for_windows: int
    model_version: str | None = Field(description="the watched model version, if any")
    segment: str | None = Field(description="the watched segment key:value, if any")
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
