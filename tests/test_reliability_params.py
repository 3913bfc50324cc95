"""Round 3, every work-sizing parameter bounded (docs/reliability.md, "Round 3: parsing and parameters").

Probes that broke: ``params: {"n_jobs": 100000}`` started 14,661 threads in the server's process
tree; ``"n_estimators": "1000000000"`` (a string) went past the bound and failed inside
scikit-learn. Now a thread parameter (any estimator, any of the names in ``THREAD_PARAMS``) must be
an integer from 1 to the threads one fit may use (cores / max_concurrent_jobs), and a number sent
as a string is refused, both by the plan, before any job is queued.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest
from mcp import Client

from mcp_server.error_handling import InvalidRequestError, ResourceLimitError
from mcp_server.estimators import REGISTRY, THREAD_PARAMS, check_params, check_space_limits
from mcp_server.hyperparameter_tuning import HyperparameterTuner
from tools.server import build_server
from tests.support import isolated_settings, payload, shared_template

# cores=4, 2 concurrent jobs: 2 threads per fit, whatever machine runs the tests.
THREADS_RULE = "must be an integer from 1 to 2"
STRING_RULE = "must be a number, not a string"


@pytest.fixture(scope="module")
def params_server(tmp_path_factory):
    settings = isolated_settings(tmp_path_factory.mktemp("home"), shared_template(tmp_path_factory),
                                 cores=4, max_concurrent_jobs=2)
    server = build_server(settings)
    yield server
    server.state.close()


def _pipeline(estimator: str, params: dict) -> tuple[str, dict]:
    return "run_pipeline", {"request": {"dataset": "breast_cancer", "estimator": estimator, "params": params},
                            "wait_seconds": 0}


def _tune(estimator: str, space: dict) -> tuple[str, dict]:
    return "tune_hyperparameters", {"request": {"dataset": "breast_cancer", "estimator": estimator, "space": space,
                                                "max_trials": 2}, "wait_seconds": 0}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (_pipeline("random_forest", {"n_jobs": 100000}), f"n_jobs of random_forest {THREADS_RULE}"),
        (_pipeline("lightgbm", {"n_jobs": 100000}), f"n_jobs of lightgbm {THREADS_RULE}"),
        (_pipeline("knn", {"n_jobs": -1}), f"n_jobs of knn {THREADS_RULE}"),
        (_pipeline("lightgbm", {"num_threads": 100000}), "unknown hyperparameter 'num_threads' for lightgbm"),
        (_pipeline("random_forest", {"n_estimators": "1000000000"}), f"'n_estimators' of random_forest {STRING_RULE}"),
        (_pipeline("gradient_boosting", {"learning_rate": "0.1"}), f"'learning_rate' of gradient_boosting {STRING_RULE}"),
        (_tune("random_forest", {"n_jobs": {"type": "categorical", "choices": [1, 100000]}}),
         f"n_jobs of random_forest {THREADS_RULE}"),
        (_tune("extra_trees", {"n_jobs": {"type": "int", "low": -1, "high": 2}}), f"n_jobs of extra_trees {THREADS_RULE}"),
        (_tune("gradient_boosting", {"n_estimators": {"type": "categorical", "choices": [10, "1000000000"]}}),
         f"'n_estimators' of gradient_boosting {STRING_RULE}"),
    ],
    ids=["rf-n_jobs", "lgbm-n_jobs", "knn-minus-1", "lgbm-alias", "string-n_estimators", "string-learning_rate",
         "tune-choice", "tune-range-low", "tune-string-choice"],
)
async def test_the_plan_refuses_threads_and_numeric_strings_before_any_job(params_server, call, expected):
    tool, arguments = call
    threads_before = threading.active_count()
    async with Client(params_server) as client:
        started = time.perf_counter()
        result = await client.call_tool(tool, arguments)
        elapsed = time.perf_counter() - started
        jobs = payload(await client.call_tool("list_jobs", {}))
    text = result.content[0].text
    assert result.is_error and expected in text, text
    assert jobs["jobs"] == []  # refused by the plan: nothing queued, no thread started
    assert threading.active_count() <= threads_before + 2
    assert elapsed < 5


@pytest.mark.anyio
async def test_threads_within_the_share_are_accepted(params_server):
    async with Client(params_server) as client:
        result = await client.call_tool(*_pipeline("random_forest", {"n_jobs": 2, "n_estimators": 5}))
        assert not result.is_error, result.content[0].text
        job = payload(result)
        for _ in range(6):  # a loaded 2-core machine can take minutes; the state is what is judged
            done = payload(await client.call_tool("get_job", {"job_id": job["job_id"], "wait_seconds": 50}))
            if done["done"]:
                break
    assert done["state"] == "SUCCEEDED", done


# --- the library --------------------------------------------------------------------------------

ESTIMATOR_THREAD_PARAMS = [
    (name, param) for name, spec in sorted(REGISTRY.items()) for param in sorted(THREAD_PARAMS)
    for task in spec.tasks[:1] if param in spec.valid_params(task)
]


def test_every_estimator_with_a_thread_parameter_is_covered():
    # scikit-learn's forests, k-NN and linear models, LightGBM: each names n_jobs.
    assert {name for name, _ in ESTIMATOR_THREAD_PARAMS} >= {"random_forest", "extra_trees", "lightgbm", "knn"}


@pytest.mark.parametrize(("estimator", "param"), ESTIMATOR_THREAD_PARAMS)
@pytest.mark.parametrize("value", [100000, 3, 0, -1, 2.0, True, "2"])
def test_every_thread_parameter_is_bounded(estimator, param, value):
    task = REGISTRY[estimator].tasks[0]
    error = InvalidRequestError if isinstance(value, str) else ResourceLimitError
    with pytest.raises(error, match=f"{param}'? of {estimator} must be"):
        check_params(estimator, task, {param: value}, max_threads=2)
    with pytest.raises(error, match=f"{param}'? of {estimator} must be"):
        check_space_limits(estimator, {param: {"type": "categorical", "choices": [1, value]}}, max_threads=2)
    assert check_params(estimator, task, {param: 2}, max_threads=2) == {param: 2}
    assert check_params(estimator, task, {param: None}, max_threads=2) == {param: None}


@pytest.mark.parametrize("param", sorted(THREAD_PARAMS - {"n_jobs"}))
def test_thread_aliases_are_refused_by_name_where_the_estimator_does_not_take_them(param):
    with pytest.raises(InvalidRequestError, match=f"unknown hyperparameter '{param}' for lightgbm"):
        check_params("lightgbm", "classification", {param: 1})


@pytest.mark.parametrize(("estimator", "param"), [(name, param) for name, spec in sorted(REGISTRY.items())
                                                 for param in sorted(spec.limits)])
def test_every_bounded_parameter_refuses_a_numeric_string(estimator, param):
    task = REGISTRY[estimator].tasks[0]
    if param not in REGISTRY[estimator].valid_params(task):
        pytest.skip(f"{param} is not a parameter of {estimator} ({task})")
    with pytest.raises(InvalidRequestError, match=f"'{param}' of {estimator} must be a number, not a string"):
        check_params(estimator, task, {param: "1000000000"})
    with pytest.raises(InvalidRequestError, match=f"{param} of {estimator} must be a number"):
        check_params(estimator, task, {param: [5]})


def test_the_tuner_refuses_a_thread_space_past_the_share_before_fitting():
    X = pd.DataFrame(np.random.default_rng(0).normal(size=(60, 3)), columns=list("abc"))
    y = pd.Series((X["a"] > 0).astype(int))
    with pytest.raises(ResourceLimitError, match="n_jobs of random_forest must be an integer from 1 to"):
        HyperparameterTuner(enable_mlflow=False).tune(
            X=X, y=y, estimator="random_forest", space={"n_jobs": {"type": "categorical", "choices": [100000]}},
            strategy="grid", cv_folds=2)
