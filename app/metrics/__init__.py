"""Pure numpy metric math: no I/O, no database, just arrays in and floats out."""

from app.metrics.baseline import baseline_log_loss, categorical_entropy
from app.metrics.calibration import ReliabilityBin, reliability_table
from app.metrics.logloss import (
    DEFAULT_EPS,
    binary_entropy,
    binary_losses,
    categorical_entropies,
    class_indexes,
    clip,
    multiclass_losses,
    weighted_log_loss,
)
from app.metrics.multiclass import multiclass_stats_by_group, multiclass_window_stats
from app.metrics.paired import PairedDifference, paired_by_group, paired_difference
from app.metrics.stats import weighted_quantile, weighted_quantiles, weighted_stderr
from app.metrics.window import WindowStats, binary_window_stats, stats_by_group
from app.metrics.window_stats import WindowSums, finalise, merge

__all__ = [
    "DEFAULT_EPS",
    "PairedDifference",
    "ReliabilityBin",
    "WindowStats",
    "WindowSums",
    "baseline_log_loss",
    "binary_entropy",
    "binary_losses",
    "binary_window_stats",
    "categorical_entropies",
    "categorical_entropy",
    "class_indexes",
    "clip",
    "finalise",
    "merge",
    "multiclass_losses",
    "multiclass_stats_by_group",
    "multiclass_window_stats",
    "paired_by_group",
    "paired_difference",
    "reliability_table",
    "stats_by_group",
    "weighted_log_loss",
    "weighted_quantile",
    "weighted_quantiles",
    "weighted_stderr",
]
