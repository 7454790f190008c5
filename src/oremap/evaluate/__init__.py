"""Evaluate stage: metrics and tables, rate curves, permutation importance, figures, writers."""

from oremap.evaluate.figures import (
    plot_calibration,
    plot_confusion_matrices,
    plot_confusion_matrix,
    plot_importance,
    plot_pr_curves,
    plot_reliability,
    plot_roc_curves,
    plot_success_rate_curves,
)
from oremap.evaluate.importance import (
    importance_permutations,
    importance_score,
    importance_table,
    layer_drops,
    permutation_importance,
)
from oremap.evaluate.intervals import BOOTSTRAP, bootstrap_interval, fold_interval
from oremap.evaluate.metrics import (
    TABLE1_COLUMNS,
    average_precision,
    calibration_bins,
    classification_report,
    confusion,
    expected_calibration_error,
    pr_curve,
    roc_auc,
    roc_curve,
    summarise_folds,
    table1,
    table_to_markdown,
)
from oremap.evaluate.outputs import (
    CAPTURE_SHARES,
    hidden_truth_scores,
    write_held_out_figures,
    write_importance,
    write_rate_curves,
)
from oremap.evaluate.rates import SuccessRate, ranking_auc, success_rate_curve
from oremap.labels import Label

__all__ = [
    "BOOTSTRAP",
    "CAPTURE_SHARES",
    "TABLE1_COLUMNS",
    "Label",
    "SuccessRate",
    "average_precision",
    "bootstrap_interval",
    "calibration_bins",
    "classification_report",
    "expected_calibration_error",
    "confusion",
    "fold_interval",
    "hidden_truth_scores",
    "importance_permutations",
    "importance_score",
    "importance_table",
    "layer_drops",
    "permutation_importance",
    "plot_calibration",
    "plot_reliability",
    "plot_confusion_matrices",
    "plot_confusion_matrix",
    "plot_importance",
    "plot_pr_curves",
    "plot_roc_curves",
    "plot_success_rate_curves",
    "pr_curve",
    "ranking_auc",
    "roc_auc",
    "roc_curve",
    "success_rate_curve",
    "summarise_folds",
    "table1",
    "table_to_markdown",
    "write_held_out_figures",
    "write_importance",
    "write_rate_curves",
]
