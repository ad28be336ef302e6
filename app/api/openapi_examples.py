"""Examples for every operation of /openapi.json (request bodies and success responses),
so /docs shows a filled-in call and its answer instead of a bare schema.

They live in one table, keyed by (method, path template), instead of on each route:
they are documentation, they share pieces (a model, a window, a monitor), and
tests/api/test_openapi_examples.py checks that every operation has one and that each
validates against the operation's own schema, so an example cannot drift from the API.
The numbers are those of README's CTR tour (ten predictions, one click).
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

_MODEL = {
    "model_id": "ctr",
    "task": "binary",
    "window": "1h",
    "window_seconds": 3600,
    "description": "CTR model",
    "classes": None,
    "reference_base_rate": None,
    "clip_eps": 1e-15,
    "created_at": "2026-11-20T09:58:12.118204Z",
    "updated_at": "2026-11-20T09:58:12.118204Z",
}

_EMPTY_BIN = {"count": 0, "weight": 0.0, "mean_predicted": None, "observed_rate": None}
_FILLED_BINS = {
    1: {"count": 6, "weight": 6.0, "mean_predicted": 0.12, "observed_rate": 0.0},
    2: {"count": 3, "weight": 3.0, "mean_predicted": 0.2067, "observed_rate": 0.0},
    8: {"count": 1, "weight": 1.0, "mean_predicted": 0.8, "observed_rate": 1.0},
}

_WINDOW = {
    "start": "2026-11-20T10:00:00Z",
    "end": "2026-11-20T11:00:00Z",
    "predictions": 10,
    "labeled": 10,
    "label_coverage": 1.0,
    "weight_sum": 10.0,
    "positive_rate": 0.1,
    "log_loss": 0.16868,
    "baseline_log_loss": 0.32508,
    "skill": 0.48110,
    "log_loss_stderr": 0.01796,
    "log_loss_median": 0.16252,
    "log_loss_p90": 0.22314,
    "log_loss_p99": 0.24846,
    "expected_log_loss": 0.42157,
    "accuracy": 1.0,
    "class_rates": None,
    "class_log_loss": None,
    "reliability": [
        {"lower": b / 10, "upper": (b + 1) / 10, **_FILLED_BINS.get(b, _EMPTY_BIN)}
        for b in range(10)
    ],
    "ece": 0.154,
    "calibration_gap": -0.25289,
    "computed_at": "2026-11-20T11:00:41.502117Z",
}

_RULE = {"type": "log_loss_above", "threshold": 0.5}
_MONITOR_ID = "mon_7f8175920aea4fba9bb6eacc11c30d77"
_ALERT_ID = "alert_e09028fc731a4709bcf0e52023eed1c9"
_MONITOR_IN = {
    "name": "ctr-degrading",
    "rule": _RULE,
    "min_labeled": 200,
    "for_windows": 2,
    "webhook_url": "https://hooks.example.com/lossmon",
}
_MONITOR = {
    "id": _MONITOR_ID,
    "monitor_id": _MONITOR_ID,
    "model_id": "ctr",
    **_MONITOR_IN,
    "model_version": None,
    "segment": None,
    "segment_key": None,
    "has_webhook_secret": True,
    "webhook_format": "standard",
    "severity": "warning",
    "has_routing_key": False,
    "webhook_disabled_at": None,
    "enabled": True,
    "state": "firing",
    "current_alert_id": _ALERT_ID,
    "evaluated_at": "2026-11-20T13:01:05.220311Z",
    "created_at": "2026-11-20T09:59:40.031772Z",
    "updated_at": "2026-11-20T09:59:40.031772Z",
}
_ALERT = {
    "id": _ALERT_ID,
    "alert_id": _ALERT_ID,
    "model_id": "ctr",
    "monitor_id": _MONITOR_ID,
    "monitor": {
        "id": _MONITOR_ID,
        "name": "ctr-degrading",
        "rule": _RULE,
        "model_version": None,
        "segment": None,
        "segment_key": None,
    },
    "state": "firing",
    "started_at": "2026-11-20T13:01:05.220311Z",
    "resolved_at": None,
    "segment": None,
    "window": {**_WINDOW, "start": "2026-11-20T12:00:00Z", "end": "2026-11-20T13:00:00Z"},
    "resolved_window": None,
}
_DELIVERY = {
    "delivery_id": "msg_02ffe317c5f04864b4bd22095b3f6b10",
    "event_type": "alert.firing",
    "status": "delivered",
    "attempts": 1,
    "last_status_code": 200,
    "last_error": None,
    "last_attempt_at": "2026-11-20T13:01:05.412970Z",
    "next_attempt_at": None,
    "created_at": "2026-11-20T13:01:05.220311Z",
    "delivered_at": "2026-11-20T13:01:05.412970Z",
}
_PAIR = {
    "n": 10,
    "weight_sum": 10.0,
    "log_loss_a": 0.16868,
    "log_loss_b": 0.21304,
    "difference": 0.04436,
    "difference_stderr": 0.01517,
}

_PREDICTIONS = {
    "predictions": [
        {
            "prediction_id": "sd459",
            "timestamp": "2026-11-20T10:00:00Z",
            "score": 0.8,
            "model_version": "v3",
            "segments": {"country": "DE"},
        },
        {"prediction_id": "br575", "timestamp": "2026-11-20T10:01:00Z", "score": 0.1},
    ]
}
_ACTUALS = {
    "actuals": [
        {"prediction_id": "sd459", "label": 1},
        {"prediction_id": "br575", "label": 0, "timestamp": "2026-11-20T14:30:00Z"},
    ]
}

# README's CTR window as the Spark job uploads it: the window's mergeable statistics
# (app/metrics/window_stats.py), which the server finalises into _WINDOW's fields.
_SPARK_MODEL = {"task": "binary", "window_seconds": 3600, "clip_eps": 1e-15, "classes": None}
_SPARK_SUMS = {
    "task": "binary",
    "predictions": 10,
    "entropy_sum": 4.21571,
    "labeled": 10,
    "weight_sum": 10.0,
    "weight_sq_sum": 10.0,
    "loss_sum": 1.68684,
    "loss_shift": 0.0,
    "loss_w2_sum": 1.68684,
    "loss_sq_w2_sum": 0.31358,
    "correct_weight": 10.0,
    "class_weight": [9.0, 1.0],
    "class_loss_sum": [1.4637, 0.22314],
    "bin_count": [0, 6, 3, 0, 0, 0, 0, 0, 1, 0],
    "bin_weight": [0.0, 6.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0],
    "bin_predicted": [0.0, 0.72, 0.62, 0.0, 0.0, 0.0, 0.0, 0.0, 0.8, 0.0],
    "bin_outcome": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0],
    "quantiles": {"log_loss_median": 0.16252, "log_loss_p90": 0.22314, "log_loss_p99": 0.24846},
}
_SPARK_WINDOWS = {
    "model": _SPARK_MODEL,
    "start": "2026-11-20T10:00:00Z",
    "end": "2026-11-20T11:00:00Z",
    "rows": [
        {"window_start": 1795168800, "kind": "window", "sums": _SPARK_SUMS},
        {
            "window_start": 1795168800,
            "kind": "segment",
            "key": "country",
            "other": False,
            "value": "de",
            "sums": _SPARK_SUMS,
        },
    ],
}

# (method, path) -> {"request": body example or absent, "response": (status, example)}
EXAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("get", "/healthz"): {"response": ("200", {"status": "ok"})},
    ("get", "/readyz"): {"response": ("200", {"status": "ready", "schema": "0004"})},
    ("get", "/metrics"): {
        "response": (
            "200",
            "# HELP lossmon_window_log_loss Log loss of the model's latest window\n"
            "# TYPE lossmon_window_log_loss gauge\n"
            'lossmon_window_log_loss{model="ctr"} 0.16868\n',
        )
    },
    ("put", "/v1/models/{model_id}"): {
        "request": {"task": "binary", "window": "1h", "description": "CTR model"},
        "response": ("200", _MODEL),
    },
    ("get", "/v1/models/{model_id}"): {"response": ("200", _MODEL)},
    ("delete", "/v1/models/{model_id}"): {"response": ("204", None)},
    ("get", "/v1/models/{model_id}/storage"): {
        "response": (
            "200",
            {"model_id": "ctr", "retention_days": 90, "predictions_kept": 10, "actuals_kept": 10},
        )
    },
    ("get", "/v1/models"): {
        "response": ("200", {"models": [_MODEL], "next_cursor": "bW9kZWw6Y3Ry"}),
    },
    ("post", "/v1/models/{model_id}/predictions"): {
        "request": _PREDICTIONS,
        "response": ("200", {"accepted": 2, "duplicates": 0}),
    },
    ("post", "/v1/models/{model_id}/actuals"): {
        "request": _ACTUALS,
        "response": ("200", {"accepted": 2, "matched": 2, "pending": 0}),
    },
    ("get", "/v1/models/{model_id}/metrics"): {
        "response": (
            "200",
            {
                "model_id": "ctr",
                "window": "1h",
                "model_version": None,
                "segments": [],
                "windows": [_WINDOW],
                "next_cursor": None,
            },
        )
    },
    ("post", "/v1/models/{model_id}/monitors"): {
        "request": _MONITOR_IN,
        "response": (
            "201",
            {
                **_MONITOR,
                "state": "pending",
                "current_alert_id": None,
                "evaluated_at": None,
                "webhook_secret": "whsec_7xnufSMmERcbHXuWIk2KmVri0W344rSEyxbK42QP29M=",
            },
        ),
    },
    ("get", "/v1/models/{model_id}/monitors"): {"response": ("200", {"monitors": [_MONITOR]})},
    ("get", "/v1/models/{model_id}/monitors/{monitor_id}"): {"response": ("200", _MONITOR)},
    ("put", "/v1/models/{model_id}/monitors/{monitor_id}"): {
        "request": {"for_windows": 3},
        "response": (
            "200",
            {**_MONITOR, "for_windows": 3, "updated_at": "2026-11-21T08:15:00.000000Z"},
        ),
    },
    ("delete", "/v1/models/{model_id}/monitors/{monitor_id}"): {"response": ("204", None)},
    ("get", "/v1/alerts"): {"response": ("200", {"alerts": [_ALERT]})},
    ("get", "/v1/alerts/{alert_id}"): {"response": ("200", {**_ALERT, "deliveries": [_DELIVERY]})},
    ("get", "/v1/models/{model_id}/spark-job"): {
        "response": (
            "200",
            {
                "model_id": "ctr",
                "model": _SPARK_MODEL,
                "pinned": [{"kind": "segment", "key": "country", "value": "de"}],
                "slice_top_n": 20,
                "max_body_bytes": 16777216,
            },
        )
    },
    ("put", "/v1/models/{model_id}/spark-windows"): {
        "request": _SPARK_WINDOWS,
        "response": ("200", {"model_id": "ctr", "windows": 1, "slices": 1, "removed": 0}),
    },
    ("get", "/v1/compare"): {
        "response": (
            "200",
            {
                "models": ["ctr", "ctr-challenger"],
                "versions": None,
                "paired": True,
                "window": "1h",
                "overall": _PAIR,
                "windows": [
                    {**_PAIR, "start": "2026-11-20T10:00:00Z", "end": "2026-11-20T11:00:00Z"}
                ],
            },
        )
    },
}


def _media(content: dict[str, Any]) -> dict[str, Any]:
    """The operation's JSON media type object (text/plain for /metrics)."""
    return content.get("application/json") or next(iter(content.values()))


def add_examples(schema: dict[str, Any]) -> dict[str, Any]:
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            example = EXAMPLES.get((method, path))
            if example is None:
                continue  # tests/api/test_openapi_examples.py fails on this
            if "request" in example and "requestBody" in operation:
                _media(operation["requestBody"]["content"])["example"] = copy.deepcopy(
                    example["request"]
                )
            status, body = example["response"]
            content = operation["responses"].get(status, {}).get("content")
            if content and body is not None:
                _media(content)["example"] = copy.deepcopy(body)
    return schema


def install(app: FastAPI) -> None:
    """Make app.openapi() add the examples to the schema FastAPI builds (and caches)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        schema = build()
        return add_examples(schema) if first else schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented hook
