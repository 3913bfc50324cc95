"""Search strategies: small classes behind ask / tell. They never fit, split or log.

Scores passed to ``tell`` are "higher is better" (the loop multiplies by the direction's sign);
``None`` means the trial failed.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from mcp_server.error_handling import InvalidRequestError
from mcp_server.hyperparameter_tuning._space import SearchSpace, to_native


STRATEGIES = ("grid", "random", "bayesian", "halving")


def params_key(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Identity of a candidate as MLflow would store it (str of each value), so resumed runs match."""
    return tuple(sorted((k, str(v)) for k, v in params.items()))


class SearchStrategy(Protocol):
    name: str

    def ask(self, n: int) -> list[dict[str, Any]]:
        """Up to n new candidates; an empty list means the strategy is exhausted."""

    def tell(self, params: Mapping[str, Any], score: float | None) -> None:
        """Report a finished candidate (score higher-is-better; None = failed)."""

    # Optional, for multi-fidelity strategies (successive halving): ``fidelity(params)`` gives the
    # bracket / rung / resource of a candidate handed out and not yet told (the loop evaluates it
    # with ``evaluator.at(resource)`` and records them on the trial); ``restore(fidelity, params,
    # score)`` replaces ``tell`` for trials read back on resume; ``max_resource`` marks full-resource
    # trials (the only ones early stopping counts).


