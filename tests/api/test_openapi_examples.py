"""/openapi.json: every operation has a request example (when it takes a body) and a
success response example, each valid against the operation's own schema; the /metrics
description speaks to users, not about the implementation."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient

from app.api.openapi_examples import EXAMPLES
from app.main import create_app


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    schema: dict[str, Any] = create_app().openapi()
    return schema


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, ops in spec["paths"].items() for m, op in ops.items()]


def _check(spec: dict[str, Any], media: dict[str, Any], where: str) -> None:
    assert "example" in media, f"{where}: no example"
    # Refs are "#/components/...": validate against a document that carries them.
    schema = {**media["schema"], "components": spec["components"]}
    errors = [e.message for e in jsonschema_rs.validator_for(schema).iter_errors(media["example"])]
    assert errors == [], f"{where}: {errors}"


def test_every_operation_has_valid_examples(spec: dict[str, Any]) -> None:
    operations = _operations(spec)
    assert len(operations) >= 18
    for method, path, op in operations:
        where = f"{method.upper()} {path}"
        if "requestBody" in op:
            _check(spec, op["requestBody"]["content"]["application/json"], where + " request")
        status = next(s for s in op["responses"] if s.startswith("2"))
        content = op["responses"][status].get("content")
        if status == "204":
            assert not content, where
            continue
        assert content, where
        for media_type, media in content.items():
            if media_type == "application/json":
                _check(spec, media, f"{where} {status} response")
            else:  # /metrics: text
                assert isinstance(media.get("example", ""), str)
        assert any("example" in m for m in content.values()), where


def test_example_requests_work_as_documented(client: TestClient) -> None:
    """Beyond the schema (cross-field rules, the model's task): the documented request
    bodies, sent in order to a fresh database, get the documented status. The monitor
    is created without its example webhook URL (its host would be resolved)."""

    def send(method: str, template: str, url: str) -> None:
        example = EXAMPLES[(method, template)]
        r = client.request(method.upper(), url, json=example.get("request"))
        assert str(r.status_code) == example["response"][0], (method, url, r.text)

    send("put", "/v1/models/{model_id}", "/v1/models/ctr")
    send("post", "/v1/models/{model_id}/predictions", "/v1/models/ctr/predictions")
    send("post", "/v1/models/{model_id}/actuals", "/v1/models/ctr/actuals")
    send("get", "/v1/models/{model_id}/spark-job", "/v1/models/ctr/spark-job")
    send("put", "/v1/models/{model_id}/spark-windows", "/v1/models/ctr/spark-windows")
    monitor = {
        k: v
        for k, v in EXAMPLES[("post", "/v1/models/{model_id}/monitors")]["request"].items()
        if k != "webhook_url"
    }
    r = client.post("/v1/models/ctr/monitors", json=monitor)
    assert r.status_code == 201, r.text
    mid = r.json()["monitor_id"]
    send("put", "/v1/models/{model_id}/monitors/{monitor_id}", f"/v1/models/ctr/monitors/{mid}")
    send("delete", "/v1/models/{model_id}/monitors/{monitor_id}", f"/v1/models/ctr/monitors/{mid}")
    send("delete", "/v1/models/{model_id}", "/v1/models/ctr")


def test_metrics_description_is_for_users(spec: dict[str, Any]) -> None:
    op = spec["paths"]["/metrics"]["get"]
    text = (op.get("description", "") + op.get("summary", "")).lower()
    for leak in ("threadpool", "plain `def`", "async", "scrape-time database"):
        assert leak not in text, text
    assert "prometheus" in text
