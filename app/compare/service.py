"""Champion vs challenger: log loss of two models on the same labeled predictions.

Paired by prediction id (seed 000: compare models on the same data): each row gives a
difference d_i = l_b,i - l_a,i, whose weighted mean and standard error say whether b
beats a beyond noise. Two versions of ONE model never share a prediction id, so that
comparison is unpaired (the two samples' standard errors add in quadrature).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from app.db import is_postgres
from app.errors import invalid_query
from app.metrics import (
    PairedDifference,
    WindowStats,
    binary_losses,
    multiclass_losses,
    paired_by_group,
    paired_difference,
)
from app.registry.models import MonitoredModel
from app.windows.reader import parse_probabilities, read_joined
from app.windows.values import compute_stats


@dataclass(frozen=True, slots=True)
class Comparison:
    overall: PairedDifference
    windows: dict[int, PairedDifference]


def check_comparable(a: MonitoredModel, b: MonitoredModel) -> None:
    if a.task != b.task:
        raise invalid_query("models", f"cannot compare a {a.task} model with a {b.task} model")
    if a.task == "multiclass" and list(a.classes or []) != list(b.classes or []):
        raise invalid_query("models", "multiclass models compared must have the same classes")


def _paired_sql(pg: bool, multiclass: bool, versions: bool, start: bool, end: bool) -> str:
    ph = "%s" if pg else "?"
    value = "probabilities" + ("::text" if pg else "") if multiclass else "score"
    # Label and weight come from one actual row: model a's, else model b's.
    sql = (
        f"SELECT pa.window_start, pa.{value}, pb.{value}, "
        "CASE WHEN aa.prediction_id IS NOT NULL THEN aa.label ELSE ab.label END, "
        "CASE WHEN aa.prediction_id IS NOT NULL THEN aa.weight ELSE ab.weight END "
        "FROM predictions pa "
        f"JOIN predictions pb ON pb.model_id = {ph} AND pb.prediction_id = pa.prediction_id "
        f"LEFT JOIN actuals aa ON aa.model_id = {ph} AND aa.prediction_id = pa.prediction_id "
        f"LEFT JOIN actuals ab ON ab.model_id = {ph} AND ab.prediction_id = pa.prediction_id "
        f"WHERE pa.model_id = {ph} "
        "AND (aa.prediction_id IS NOT NULL OR ab.prediction_id IS NOT NULL)"
    )
    if versions:
        sql += f" AND pa.model_version = {ph} AND pb.model_version = {ph}"
    if start:
        sql += f" AND pa.window_start >= {ph}"
    if end:
        sql += f" AND pa.window_start < {ph}"
    return sql


def empty() -> Comparison:
    nothing = np.empty(0, dtype=np.float64)
    return Comparison(paired_difference(nothing, nothing, nothing), {})


def paired(
    *,
    session: Session,
    a: MonitoredModel,
    b: MonitoredModel,
    versions: tuple[str, str] | None,
    start: int | None,
    end: int | None,
) -> Comparison:
    multiclass = a.task == "multiclass"
    pg = is_postgres(session)
    params: list[object] = [b.id, a.id, b.id, a.id]
    if versions is not None:
        params += list(versions)
    params += [x for x in (start, end) if x is not None]
    sql = _paired_sql(pg, multiclass, versions is not None, start is not None, end is not None)
    cur = session.connection().connection.cursor()
    try:
        cur.execute(sql, tuple(params))
        rows = cur.fetchall()
    finally:
        cur.close()
    if not rows:
        return empty()
    columns = list(zip(*rows, strict=True))
    windows = np.array(columns[0], dtype=np.int64)
    labels = np.array(columns[3], dtype=np.float64)
    weights = np.array(columns[4], dtype=np.float64)
    if multiclass:
        n = len(rows)
        index = labels.astype(np.int64)
        loss_a = multiclass_losses(parse_probabilities(columns[1], n), index, a.clip_eps)
        loss_b = multiclass_losses(parse_probabilities(columns[2], n), index, b.clip_eps)
    else:
        loss_a = binary_losses(np.array(columns[1], dtype=np.float64), labels, a.clip_eps)
        loss_b = binary_losses(np.array(columns[2], dtype=np.float64), labels, b.clip_eps)
    return Comparison(
        overall=paired_difference(loss_a, loss_b, weights),
        windows=paired_by_group(windows, loss_a, loss_b, weights),
    )


def _difference(a: WindowStats, b: WindowStats) -> PairedDifference:
    la, lb = a.log_loss, b.log_loss
    sa, sb = a.log_loss_stderr, b.log_loss_stderr
    both = la is not None and lb is not None
    return PairedDifference(
        n=a.labeled + b.labeled,
        weight_sum=a.weight_sum + b.weight_sum,
        log_loss_a=la,
        log_loss_b=lb,
        difference=lb - la if la is not None and lb is not None else None,
        difference_stderr=(
            math.sqrt(sa * sa + sb * sb) if both and sa is not None and sb is not None else None
        ),
    )


def unpaired(
    *,
    session: Session,
    model: MonitoredModel,
    versions: tuple[str, str],
    start: int | None,
    end: int | None,
) -> Comparison:
    """Two versions of one model: per window and overall, L_b - L_a with standard error
    sqrt(se_a^2 + se_b^2) (independent samples)."""
    sides = [
        read_joined(
            session=session,
            model_id=model.id,
            start=start,
            end=end,
            model_version=v,
            multiclass=model.task == "multiclass",
        )
        for v in versions
    ]
    per_window = [compute_stats(rows, model.clip_eps) for rows in sides]
    overall = [
        compute_stats(rows, model.clip_eps, np.zeros(len(rows), dtype=np.int64)).get(0)
        for rows in sides
    ]
    both = sorted(set(per_window[0]) & set(per_window[1]))
    differences = (_difference(per_window[0][ws], per_window[1][ws]) for ws in both)
    windows = {ws: d for ws, d in zip(both, differences, strict=True) if d.n > 0}
    oa, ob = overall
    if oa is None or ob is None:
        return Comparison(empty().overall, windows)
    return Comparison(_difference(oa, ob), windows)
