"""scikit-optimize's ask/tell ``Optimizer`` with warped scores and a proposal step that stays cheap.

skopt refits the GP after every told point and maximizes the acquisition over ``n_points``
random candidates. This class does the same with two changes (docs/tuning.md):

* The GP is fit on the scores after a Yeo-Johnson power transform, refit on all of them each
  time. Hyperparameter scores are skewed: a few bad configurations (a learning rate far too
  small) sit far below a crowd of good ones, and a stationary GP fit on them spends its scale
  on the bad tail and sees the good region as flat. Warped, the good region keeps its contrast.
* Past ``local_after`` told points the search has found its good regions and the GP is expensive
  to query (O(candidates × trials²)), so the candidates become fewer and half of them are drawn
  near the best points found so far: a cheaper proposal that also refines the incumbents.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import clone
from sklearn.preprocessing import PowerTransformer
from skopt import Optimizer
from skopt.acquisition import _gaussian_acquisition

# Past `local_after` told points: this many candidates in all, half uniformly random, half normal
# perturbations (sd LOCAL_SCALE of each normalized dimension) of the TOP best points.
LONG_SEARCH_POINTS = 1_000
LOCAL_SCALE = 0.1
TOP = 5


class ProposalOptimizer(Optimizer):
    """skopt's ``Optimizer`` (``acq_optimizer="sampling"``) with local candidates in long searches."""

    def __init__(self, *args, local_after: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.local_after = local_after  # told points up to which the candidates are skopt's uniform draws

    def _tell(self, x, y, fit=True):
        result = super()._tell(x, y, fit=False)  # skopt records the points; the fit is ours
        if fit and self._n_initial_points <= 0 and self.base_estimator_ is not None:
            self._propose()
        return result

    def _propose(self) -> None:
        """skopt's fit-and-sample step (its ``_tell`` with ``acq_optimizer="sampling"``) on warped
        scores and our candidates."""
        est = clone(self.base_estimator_)
        targets = warped(self.yi)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(self.space.transform(self.Xi), targets)
        if hasattr(self, "next_xs_") and self.acq_func == "gp_hedge":
            self.gains_ -= est.predict(np.vstack(self.next_xs_))
        keep = len(self.models) if self.max_model_queue_size is None else self.max_model_queue_size - 1
        self.models = [*(self.models[len(self.models) - keep:] if keep else []), est]
        X = self._candidates()
        self.next_xs_ = [
            X[np.argmin(_gaussian_acquisition(X=X, model=est, y_opt=np.min(targets), acq_func=acq,
                                              acq_func_kwargs=self.acq_func_kwargs))]
            for acq in self.cand_acq_funcs_
        ]
        if self.acq_func == "gp_hedge":
            logits = np.array(self.gains_)
            probs = np.exp(self.eta * (logits - np.max(logits)))
            next_x = self.next_xs_[np.argmax(self.rng.multinomial(1, probs / probs.sum()))]
        else:
            next_x = self.next_xs_[0]
        self._next_x = self.space.inverse_transform(next_x.reshape((1, -1)))[0]

    def _candidates(self) -> np.ndarray:
        """Transformed candidates: skopt's n_points uniform draws up to ``local_after`` told points;
        past it, half uniform, half around the TOP best points (snapped to the space)."""
        if len(self.yi) <= self.local_after:
            return self.space.transform(self.space.rvs(n_samples=self.n_points, random_state=self.rng))
        n_random = LONG_SEARCH_POINTS // 2
        uniform = self.space.transform(self.space.rvs(n_samples=n_random, random_state=self.rng))
        best = self.space.transform([self.Xi[i] for i in np.argsort(self.yi)[:TOP]])
        centers = best[np.arange(LONG_SEARCH_POINTS - n_random) % len(best)]
        bounds = np.array(self.space.transformed_bounds)
        near = np.clip(centers + self.rng.normal(0.0, LOCAL_SCALE, centers.shape) * (bounds[:, 1] - bounds[:, 0]),
                       bounds[:, 0], bounds[:, 1])
        # Back to the space and transformed again: integers and categories land on valid values.
        near = self.space.transform(self.space.inverse_transform(near))
        return np.vstack([uniform, near])

    def _ask(self):
        # skopt looks for an already-evaluated proposal with one Python distance call per told
        # point; an exact match is what it finds, so test that first and let skopt handle a hit.
        if self._n_initial_points <= 0 and self.models and self._next_x not in self.Xi:
            return self._next_x
        return super()._ask()

    def copy(self, random_state=None):
        """skopt's copy (used for parallel batches) as this class, with the same model queue."""
        optimizer = type(self)(
            dimensions=self.space.dimensions, base_estimator=self.base_estimator_,
            n_initial_points=self.n_initial_points_, initial_point_generator=self._initial_point_generator,
            acq_func=self.acq_func, acq_optimizer=self.acq_optimizer, acq_func_kwargs=self.acq_func_kwargs,
            acq_optimizer_kwargs=self.acq_optimizer_kwargs, model_queue_size=self.max_model_queue_size,
            space_constraint=self.space.constraint, random_state=random_state, local_after=self.local_after,
        )
        optimizer._initial_samples = self._initial_samples
        if hasattr(self, "gains_"):
            optimizer.gains_ = np.copy(self.gains_)
        if self.Xi:
            optimizer._tell(self.Xi, self.yi)
        return optimizer


def warped(scores) -> np.ndarray:
    """Scores after a Yeo-Johnson power transform fit on them (standardized); unchanged while there
    are too few distinct scores to fit one, or if the fit is not finite."""
    y = np.asarray(scores, dtype=float)
    if len(np.unique(y)) < 3:
        return y
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        out = PowerTransformer(method="yeo-johnson").fit_transform(y.reshape(-1, 1)).ravel()
    return out if np.all(np.isfinite(out)) else y
