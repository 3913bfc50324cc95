"""Held-out evaluation of a fitted model: metrics per task and one diagnostic plot.

Metric names (what a primary_metric may be):
- classification: ``accuracy``, ``f1`` (binary: of the positive class; multiclass: macro),
  ``roc_auc`` (multiclass: one-vs-rest macro), ``log_loss`` (when the model gives probabilities)
- regression: ``rmse``, ``mae``, ``r2``
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    outputs = model_outputs(model, X_test, y_test, task)
    return outputs.metrics(), holdout_figure(outputs)


def holdout_figure(outputs: ModelOutputs) -> Any:
    """A confusion matrix (classification) or a residual plot (regression) of ``outputs``."""
    if outputs.task == "classification":
        return _confusion_figure(outputs.y, outputs.predictions, outputs.classes)
    return _residual_figure(outputs.y, outputs.predictions)


@dataclass(frozen=True)
class ModelOutputs:
    """What a model said about a set of rows: enough to compute any metric on any subset of them
    (a bootstrap resample, the same rows as another model) without calling the model again."""

    task: Task
    y: Any  # numpy array
    predictions: Any
    probabilities: Any = None  # (rows, classes), classifiers with predict_proba
    decision: Any = None  # binary decision_function, when there are no probabilities
    classes: list[Any] = field(default_factory=list)

    def metrics(self, rows: Any = None) -> dict[str, float]:
        """Every metric of the task on ``rows`` (positions; default all) that can be computed there."""
        names = CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS
        values = {name: self.metric(name, rows) for name in names}
        return {k: v for k, v in values.items() if v is not None}

    def metric(self, name: str, rows: Any = None) -> float | None:
        """``name`` on ``rows``; None where it is undefined (ROC AUC without every class, log loss
        without probabilities)."""
        import numpy as np
        from sklearn import metrics as m

        pick = (lambda a: a) if rows is None else (lambda a: None if a is None else a[rows])
        y, predicted = pick(self.y), pick(self.predictions)
        if self.task == "regression":
            scorers = {"rmse": m.root_mean_squared_error, "mae": m.mean_absolute_error, "r2": m.r2_score}
            return float(scorers[name](y, predicted)) if name in scorers else None
        binary = len(self.classes) <= 2
        if name == "accuracy":
            return float(m.accuracy_score(y, predicted))
        if name == "f1":
            kwargs = {"pos_label": self.classes[-1]} if binary else {"average": "macro"}
            return float(m.f1_score(y, predicted, zero_division=0, **kwargs))
        probabilities, decision = pick(self.probabilities), pick(self.decision)
        if name == "log_loss":
            return None if probabilities is None else float(m.log_loss(y, probabilities, labels=self.classes))
        if name != "roc_auc" or len(np.unique(y)) != len(self.classes):  # ROC AUC needs every class
            return None
        if probabilities is not None:
            return float(m.roc_auc_score(y, probabilities[:, 1]) if binary
                         else m.roc_auc_score(y, probabilities, multi_class="ovr", labels=self.classes))
        return float(m.roc_auc_score(y, decision)) if binary and decision is not None else None


def model_outputs(model: Any, X: Any, y: Any, task: Task) -> ModelOutputs:
    """Predictions (and class probabilities or decision values) of ``model`` on ``X``."""
    import numpy as np

    y_values = np.asarray(y)
    predictions = np.asarray(model.predict(X))
    if task == "regression":
        return ModelOutputs(task, y_values, predictions)
    classes = list(getattr(model, "classes_", np.unique(y_values)))
    probabilities = decision = None
    if hasattr(model, "predict_proba"):
        try:
            probabilities = np.asarray(model.predict_proba(X))
        except AttributeError:  # e.g. SVC(probability=False) exposes the method but refuses it
            probabilities = None
    if probabilities is None and len(classes) <= 2 and hasattr(model, "decision_function"):
        decision = np.asarray(model.decision_function(X))
    return ModelOutputs(task, y_values, predictions, probabilities, decision, classes)


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
        value = model_outputs(fitted, X.iloc[valid], y.iloc[valid], task).metric(metric)
        if value is not None:
            scores.append(value)
    if not scores:
        return float("nan"), float("nan")
    return float(np.mean(scores)), float(np.std(scores))
