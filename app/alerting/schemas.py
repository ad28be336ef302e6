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
from app.json_types import NameText, PositiveInt, VersionText, WindowCount
from app.notify.formats import DEFAULT_SEVERITY, Severity, WebhookFormat

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

SEGMENT_KEY_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
SegmentKeyText = Annotated[str, StringConstraints(pattern=SEGMENT_KEY_PATTERN)]

_ONE_OF = "At most one of model_version, segment and segment_key."
_VERSION_DESCRIPTION = (
    "Watch only this model version's windows (the slice GET .../metrics?model_version= "
    "reports) instead of the whole model. " + _ONE_OF
)
_SEGMENT_DESCRIPTION = (
    "Watch only this segment's windows, as key:value (the slice GET "
    ".../metrics?segment=key:value reports). min_labeled is then the minimum size of the "
    "segment's window. " + _ONE_OF
)
_SEGMENT_KEY_DESCRIPTION = (
    "Fan-out: run the rule separately on every value of this segment key that has its own "
    "precomputed windows (the top values per window), each with its own alert. "
    "min_labeled is the minimum segment size. Values are not pinned. " + _ONE_OF
)
_BOTH_SLICES = (
    "give at most one of model_version, segment and segment_key (a monitor watches one "
    "slice, or fans out over one segment key)"
)
_SLICE_FIELDS = ("model_version", "segment", "segment_key")


def _at_most_one_slice(schema: dict[str, Any]) -> None:
    # Published so schema-driven clients (and schemathesis) never build a body that is
    # refused: exactly "two of them present and non-null", as the validators check.
    pairs = [(a, b) for i, a in enumerate(_SLICE_FIELDS) for b in _SLICE_FIELDS[i + 1 :]]
    schema["not"] = {
        "anyOf": [
            {
                "required": [a, b],
                "properties": {a: {"type": "string"}, b: {"type": "string"}},
            }
            for a, b in pairs
        ]
    }


def _check_one_slice(value: str | None, info: ValidationInfo) -> str | None:
    # Validators on `segment` and `segment_key` (declared after the fields they are
    # checked against) so that the 422 names a field, as every other body error does.
    if value is not None:
        earlier = _SLICE_FIELDS[: _SLICE_FIELDS.index(str(info.field_name))]
        if any(info.data.get(name) is not None for name in earlier):
            raise ValueError(_BOTH_SLICES)
    return value


_FORMAT_DESCRIPTION = (
    "How alerts reach webhook_url: standard (the signed lossmon payload), slack (an "
    "incoming-webhook message: text and blocks), pagerduty (Events API v2 trigger/resolve, "
    "dedup_key = the alert id; needs routing_key; webhook_url defaults to PagerDuty's "
    "events endpoint), alertmanager (webhook_url is an Alertmanager base URL; alerts are "
    "POSTed to /api/v2/alerts and re-posted while firing)."
)
_ROUTING_KEY_DESCRIPTION = (
    "PagerDuty Events API v2 integration (routing) key; required with webhook_format "
    "pagerduty. Stored encrypted, never returned."
)
_SEVERITY_DESCRIPTION = (
    "Severity sent to PagerDuty (payload.severity) and Alertmanager (label severity)."
)
RoutingKeyText = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,128}$")]


def _needs_routing_key(value: str | None, info: ValidationInfo) -> str | None:
    if value is None and info.data.get("webhook_format") == "pagerduty":
        raise ValueError("routing_key is required with webhook_format pagerduty")
    return value


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
    segment_key: SegmentKeyText | None = Field(default=None, description=_SEGMENT_KEY_DESCRIPTION)
    webhook_format: WebhookFormat = Field(default="standard", description=_FORMAT_DESCRIPTION)
    routing_key: RoutingKeyText | None = Field(
        default=None, validate_default=True, description=_ROUTING_KEY_DESCRIPTION
    )
    severity: Severity = Field(default=DEFAULT_SEVERITY, description=_SEVERITY_DESCRIPTION)

    _one_slice = field_validator("segment", "segment_key")(_check_one_slice)
    _routing_key = field_validator("routing_key")(_needs_routing_key)


class MonitorUpdate(BaseModel):
    """PUT body: fields left out keep their value.

    model_version, segment and segment_key together name what the monitor watches:
    setting one of them replaces it (the others are cleared), null goes back to the
    whole model.
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
        description=_VERSION_DESCRIPTION + " Setting it clears the others; null: whole model.",
    )
    segment: SegmentText | None = Field(
        default=None,
        description=_SEGMENT_DESCRIPTION + " Setting it clears the others; null: whole model.",
    )
    segment_key: SegmentKeyText | None = Field(
        default=None,
        description=_SEGMENT_KEY_DESCRIPTION + " Setting it clears the others; null: whole model.",
    )
    webhook_format: WebhookFormat | None = Field(default=None, description=_FORMAT_DESCRIPTION)
    routing_key: RoutingKeyText | None = Field(default=None, description=_ROUTING_KEY_DESCRIPTION)
    severity: Severity | None = Field(default=None, description=_SEVERITY_DESCRIPTION)

    _one_slice = field_validator("segment", "segment_key")(_check_one_slice)


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
    segment_key: str | None = Field(
        description="the segment key a fan-out monitor evaluates per value, if any"
    )
    webhook_url: str | None
    webhook_format: str = Field(description="standard | slack | pagerduty | alertmanager")
    severity: str
    has_routing_key: bool
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
    segment: str | None = Field(
        description="key:value of a fan-out (segment_key) monitor's alert; null otherwise"
    )
    window: dict[str, Any]
    resolved_window: dict[str, Any] | None


class AlertDetail(AlertOut):
    deliveries: list[DeliveryOut]


class AlertList(BaseModel):
    alerts: list[AlertOut]