class _ListStrategy:
    """A fixed, ordered candidate list (grid, or a seeded random sequence); resumed points are skipped."""

    name = "list"
    # Candidates never depend on scores, so the loop may ask for all of them at once and keep
    # every worker busy (see SearchLoop._run_rolling).
    proposes_ahead = True

    def __init__(self, candidates: list[dict[str, Any]]) -> None:
        self._candidates = [{k: to_native(v) for k, v in c.items()} for c in candidates]
        self._keys = [params_key(c) for c in self._candidates]
        self._asked: Counter = Counter()  # keys handed out so far (tell is O(1), not a scan)
        self._position = 0
        self._skip: Counter = Counter()

    def ask(self, n: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while len(out) < n and self._position < len(self._candidates):
            candidate, key = self._candidates[self._position], self._keys[self._position]
            self._position += 1
            self._asked[key] += 1
            if self._skip[key]:
                self._skip[key] -= 1
                continue
            out.append(dict(candidate))
        return out

    def tell(self, params: Mapping[str, Any], score: float | None) -> None:
        """Nothing to learn; a point told before it was asked (resume) is skipped later."""
        key = params_key(params)
        if not self._asked[key]:
            self._skip[key] += 1


class GridStrategy(_ListStrategy):
    name = "grid"

    def __init__(self, space: SearchSpace, *, max_grid_size: int) -> None:
        from sklearn.model_selection import ParameterGrid

        super().__init__(list(ParameterGrid(space.to_param_grid(max_grid_size=max_grid_size))))


class RandomStrategy(_ListStrategy):
    name = "random"

    def __init__(self, space: SearchSpace, *, n_candidates: int, seed: int) -> None:
        from sklearn.model_selection import ParameterSampler

        with warnings.catch_warnings():
            # A finite space smaller than n_candidates is sampled exhaustively; that is the contract.
            warnings.simplefilter("ignore", UserWarning)
            candidates = list(
                ParameterSampler(space.to_sampler_distributions(), n_iter=n_candidates, random_state=seed)
            )
        super().__init__(candidates)


# Measured on the search-quality tasks over 10 seeds against Optuna's TPE (docs/tuning.md lists every
# variant tried): 2,000 sampled acquisition points were as good as 10,000 and cost a third as much;
# Sobol, Latin-hypercube initial designs and EI alone were not better on both tasks; fitting the GP
# on Yeo-Johnson-warped scores was, on both (20 further seeds; _optimizer.warped). Past STABLE_AFTER trials the
# candidates change (fewer, half near the best points: _optimizer).
ACQ_OPTIMIZER = "sampling"
ACQ_POINTS = 2_000
GP_RESTARTS = 0
ACQ_FUNC = "gp_hedge"
INITIAL_DESIGN = "random"  # skopt's initial_point_generator
MAX_INITIAL_POINTS = 10
# Past this many told points the kernel's hyperparameters are searched again only once the data
# grew by REFIT_GROWTH since the last search (from the default start, never from the last
# optimum); in between the GP reuses them and a refit is one Cholesky factorization, so the cost
# of a long search's proposals stays nearly flat. See docs/tuning.md.
STABLE_AFTER = 50
REFIT_GROWTH = 0.1


class BayesianStrategy:
    """Gaussian-process Bayesian optimization through scikit-optimize's ask/tell Optimizer."""

    name = "bayesian"
    _MAX_DUPLICATE_ROUNDS = 5

    def __init__(self, space: SearchSpace, *, n_candidates: int, seed: int) -> None:
        from skopt.space import Space
        from skopt.utils import cook_estimator

        from mcp_server.hyperparameter_tuning._gp import FastGP  # lazy: importing skopt costs ~2 s
        from mcp_server.hyperparameter_tuning._optimizer import ProposalOptimizer

        self._space = space
        self._names = space.names
        dimensions = space.to_skopt_dimensions()
        self._optimizer = ProposalOptimizer(
            dimensions,
            # The GP's kernel fit without restarts of its hyperparameter search: with the sampled
            # acquisition below they were ~70% of a proposal (docs/tuning.md).
            base_estimator=FastGP(**cook_estimator("GP", space=Space(dimensions), random_state=seed,
                                                   n_restarts_optimizer=GP_RESTARTS).get_params(deep=False)),
            # Only the latest GP is used; skopt would otherwise keep every one (O(trials³) memory).
            model_queue_size=1,
            # Half the trial budget at most; a search bounded only by time (n_candidates 0) gets the most.
            n_initial_points=min(MAX_INITIAL_POINTS, max(1, n_candidates // 2)) if n_candidates > 0
            else MAX_INITIAL_POINTS,
            initial_point_generator=INITIAL_DESIGN,
            # Random initial points: Latin-hypercube and Sobol designs were tried and not kept
            # (docs/tuning.md). Log dimensions are warped: SearchSpace's log=True becomes skopt's
            # log-uniform prior, and the GP works on the normalized log scale.
            random_state=seed,
            acq_func=ACQ_FUNC,
            # The acquisition is maximized over sampled points, without the L-BFGS polish (5 starts
            # x 3 gp_hedge acquisitions, ~57% of a proposal before).
            acq_optimizer=ACQ_OPTIMIZER,
            acq_optimizer_kwargs={"n_points": ACQ_POINTS},
            # Past the point where the kernel is reused, the acquisition's candidates change too.
            local_after=STABLE_AFTER,
        )
        self._kernel = self._optimizer.base_estimator_.kernel  # the default start of every search
        self._searched_at = 0  # told points at the last search of the kernel's hyperparameters
        self._rng = np.random.default_rng(seed)
        self._seen: dict[tuple, float | None] = {}  # key -> score told (None: failed, pending)
        self._worst: float | None = None

    def _to_params(self, x: list[Any]) -> dict[str, Any]:
        return {name: to_native(v) for name, v in zip(self._names, x)}

    def _tell_optimizer(self, params: Mapping[str, Any], score: float) -> None:
        # skopt minimizes.
        self._reuse_kernel(len(self._optimizer.yi) + 1)
        self._optimizer.tell([params[name] for name in self._names], -score)

    def _reuse_kernel(self, n_told: int) -> None:
        """Before the n-th point's refit: search the kernel's hyperparameters, or reuse the last ones."""
        gp, models = self._optimizer.base_estimator_, self._optimizer.models
        if n_told > STABLE_AFTER and n_told < self._searched_at * (1 + REFIT_GROWTH) and models:
            gp.set_params(kernel=models[-1].fitted_kernel(), optimizer=None)
        else:
            gp.set_params(kernel=self._kernel, optimizer="fmin_l_bfgs_b")
            self._searched_at = n_told

    def ask(self, n: int) -> list[dict[str, Any]]:
        size = self._space.size
        out: list[dict[str, Any]] = []
        for _ in range(self._MAX_DUPLICATE_ROUNDS):
            if size is not None and len(self._seen) + len(out) >= size:
                break
            wanted = n - len(out)
            with warnings.catch_warnings():
                # skopt warns when it re-proposes a known point; duplicates are handled below.
                warnings.filterwarnings("ignore", message="The objective has been evaluated", category=UserWarning)
                xs = self._optimizer.ask(n_points=wanted) if wanted > 1 else [self._optimizer.ask()]
            for x in xs:
                params = self._to_params(x)
                key = tuple(params[name] for name in self._names)
                if key in self._seen or any(tuple(p[k] for k in self._names) == key for p in out):
                    # Already evaluated: remind the model of the known score instead of re-running it.
                    known = self._seen.get(key)
                    if known is not None:
                        self._tell_optimizer(params, known)
                    continue
                out.append(params)
            if len(out) >= n:
                break
        if len(out) < n and size is not None:
            out.extend(self._unseen_points(n - len(out), exclude=out))
        for params in out:
            self._seen.setdefault(tuple(params[name] for name in self._names), None)
        return out

    def _unseen_points(self, n: int, *, exclude: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """In a finite space the GP may keep proposing known points: fill with unseen ones (seeded)."""
        from sklearn.model_selection import ParameterGrid

        excluded = set(self._seen) | {tuple(p[k] for k in self._names) for p in exclude}
        grid = ParameterGrid({d.name: d.values() for d in self._space})
        unseen = [p for p in grid if tuple(p[k] for k in self._names) not in excluded]
        if not unseen:
            return []
        picks = self._rng.permutation(len(unseen))[:n]
        return [{k: to_native(v) for k, v in unseen[i].items()} for i in sorted(picks)]

    def tell(self, params: Mapping[str, Any], score: float | None) -> None:
        key = tuple(params[name] for name in self._names)
        if score is None:
            # A failed point is bad, but "inf" would wreck the GP's scale: use the worst seen so far.
            self._seen[key] = None
            if self._worst is not None:
                self._tell_optimizer(params, self._worst)
            return
        self._seen[key] = score
        self._worst = score if self._worst is None else min(self._worst, score)
        self._tell_optimizer(params, score)


def check_bayesian_space(space: SearchSpace) -> None:
    from mcp_server.hyperparameter_tuning._space import DistributionDimension

    for dim in space:
        if isinstance(dim, DistributionDimension):
            raise InvalidRequestError(
                f"bayesian search cannot use the scipy distribution given for {dim.name!r}; "
                "give (low, high[, 'log-uniform']), a list, or a typed dict"
            )
