"""Pure numpy metric math: no I/O, no database, just arrays in and floats out."""

from app.metrics.baseline import baseline_log_loss, categorical_entropy
from app.metrics.logloss import (
    DEFAULT_EPS,
    binary_entropy,
    binary_losses,
    clip,
    weighted_log_loss,
)
from app.metrics.stats import weighted_quantile, weighted_quantiles, weighted_stderr
from app.metrics.window import WindowStats, binary_window_stats, stats_by_group

__all__ = [
    "DEFAULT_EPS",
    "WindowStats",
    "baseline_log_loss",
    "binary_entropy",
    "binary_losses",
    "binary_window_stats",
    "categorical_entropy",
    "clip",
    "stats_by_group",
    "weighted_log_loss",
    "weighted_quantile",
    "weighted_quantiles",
    "weighted_stderr",
]
