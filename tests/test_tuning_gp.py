"""The Bayesian searcher's GP (``_gp.FastGP``) predicts what scikit-optimize's GP predicts."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("skopt")

from skopt.learning import GaussianProcessRegressor  # noqa: E402
from skopt.space import Space  # noqa: E402
from skopt.utils import cook_estimator  # noqa: E402

from mcp_server.hyperparameter_tuning._gp import FastGP  # noqa: E402


def _pair(n_train: int = 60, dims: int = 4):
    rng = np.random.default_rng(0)
    X = rng.random((n_train, dims))
    y = np.sin(3 * X[:, 0]) + X[:, 1] ** 2 + 0.05 * rng.normal(size=n_train)
    params = cook_estimator("GP", space=Space([(0.0, 1.0)] * dims), random_state=0).get_params(deep=False)
    return GaussianProcessRegressor(**params).fit(X, y), FastGP(**params).fit(X, y), rng


def test_mean_and_std_match_scikit_optimize():
    reference, fast, rng = _pair()
    query = rng.random((500, 4))
    ref_mean, ref_std = reference.predict(query, return_std=True)
    mean, std = fast.predict(query, return_std=True)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(std, ref_std, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(fast.predict(query), reference.predict(query), rtol=1e-8, atol=1e-10)


def test_repeated_query_is_served_from_cache_and_a_new_one_is_not():
    reference, fast, rng = _pair()
    query = rng.random((200, 4))
    first = fast.predict(query, return_std=True)
    assert fast.predict(query.copy(), return_std=True)[1] is first[1]
    other = rng.random((200, 4))
    np.testing.assert_allclose(fast.predict(other, return_std=True)[1], reference.predict(other, return_std=True)[1],
                               rtol=1e-6, atol=1e-8)
    # A refit forgets the cache: the same query now reflects the new training data.
    fast.fit(rng.random((30, 4)), rng.random(30))
    assert fast.predict(query, return_std=True)[1] is not first[1]


def test_gradients_still_come_from_scikit_optimize():
    reference, fast, rng = _pair()
    point = rng.random((1, 4))
    for got, want in zip(fast.predict(point, return_std=True, return_mean_grad=True, return_std_grad=True),
                         reference.predict(point, return_std=True, return_mean_grad=True, return_std_grad=True)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-10)


def test_refit_with_the_fitted_kernel_and_no_optimizer_reproduces_the_fit():
    _, fast, rng = _pair()
    again = FastGP(**{**fast.get_params(deep=False), "kernel": fast.fitted_kernel(), "optimizer": None})
    again.fit(fast.X_train_, fast.y_train_ * fast.y_train_std_ + fast.y_train_mean_)
    query = rng.random((100, 4))
    for got, want in zip(again.predict(query, return_std=True), fast.predict(query, return_std=True)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


def test_bayesian_search_reuses_kernel_hyperparameters_once_stable_and_searches_as_data_grows():
    from mcp_server.hyperparameter_tuning._space import SearchSpace
    from mcp_server.hyperparameter_tuning._strategies import REFIT_GROWTH, STABLE_AFTER, BayesianStrategy

    space = SearchSpace({"x": {"type": "float", "low": 0.0, "high": 1.0},
                         "y": {"type": "float", "low": 0.0, "high": 1.0}})
    strategy = BayesianStrategy(space, n_candidates=0, seed=0)
    optimizer = strategy._optimizer
    used = {}
    last = STABLE_AFTER + 30
    for n in range(1, last + 1):
        params = strategy.ask(1)[0]
        strategy.tell(params, -((params["x"] - 0.3) ** 2) - (params["y"] - 0.6) ** 2)
        if optimizer.models:
            used[n] = (optimizer.models[-1].optimizer, optimizer.models[-1].kernel_.theta)
    assert all(used[n][0] == "fmin_l_bfgs_b" for n in used if n <= STABLE_AFTER)
    searched = [n for n in range(STABLE_AFTER + 1, last + 1) if used[n][0] == "fmin_l_bfgs_b"]
    assert searched  # searched again as the data grew, each time after ≥ 10% more points
    previous = STABLE_AFTER
    for n in searched:
        assert n >= previous * (1 + REFIT_GROWTH)
        previous = n
    for n in range(STABLE_AFTER + 1, last + 1):
        if used[n][0] is None:
            np.testing.assert_allclose(used[n][1], used[n - 1][1])
    assert len(searched) < (last - STABLE_AFTER) / 3


def test_kernel_search_on_many_points_uses_a_subsample_and_then_factors_them_all():
    from mcp_server.hyperparameter_tuning._gp import SEARCH_POINTS

    rng = np.random.default_rng(1)
    X = rng.random((SEARCH_POINTS + 100, 3))
    y = np.sin(4 * X[:, 0]) + X[:, 2] + 0.05 * rng.normal(size=len(X))
    params = cook_estimator("GP", space=Space([(0.0, 1.0)] * 3), random_state=0).get_params(deep=False)
    fast = FastGP(**params).fit(X, y)
    assert fast.X_train_.shape == X.shape and fast.L_.shape == (len(X), len(X))
    assert fast.optimizer == params["optimizer"] and fast.kernel is not fast.kernel_  # search settings kept
    # The hyperparameters are a subsample's; with them fixed, a fit on all points predicts the same.
    again = FastGP(**{**params, "kernel": fast.fitted_kernel(), "optimizer": None}).fit(X, y)
    query = rng.random((50, 3))
    for got, want in zip(fast.predict(query, return_std=True), again.predict(query, return_std=True)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    # ...and they describe the data about as well as a search on all points does
    # (log marginal likelihood of all points: at most 0.01 nats per point below the full search's).
    full = GaussianProcessRegressor(**params).fit(X, y)
    assert full.log_marginal_likelihood_value_ - fast.log_marginal_likelihood_value_ < 0.01 * len(X)


MIXED_SPACE = {
    "lr": {"type": "float", "low": 1e-3, "high": 1.0, "log": True},
    "leaves": {"type": "int", "low": 4, "high": 64},
    "kind": {"type": "categorical", "choices": ["a", "b", "c"]},
}


def _objective(params):
    return -(np.log10(params["lr"]) + 1.5) ** 2 - ((params["leaves"] - 20) / 30) ** 2 - 0.3 * (params["kind"] != "b")


def _run(strategy, n):
    asked = []
    for _ in range(n):
        params = strategy.ask(1)[0]
        strategy.tell(params, _objective(params))
        asked.append(params)
    return asked


def test_proposals_up_to_the_long_search_point_are_scikit_optimize_s_own_on_the_same_scores(monkeypatch):
    """Without the output warping, the candidates, acquisition and draws are skopt's exactly."""
    from skopt import Optimizer

    from mcp_server.hyperparameter_tuning import _optimizer
    from mcp_server.hyperparameter_tuning._space import SearchSpace
    from mcp_server.hyperparameter_tuning._strategies import STABLE_AFTER, BayesianStrategy

    ours = BayesianStrategy(SearchSpace(MIXED_SPACE), n_candidates=0, seed=3)
    plain = BayesianStrategy(SearchSpace(MIXED_SPACE), n_candidates=0, seed=3)
    optimizer = ours._optimizer
    plain._optimizer = Optimizer(optimizer.space.dimensions, base_estimator=optimizer.base_estimator_,
                                 n_initial_points=optimizer.n_initial_points_, acq_func=optimizer.acq_func,
                                 acq_optimizer="sampling", acq_optimizer_kwargs=optimizer.acq_optimizer_kwargs,
                                 model_queue_size=1, random_state=3)
    plain._kernel = ours._kernel
    monkeypatch.setattr(_optimizer, "warped", lambda scores: np.asarray(scores, dtype=float))
    assert _run(ours, STABLE_AFTER) == _run(plain, STABLE_AFTER)


