"""Alert destinations: what an alert transition looks like for each ``webhook_format``.

Pure functions of the standard payload (API.md "Webhooks"): nothing here sends or
stores. The outbox stores the body this module builds, so every retry sends the same
bytes, whatever the format.

* ``standard``: the signed lossmon payload itself.
* ``slack``: an incoming-webhook message, ``text`` (the notification fallback) and
  ``blocks`` (a section and a context line).
* ``pagerduty``: an Events API v2 event, ``trigger`` then ``resolve`` with
  ``dedup_key`` = the alert id, so PagerDuty folds both into one incident. The
  routing key is a credential: the stored body leaves it out and the sender adds it
  (encrypted at rest like a webhook secret).
* ``alertmanager``: a one-alert list for ``POST /api/v2/alerts``; labels identify the
  alert (``alertname``, ``model_id``, ``monitor_id``, ``severity``, and ``segment`` for a
  fan-out monitor), ``startsAt`` the episode's start, ``endsAt`` its resolution.
"""

from __future__ import annotations

import json
from typing import Any, Literal

WebhookFormat = Literal["standard", "slack", "pagerduty", "alertmanager"]
FORMATS: tuple[str, ...] = ("standard", "slack", "pagerduty", "alertmanager")
Severity = Literal["critical", "error", "warning", "info"]
DEFAULT_SEVERITY: Severity = "warning"
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
ALERTMANAGER_PATH = "/api/v2/alerts"
# Outbox event of an Alertmanager re-post while the alert is firing.
RESEND_EVENT = "alert.resend"


def target_url(fmt: str, url: str) -> str:
    """Where the delivery POSTs: Alertmanager's alerts endpoint under its base URL."""
    if fmt == "alertmanager":
        return url.rstrip("/") + ALERTMANAGER_PATH
    return url


def _fmt_num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def summary(payload: dict[str, Any]) -> str:
    """One line: what fired (or recovered), for which model and window."""
    monitor = payload.get("monitor") or {}
    window = payload.get("window") or {}
    rule = (monitor.get("rule") or {}).get("type", "?")
    state = "resolved" if payload.get("type") == "alert.resolved" else "firing"
    where = f" segment {payload['segment']}" if payload.get("segment") else ""
    return (
        f"[lossmon {state}] {monitor.get('name', '?')} ({rule}) on model "
        f"{payload.get('model_id')}{where}: window {window.get('start', '-')} log loss "
        f"{_fmt_num(window.get('log_loss'))}, skill {_fmt_num(window.get('skill'))}, "
        f"{window.get('labeled', '-')} labels"
    )


def slack_message(payload: dict[str, Any]) -> dict[str, Any]:
    text = summary(payload)
    window = payload.get("window") or {}
    fields = [
        f"*alert* `{payload.get('alert_id')}`",
        f"*started* {payload.get('started_at')}",
    ]
    if payload.get("resolved_at"):
        fields.append(f"*resolved* {payload['resolved_at']}")
    fields.append(
        f"*baseline* {_fmt_num(window.get('baseline_log_loss'))}, "
        f"*stderr* {_fmt_num(window.get('log_loss_stderr'))}"
    )
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": " | ".join(fields)}],
            },
        ],
    }


def pagerduty_event(payload: dict[str, Any], *, severity: str) -> dict[str, Any]:
    """Events API v2 without ``routing_key`` (added at send time, see module doc)."""
    monitor = payload.get("monitor") or {}
    resolved = payload.get("type") == "alert.resolved"
    return {
        "event_action": "resolve" if resolved else "trigger",
        "dedup_key": payload.get("alert_id"),
        "payload": {
            "summary": summary(payload)[:1024],  # PagerDuty's limit
            "severity": severity,
            "source": f"lossmon/{payload.get('model_id')}",
            "timestamp": payload.get("resolved_at") if resolved else payload.get("started_at"),
            "component": payload.get("model_id"),
            "group": monitor.get("name"),
            "class": (monitor.get("rule") or {}).get("type"),
            "custom_details": {
                "monitor_id": monitor.get("id"),
                "segment": payload.get("segment"),
                "window": payload.get("window"),
            },
        },
    }


def with_routing_key(body: str, routing_key: str) -> str:
    """The stored PagerDuty body with its routing key, as sent."""
    event = json.loads(body)
    return json.dumps(
        {"routing_key": routing_key, **event}, separators=(",", ":"), ensure_ascii=False
    )


def alertmanager_alerts(payload: dict[str, Any], *, severity: str) -> list[dict[str, Any]]:
    monitor = payload.get("monitor") or {}
    labels = {
        "alertname": str(monitor.get("name")),
        "model_id": str(payload.get("model_id")),
        "monitor_id": str(monitor.get("id")),
        "severity": severity,
    }
    if payload.get("segment"):
        labels["segment"] = str(payload["segment"])
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": {
            "summary": summary(payload),
            "alert_id": str(payload.get("alert_id")),
            "rule": str((monitor.get("rule") or {}).get("type")),
        },
        "startsAt": payload.get("started_at"),
    }
    if payload.get("type") == "alert.resolved" and payload.get("resolved_at"):
        alert["endsAt"] = payload["resolved_at"]
    return [alert]


def render(fmt: str, payload: dict[str, Any], *, severity: str) -> Any:
    """The JSON body a destination of this format receives for ``payload``."""
    if fmt == "slack":
        return slack_message(payload)
    if fmt == "pagerduty":
        return pagerduty_event(payload, severity=severity)
    if fmt == "alertmanager":
        return alertmanager_alerts(payload, severity=severity)
    return payload
