"""The Bayesian searcher's GP (``_gp.FastGP``) predicts what scikit-optimize's GP predicts."""

from __future__ import annotations

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
