"""The reference for bench/ingest_single.py: a bare FastAPI + psycopg endpoint that
inserts one prediction row per POST and commits before answering.

    LOSSMON_BENCH_REF_PG_URL=postgresql://... \
        uvicorn --factory bench.reference_single_app:create_app

What a competent team would write first: a plain `def` route (FastAPI's threadpool), a
Pydantic body, one psycopg connection per threadpool thread, one INSERT ... ON CONFLICT
DO NOTHING and a commit. No auth, no middleware, no window bookkeeping. It echoes
X-Request-ID so the bench can tell which ids were acknowledged (lossmon does the same).
"""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime

import psycopg
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel

MODEL_ID = "reference"


class PredictionIn(BaseModel):
    prediction_id: str
    timestamp: datetime
    score: float


class PredictionBatch(BaseModel):
    predictions: list[PredictionIn]


def create_app() -> FastAPI:
    url = os.environ["LOSSMON_BENCH_REF_PG_URL"]
    local = threading.local()
    app = FastAPI()

    def connection() -> psycopg.Connection:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = psycopg.connect(url)
        return conn

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/models/{model_id}/predictions")
    def post(model_id: str, batch: PredictionBatch, request: Request, response: Response) -> dict:
        conn = connection()
        accepted = 0
        with conn.cursor() as cur:
            for p in batch.predictions:
                ts_us = int(p.timestamp.timestamp() * 1e6)
                cur.execute(
                    "INSERT INTO predictions (model_id, prediction_id, ts_us, window_start, "
                    "score, model_version, received_us) VALUES (%s, %s, %s, %s, %s, '', %s) "
                    "ON CONFLICT DO NOTHING",
                    (
                        MODEL_ID,
                        p.prediction_id,
                        ts_us,
                        ts_us // 3_600_000_000 * 3600,
                        p.score,
                        time.time_ns() // 1000,
                    ),
                )
                accepted += cur.rowcount
        conn.commit()
        response.headers["x-request-id"] = request.headers.get("x-request-id", "")
        return {"accepted": accepted, "duplicates": len(batch.predictions) - accepted}

    return app