@pytest.mark.parametrize("past_long_search_point", [False, True])
def test_the_gp_is_fit_on_warped_scores_before_and_after_the_long_search_point(past_long_search_point):
    from mcp_server.hyperparameter_tuning._optimizer import warped
    from mcp_server.hyperparameter_tuning._space import SearchSpace
    from mcp_server.hyperparameter_tuning._strategies import STABLE_AFTER, BayesianStrategy

    strategy = BayesianStrategy(SearchSpace(MIXED_SPACE), n_candidates=0, seed=1)
    _run(strategy, STABLE_AFTER + 5 if past_long_search_point else 12)
    optimizer = strategy._optimizer
    model = optimizer.models[-1]
    expected = warped(optimizer.yi)
    assert not np.allclose(expected, (np.asarray(optimizer.yi) - np.mean(optimizer.yi)) / np.std(optimizer.yi))
    # skopt's GP standardizes what it is fit on; the warped scores are already standardized.
    np.testing.assert_allclose(model.y_train_ * model.y_train_std_ + model.y_train_mean_, expected, atol=1e-8)


def test_warping_keeps_the_order_and_pulls_in_a_bad_tail():
    from scipy.stats import skew

    from mcp_server.hyperparameter_tuning._optimizer import warped

    # Minimized losses: a crowd of good configurations and a few far worse (skopt minimizes -score).
    losses = np.concatenate([np.linspace(-0.96, -0.93, 25), [-0.80, -0.60, -0.30, 0.10]])
    out = warped(losses)
    assert np.all(np.isfinite(out)) and np.array_equal(np.argsort(out), np.argsort(losses))
    assert abs(skew(out)) < 0.7 * abs(skew(losses))
    # The good crowd spans more of the scale than before the warp.
    def crowd_share(y):
        return np.ptp(y[:25]) / np.ptp(y)
    assert crowd_share(out) > 2 * crowd_share(losses)
    # Too few distinct scores to fit a transform: unchanged.
    np.testing.assert_array_equal(warped([0.5, 0.5, 0.7]), [0.5, 0.5, 0.7])


