"""Held-out evaluation of a fitted model: metrics per task and one diagnostic plot.

Metric names (what a primary_metric may be):
- classification: ``accuracy``, ``f1`` (binary: of the positive class; multiclass: macro),
  ``roc_auc`` (multiclass: one-vs-rest macro), ``log_loss`` (when the model gives probabilities)
- regression: ``rmse``, ``mae``, ``r2``
"""

from __future__ import annotations

from typing import Any

from mcp_server.estimators import Task

CLASSIFICATION_METRICS = ("accuracy", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")


def metric_names(task: Task) -> tuple[str, ...]:
    return CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS


def default_primary_metric(task: Task, n_classes: int) -> str:
    """roc_auc for binary classification, accuracy for multiclass, rmse for regression."""
    if task == "regression":
        return "rmse"
    return "roc_auc" if n_classes <= 2 else "accuracy"


def evaluate_model(model: Any, X_test: Any, y_test: Any, task: Task) -> tuple[dict[str, float], Any]:
    """(metrics, matplotlib figure): a confusion matrix or a residual plot."""
    import numpy as np

    predictions = model.predict(X_test)
    if task == "classification":
        classes = list(getattr(model, "classes_", np.unique(y_test)))
        return (
            _classification_metrics(model, X_test, y_test, predictions, classes),
            _confusion_figure(y_test, predictions, classes),
        )
    return _regression_metrics(y_test, predictions), _residual_figure(y_test, predictions)


def _classification_metrics(
    model: Any, X_test: Any, y_test: Any, predictions: Any, classes: list[Any]
) -> dict[str, float]:
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    binary = len(classes) <= 2
    metrics = {"accuracy": accuracy_score(y_test, predictions)}
    if binary:
        metrics["f1"] = f1_score(y_test, predictions, pos_label=classes[-1], zero_division=0)
    else:
        metrics["f1"] = f1_score(y_test, predictions, average="macro", zero_division=0)
    scores = None
    if hasattr(model, "predict_proba"):
        try:
            scores = model.predict_proba(X_test)
        except AttributeError:  # e.g. SVC(probability=False) exposes the method but refuses it
            scores = None
    if scores is not None:
        metrics["log_loss"] = log_loss(y_test, scores, labels=classes)
        if len(np.unique(y_test)) == len(classes):  # ROC AUC needs every class in the test set
            metrics["roc_auc"] = (
                roc_auc_score(y_test, scores[:, 1]) if binary
                else roc_auc_score(y_test, scores, multi_class="ovr", labels=classes)
            )
    elif binary and hasattr(model, "decision_function"):
        metrics["roc_auc"] = roc_auc_score(y_test, model.decision_function(X_test))
    return {k: float(v) for k, v in metrics.items()}


def _regression_metrics(y_test: Any, predictions: Any) -> dict[str, float]:
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

    return {
        "rmse": float(root_mean_squared_error(y_test, predictions)),
        "mae": float(mean_absolute_error(y_test, predictions)),
        "r2": float(r2_score(y_test, predictions)),
    }


def _new_figure(width: float, height: float):
    # Figure + Agg canvas directly: no pyplot global state, safe in worker threads and headless.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _confusion_figure(y_true: Any, predictions: Any, classes: list[Any]):
    import numpy as np
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(y_true, predictions, labels=classes)
    size = max(3.5, 0.6 * len(classes) + 2.5)
    figure = _new_figure(size, size)
    ax = figure.add_subplot()
    ax.imshow(matrix, cmap="Blues")
    labels = [str(c) for c in classes]
    ax.set_xticks(range(len(classes)), labels, rotation=45 if len(classes) > 4 else 0)
    ax.set_yticks(range(len(classes)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title("confusion matrix (test set)")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > threshold else "black")
    return figure


def _residual_figure(y_true: Any, predictions: Any):
    import numpy as np

    residuals = np.asarray(y_true, dtype=float) - np.asarray(predictions, dtype=float)
    figure = _new_figure(5, 4)
    ax = figure.add_subplot()
    ax.scatter(predictions, residuals, s=8, alpha=0.5)
    ax.axhline(0.0, color="black", linewidth=1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual - predicted")
    ax.set_title("residuals (test set)")
    return figure


def cross_validate_metric(
    model: Any, X: Any, y: Any, split_values: Any, *, spec: Any, n_folds: int, seed: int, task: Task, metric: str,
) -> tuple[float, float]:
    """(mean, std) of ``metric`` over the spec's folds of the training part, computed exactly as the
    test metric is (refits clones of ``model``), so the two can be set side by side."""
    import numpy as np
    from sklearn.base import clone

    from mcp_server.evaluation import cv_folds

    frame = X if split_values is None else X.assign(**{spec.column: split_values.to_numpy()})
    folds = cv_folds(frame, y, spec, n_folds=n_folds, seed=seed, classification=task == "classification")
    scores = []
    for train, valid in folds:
        fitted = clone(model).fit(X.iloc[train], y.iloc[train])
        X_valid, y_valid = X.iloc[valid], y.iloc[valid]
        predictions = fitted.predict(X_valid)
        if task == "classification":
            classes = list(getattr(fitted, "classes_", np.unique(y_valid)))
            values = _classification_metrics(fitted, X_valid, y_valid, predictions, classes)
        else:
            values = _regression_metrics(y_valid, predictions)
        if metric in values:
            scores.append(values[metric])
    if not scores:
        return float("nan"), float("nan")
    return float(np.mean(scores)), float(np.std(scores))
