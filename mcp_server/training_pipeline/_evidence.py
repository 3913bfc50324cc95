"""Is a challenger better than the champion, or only luckier on the holdout?

A version replaces the champion only when it is better on the holdout by more than the holdout's
noise **and** not worse in cross-validation beyond the folds' spread:

- holdout, paired (the pipeline, which has the challenger's predictions and can score the champion
  on the very same rows): the 90% paired bootstrap interval of the gain must lie above zero;
- holdout, unpaired (``promote_model``, which only has the recorded figures): the gain must exceed
  1.645 × √(se₁² + se₂²) from each run's ``test_<metric>_stderr``;
- cross-validation: the challenger's ``cv_<metric>_mean`` must not be worse than the champion's by
  more than the larger of the two ``cv_<metric>_std``.

Runs of earlier releases record no standard error: they are compared on the plain value, and the
reason says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcp_server.mlflow_integration import Tracker
    from mcp_server.training_pipeline._noise import PairedGain

Z_90 = 1.645  # two-sided 90%: the same confidence as the paired bootstrap interval


@dataclass(frozen=True)
class Evidence:
    """What a run says about its model on one metric."""

    test: float | None = None
    test_stderr: float | None = None
    cv_mean: float | None = None
    cv_std: float | None = None

    @classmethod
    def of_metrics(cls, metrics: dict[str, float], metric: str) -> Evidence:
        def finite(key: str) -> float | None:
            value = metrics.get(key)
            return float(value) if value is not None and math.isfinite(value) else None

        test = finite(f"test_{metric}")
        return cls(test=test if test is not None else finite(metric), test_stderr=finite(f"test_{metric}_stderr"),
                   cv_mean=finite(f"cv_{metric}_mean"), cv_std=finite(f"cv_{metric}_std"))


def beats_beyond_noise(new: Evidence, old: Evidence, *, higher_is_better: bool, paired: PairedGain | None,
                       old_name: str) -> tuple[bool, str]:
    """(wins, why) for a challenger already better on the plain holdout value."""
    sign = 1.0 if higher_is_better else -1.0
    if paired is not None:
        holdout_ok = paired.significant
        holdout = (f"paired bootstrap on the same {paired.rows} holdout rows: gain {paired.gain:+.4g}, 90% interval "
                   f"{paired.low:+.4g} to {paired.high:+.4g}")
    elif new.test_stderr is not None and old.test_stderr is not None and new.test is not None and old.test is not None:
        gain, noise = sign * (new.test - old.test), Z_90 * math.hypot(new.test_stderr, old.test_stderr)
        holdout_ok = gain > noise
        holdout = f"holdout gain {gain:+.4g} against noise ±{noise:.3g} (standard errors of both test scores)"
    else:
        return True, "no recorded noise to compare with (a run of an earlier release): plain comparison"
    if not holdout_ok:
        return False, (f"not better than {old_name} beyond the holdout's noise ({holdout}); the difference could "
                       "be luck on these rows: a model is replaced by a clearly better one only")
    if None not in (new.cv_mean, old.cv_mean):
        spread = max(new.cv_std or 0.0, old.cv_std or 0.0)
        cv_gain = sign * (new.cv_mean - old.cv_mean)
        if cv_gain < -spread:
            return False, (f"better on the holdout ({holdout}) but worse in cross-validation: cv mean "
                           f"{new.cv_mean:.4g} vs {old.cv_mean:.4g} for {old_name}, beyond the folds' spread "
                           f"({spread:.3g}); the holdout win is likely noise")
    return True, f"beyond the noise: {holdout}"


def paired_with_holder(tracker: Tracker, model_name: str, holder: dict[str, Any], outputs: Any, test_rows: Any,
                       target: str, metric: str, *, higher_is_better: bool, seed: int) -> PairedGain | None:
    """The challenger's gain over the alias holder on the same test rows: the holder's model loaded
    from the registry and scored on ``test_rows``. None when it cannot be (other features, a model
    that fails to load): the caller then compares the recorded figures."""
    from mcp_server.training_pipeline._evaluation import model_outputs
    from mcp_server.training_pipeline._noise import paired_gain

    try:
        model = tracker.load_model(f"models:/{model_name}/{int(holder['version'])}")
        columns = [str(c) for c in getattr(model, "feature_names_in_", [])]
        if not columns or not set(columns) <= set(map(str, test_rows.columns)):
            return None
        held = model_outputs(model, test_rows[columns], test_rows[target], outputs.task)
    except Exception:  # noqa: BLE001 - any failure means "not comparable here", never a failed promotion
        return None
    if held.task == "classification" and list(map(str, held.classes)) != list(map(str, outputs.classes)):
        return None
    return paired_gain(outputs, held, metric, higher_is_better=higher_is_better, seed=seed)