def test_long_search_candidates_are_valid_and_half_of_them_near_the_best_points():
    from mcp_server.hyperparameter_tuning._optimizer import LONG_SEARCH_POINTS, TOP
    from mcp_server.hyperparameter_tuning._space import SearchSpace
    from mcp_server.hyperparameter_tuning._strategies import STABLE_AFTER, BayesianStrategy

    strategy = BayesianStrategy(SearchSpace(MIXED_SPACE), n_candidates=0, seed=0)
    asked = _run(strategy, STABLE_AFTER + 10)
    optimizer = strategy._optimizer
    assert len(optimizer.models) == 1
    candidates = optimizer._candidates()
    assert candidates.shape == (LONG_SEARCH_POINTS, optimizer.space.transformed_n_dims)
    points = optimizer.space.inverse_transform(candidates)
    assert all(p in optimizer.space for p in points)
    kind = strategy._names.index("kind")
    assert {p[kind] for p in points} == {"a", "b", "c"}
    best = optimizer.space.transform([optimizer.Xi[i] for i in np.argsort(optimizer.yi)[:TOP]])

    def distance_to_best(X):
        return np.min(np.linalg.norm(X[:, None, :] - best[None, :, :], axis=2), axis=1)

    uniform, near = np.split(candidates, 2)
    assert np.median(distance_to_best(near)) < 0.5 * np.median(distance_to_best(uniform))
    # The proposals themselves are new points of the space, and the search keeps improving.
    assert len({tuple(p.values()) for p in asked}) == len(asked)
    assert max(map(_objective, asked[STABLE_AFTER:])) >= max(map(_objective, asked[:STABLE_AFTER])) - 0.05


def test_parallel_batches_in_a_long_search_use_the_same_optimizer():
    from mcp_server.hyperparameter_tuning._optimizer import ProposalOptimizer
    from mcp_server.hyperparameter_tuning._space import SearchSpace
    from mcp_server.hyperparameter_tuning._strategies import STABLE_AFTER, BayesianStrategy

    strategy = BayesianStrategy(SearchSpace(MIXED_SPACE), n_candidates=0, seed=0)
    _run(strategy, STABLE_AFTER + 2)
    assert type(strategy._optimizer.copy(random_state=0)) is ProposalOptimizer
    batch = strategy.ask(4)
    assert len(batch) == 4 and len({tuple(p.values()) for p in batch}) == 4


def test_an_already_evaluated_proposal_is_replaced_as_scikit_optimize_does():
    from mcp_server.hyperparameter_tuning._space import SearchSpace
    from mcp_server.hyperparameter_tuning._strategies import STABLE_AFTER, BayesianStrategy

    strategy = BayesianStrategy(SearchSpace(MIXED_SPACE), n_candidates=0, seed=0)
    _run(strategy, STABLE_AFTER + 2)
    optimizer = strategy._optimizer
    optimizer._next_x = list(optimizer.Xi[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # skopt warns when it falls back to a random point
        assert optimizer.ask() not in optimizer.Xi
