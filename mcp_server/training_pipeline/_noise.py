"""How much a holdout score can be trusted: a trivial model on the same rows, and the noise of a
difference between two models scored on identical rows (a paired bootstrap over those rows).

A 978-row holdout moves an RMSE by a few hundredths from one resample to the next; a winner picked
on a smaller difference than that is picked on noise. Both models are resampled together (the
same row indices in each resample), which cancels the rows' shared difficulty and keeps the
interval as narrow as the data allow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from mcp_server.training_pipeline._evaluation import ModelOutputs

RESAMPLES = 200
CONFIDENCE = 0.90  # two-sided interval: a gain counts when its 5th percentile is above zero
CHANCE = {"roc_auc": 0.5}  # ranking metrics, where a score below this ranks the wrong way round


@dataclass(frozen=True)
class PairedGain:
    """(a − b) on ``metric``, oriented so that positive means ``a`` is better, with its interval."""

    gain: float
    low: float
    high: float
    rows: int

    @property
    def significant(self) -> bool:
        return self.low > 0


def paired_gain(a: ModelOutputs, b: ModelOutputs, metric: str, *, higher_is_better: bool,
                resamples: int = RESAMPLES, seed: int = 0) -> PairedGain | None:
    """Paired bootstrap of ``a``'s gain over ``b`` on the same rows; None where the metric is undefined."""
    import numpy as np

    sign = 1.0 if higher_is_better else -1.0
    a_all, b_all = a.metric(metric), b.metric(metric)
    if a_all is None or b_all is None:
        return None
    rng = np.random.default_rng(seed)
    n = len(a.y)
    gains = []
    for rows in rng.integers(0, n, size=(resamples, n)):
        a_value, b_value = a.metric(metric, rows), b.metric(metric, rows)
        if a_value is not None and b_value is not None:
            gains.append(sign * (a_value - b_value))
    if not gains:
        return None
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(gains, [tail, 1 - tail])
    return PairedGain(gain=sign * (a_all - b_all), low=float(low), high=float(high), rows=n)


def bootstrap_stderr(outputs: ModelOutputs, metric: str, *, resamples: int = RESAMPLES, seed: int = 0) -> float | None:
    """The standard error of ``metric`` over bootstrap resamples of the rows."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(outputs.y)
    values = [v for rows in rng.integers(0, n, size=(resamples, n))
              if (v := outputs.metric(metric, rows)) is not None]
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


class BaselineScore(BaseModel):
    """The primary metric of a trivial model fit on the same training rows and scored on the same
    holdout rows as the model, and the model's gain over it."""

    metric: str
    model: str = Field(description="The trivial model: prior class probabilities, or the training mean")
    score: float = Field(description="The trivial model's test score")
    chance: float | None = Field(default=None, description="The score of random ranking (roc_auc: 0.5)")
    gain: float | None = Field(default=None, description="Model minus trivial model, positive = better")
    gain_low: float | None = Field(default=None, description="Lower end of the 90% paired bootstrap interval")
    gain_high: float | None = None
    rows: int = Field(description="Holdout rows both were scored on")
    beaten: bool = Field(description="The gain is above zero by more than the noise, and the score above chance")


def baseline_outputs(X_train: Any, y_train: Any, X_test: Any, y_test: Any, task: str) -> tuple[str, ModelOutputs]:
    """(name, outputs) of the trivial model for ``task``: prior class probabilities, or the mean."""
    from sklearn.dummy import DummyClassifier, DummyRegressor

    from mcp_server.training_pipeline._evaluation import model_outputs

    if task == "classification":
        name, model = "prior class probabilities", DummyClassifier(strategy="prior")
    else:
        name, model = "the training mean", DummyRegressor(strategy="mean")
    return name, model_outputs(model.fit(X_train, y_train), X_test, y_test, task)
