"""HalvingStrategy: one rung at a time behind ask / tell (it never fits, splits or logs)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

from mcp_server.hyperparameter_tuning._halving._schedule import (
    MODEL_SHARE,
    Fidelity,
    HalvingSchedule,
    candidates_kind,
)
from mcp_server.hyperparameter_tuning._space import SearchSpace, to_native


def _key(params: Mapping[str, Any]) -> tuple:
    from mcp_server.hyperparameter_tuning._strategies import params_key

    return params_key(params)


class HalvingStrategy:
    """Successive halving over grid or seeded random candidates, one rung at a time (ask / tell)."""

    name = "halving"
    proposes_ahead = False  # a rung's candidates depend on the previous rung's scores

    def __init__(self, space: SearchSpace, *, schedule: HalvingSchedule, seed: int, max_grid_size: int) -> None:
        self._space = space
        self._schedule = schedule
        self._seed = seed
        kind = self.candidates_kind = candidates_kind(schedule.candidates, space)
        self._grid: list[dict[str, Any]] | None = None
        if kind == "grid":
            from sklearn.model_selection import ParameterGrid

            self._grid = [{k: to_native(v) for k, v in p.items()}
                          for p in ParameterGrid(space.to_param_grid(max_grid_size=max_grid_size))]
        self.max_resource = schedule.max_resource
        self._bracket = -1
        self._restored: dict[tuple, float | None] = {}
        self._observed: dict[int, list[tuple[dict[str, Any], float | None]]] = {}  # resource -> (params, score)
        self._pending: dict[tuple, Fidelity] = {}
        self._done = False
        self._start_bracket()

    # --- brackets and rungs --------------------------------------------------------------------
    def _bracket_candidates(self, bracket: int) -> list[dict[str, Any]]:
        if self._grid is not None:
            return [dict(c) for c in self._grid] if bracket == 0 else []
        from sklearn.model_selection import ParameterSampler

        n = self._schedule.n_candidates
        proposed = self._model_candidates(int(n * MODEL_SHARE)) if self.candidates_kind == "bayesian" else []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a small finite space is sampled exhaustively
            sampled = ParameterSampler(self._space.to_sampler_distributions(), n_iter=n - len(proposed),
                                       random_state=(self._seed + 7919 * bracket) % 2**32)
            return proposed + [{k: to_native(v) for k, v in p.items()} for p in sampled]

    def _model_candidates(self, n: int) -> list[dict[str, Any]]:
        """n points from a GP fitted on the highest rung with enough scores (BOHB's rule), or none."""
        names = self._space.names
        for resource in sorted(self._observed, reverse=True):
            points = [(p, s) for p, s in self._observed[resource] if s is not None]
            if len(points) >= len(names) + 2:
                break
        else:
            return []
        from mcp_server.hyperparameter_tuning._optimizer import ProposalOptimizer
        from mcp_server.hyperparameter_tuning._strategies import STABLE_AFTER

        # The Bayesian searcher's optimizer: its GP is fit on warped scores (_optimizer.warped).
        optimizer = ProposalOptimizer(self._space.to_skopt_dimensions(), base_estimator="GP", n_initial_points=1,
                                      acq_func="EI", acq_optimizer="sampling", random_state=self._seed + self._bracket,
                                      acq_optimizer_kwargs={"n_points": 2000}, local_after=STABLE_AFTER)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimizer.tell([[p[k] for k in names] for p, _ in points], [-s for _, s in points])
            xs = optimizer.ask(n_points=n) if n > 1 else [optimizer.ask()] if n == 1 else []
        seen: set[tuple] = set()
        out = []
        for x in xs:
            params = {k: to_native(v) for k, v in zip(names, x)}
            if _key(params) not in seen:
                seen.add(_key(params))
                out.append(params)
        return out

    def _start_bracket(self) -> bool:
        self._bracket += 1
        candidates = self._bracket_candidates(self._bracket)
        if not candidates or (self._bracket > 0 and not self._schedule.repeat):
            self._done = True
            return False
        self._resources = self._schedule.rungs(len(candidates))
        self._rung = 0
        self._set_rung(candidates)
        return True

    def _set_rung(self, candidates: list[dict[str, Any]]) -> None:
        self._rung_candidates = candidates
        self._next = 0
        self._scores: dict[tuple, float | None] = {}

    def _fidelity(self) -> Fidelity:
        return Fidelity(self._bracket, self._rung, len(self._resources), self._resources[self._rung],
                        self._schedule.resource_name)

    def _advance(self) -> bool:
        """The rung is complete: promote its best candidates, or start the next bracket."""
        self._observed.setdefault(self._resources[self._rung], []).extend(  # what the GP may learn from
            (c, self._scores.get(_key(c))) for c in self._rung_candidates)
        if self._rung < len(self._resources) - 1:
            ranked = sorted(
                (i for i, c in enumerate(self._rung_candidates) if self._scores.get(_key(c)) is not None),
                key=lambda i: -self._scores[_key(self._rung_candidates[i])],  # stable: ties keep candidate order
            )
            keep = math.ceil(len(self._rung_candidates) / self._schedule.factor)
            survivors = [self._rung_candidates[i] for i in ranked[:keep]]
            if survivors:
                self._rung += 1
                self._set_rung(survivors)
                return True
        return self._start_bracket()

    # --- ask / tell ------------------------------------------------------------------------------
    def ask(self, n: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while len(out) < n and not self._done:
            if self._next < len(self._rung_candidates):
                candidate = self._rung_candidates[self._next]
                self._next += 1
                key = _key(candidate)
                restored = (self._bracket, self._rung, key)
                if restored in self._restored:  # resumed: its score is known
                    self._scores[key] = self._restored.pop(restored)
                    continue
                self._pending[key] = self._fidelity()
                out.append(dict(candidate))
                continue
            if out or self._pending:
                break  # the next rung needs this rung's scores
            self._advance()
        return out

    def fidelity(self, params: Mapping[str, Any]) -> Fidelity | None:
        return self._pending.get(_key(params))

    def tell(self, params: Mapping[str, Any], score: float | None) -> None:
        key = _key(params)
        if self._pending.pop(key, None) is not None:
            self._scores[key] = score

    def restore(self, fidelity: Fidelity | None, params: Mapping[str, Any], score: float | None) -> None:
        """A trial read back on resume: skipped (with its score) when its rung comes up."""
        if fidelity is not None:
            self._restored[(fidelity.bracket, fidelity.rung, _key(params))] = score
