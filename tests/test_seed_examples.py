"""The seed document's code examples, each run as written: tracker quick start, the tuner's grid /
random / Bayesian calls with get_tuning_summary / get_top_results, the pipeline example with
prepare_data / train_model / evaluate_model, the error-handling and RBAC decorators, monitoring.

Only the data (the rookies file, or its synthetic stand-in in a bare clone) and the CV data
arguments (``cv_folds``, ``X``, ``y``) are supplied; the bodies are the seed's. Grid and iteration
sizes are kept small so the suite stays fast.
"""

from __future__ import annotations

import pandas as pd
import pytest

from mcp_server.training_pipeline import PipelineStatus
from tests.support import data_folder


@pytest.fixture(scope="module")
def nba_data() -> pd.DataFrame:
    return pd.read_csv(data_folder() / "nba_logreg.csv")


@pytest.fixture
def tracker():
    from mcp_server.mlflow_integration import get_mlflow_tracker

    return get_mlflow_tracker(experiment_name="nba_model_training", mock_mode=True)


# --- tracker quick start -------------------------------------------------------------------------
def test_tracker_quick_start(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04N.")  # the artifact the example logs

    from mcp_server.mlflow_integration import get_mlflow_tracker

    tracker = get_mlflow_tracker(experiment_name="nba_model_training", mock_mode=True)
    with tracker.start_run("baseline_model") as run_id:
        tracker.log_params({"n_estimators": 100, "max_depth": 10, "learning_rate": 0.01})
        tracker.log_metric("accuracy", 0.92)
        tracker.log_metric("f1_score", 0.89)
        tracker.log_artifact("model.pkl")

    assert tracker.get_run(run_id).metrics == {"accuracy": 0.92, "f1_score": 0.89}


# --- hyperparameter tuning ------------------------------------------------------------------------
def test_tuner_grid_random_bayesian_summary_and_top_results(nba_data, tracker):
    from scipy.stats import randint
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score

    from mcp_server.hyperparameter_tuning import HyperparameterTuner

    X = nba_data.drop(columns=["Name", "TARGET_5Yrs"]).fillna(0)
    y = nba_data["TARGET_5Yrs"]

    tuner = HyperparameterTuner(
        mlflow_tracker=tracker, enable_mlflow=True, enable_early_stopping=True, early_stopping_patience=5
    )

    def train_fn(params, X_train, y_train):
        model = RandomForestClassifier(**params, random_state=42)
        model.fit(X_train, y_train)
        return model

    def eval_fn(model, X_val, y_val):
        return accuracy_score(y_val, model.predict(X_val))

    # Grid search
    best_grid = tuner.grid_search(
        param_grid={"n_estimators": [10, 20], "max_depth": [3, 5]},
        train_fn=train_fn, eval_fn=eval_fn, maximize=True,
        cv_folds=3, X=X, y=y,
    )
    assert set(best_grid["params"]) == {"n_estimators", "max_depth"} and 0.5 < best_grid["score"] <= 1
    assert tuner.get_tuning_summary()["total_trials"] == 4

    # Random search
    best_random = tuner.random_search(
        param_distributions={"n_estimators": randint(10, 30), "max_depth": [3, 5, None]},
        n_iter=4, train_fn=train_fn, eval_fn=eval_fn,
        cv_folds=3, X=X, y=y,
    )
    assert 0.5 < best_random["score"] <= 1

    # Bayesian optimization
    best_bayes = tuner.bayesian_optimization(
        param_space={"n_estimators": (10, 30), "max_depth": (2, 8)},
        train_fn=train_fn, eval_fn=eval_fn, n_calls=5,
        cv_folds=3, X=X, y=y,
    )
    assert 0.5 < best_bayes["score"] <= 1

    summary = tuner.get_tuning_summary()
    top = tuner.get_top_results(3)
    assert summary["total_trials"] == 5 and summary["best_score"] == pytest.approx(best_bayes["score"])
    assert len(top) == 3 and top[0]["score"] == pytest.approx(best_bayes["score"])
    assert [t["score"] for t in top] == sorted((t["score"] for t in top), reverse=True)


# --- training pipeline ----------------------------------------------------------------------------
def test_pipeline_example(nba_data, tracker):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    from mcp_server.training_pipeline import PipelineStage, TrainingPipeline

    def prepare_data(data, config):
        X = data.drop(['Name', 'TARGET_5Yrs'], axis=1).fillna(0)
        y = data['TARGET_5Yrs']
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=config.get('test_size', 0.2), random_state=42
        )
        return {'X_train': X_train, 'X_test': X_test, 'y_train': y_train, 'y_test': y_test}

    def train_model(prepared_data, config):
        model = RandomForestClassifier(n_estimators=config.get('n_estimators', 100), random_state=42)
        model.fit(prepared_data['X_train'], prepared_data['y_train'])
        return {'model': model, 'feature_names': list(prepared_data['X_train'].columns)}

    def evaluate_model(trained_model, prepared_data, config):
        model = trained_model['model']
        y_pred = model.predict(prepared_data['X_test'])
        y_proba = model.predict_proba(prepared_data['X_test'])[:, 1]
        return {
            'accuracy': accuracy_score(prepared_data['y_test'], y_pred),
            'f1': f1_score(prepared_data['y_test'], y_pred),
            'roc_auc': roc_auc_score(prepared_data['y_test'], y_proba),
        }

    pipeline = TrainingPipeline(
        name="nba_training_pipeline",
        config={'test_size': 0.2, 'n_estimators': 50},
        mlflow_tracker=tracker,
        enable_mlflow=True,
    )
    pipeline.add_stage(PipelineStage.DATA_PREPARATION, prepare_data)
    pipeline.add_stage(PipelineStage.MODEL_TRAINING, train_model)
    pipeline.add_stage(PipelineStage.MODEL_EVALUATION, evaluate_model)

    result = pipeline.execute(data=nba_data)

    assert result.status is PipelineStatus.COMPLETED, result.error
    assert set(result.metrics) == {"accuracy", "f1", "roc_auc"}
    assert 0.5 < result.metrics["roc_auc"] <= 1
    assert result.model_uri  # the fitted estimator found in the training output was logged


def test_pipeline_stages_may_ask_for_the_fitted_estimator_as_model(nba_data, tracker):
    """The other style: ``model`` is the estimator found in whatever the training stage returned."""
    from sklearn.tree import DecisionTreeClassifier

    from mcp_server.training_pipeline import PipelineStage, TrainingPipeline

    def train(data):
        X, y = data.drop(columns=["Name", "TARGET_5Yrs"]).fillna(0), data["TARGET_5Yrs"]
        return {"model": DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y), "rows": len(X)}

    def evaluate(model, trained_model, data):
        assert trained_model["model"] is model and trained_model["rows"] == len(data)
        X, y = data.drop(columns=["Name", "TARGET_5Yrs"]).fillna(0), data["TARGET_5Yrs"]
        return {"accuracy": model.score(X, y)}

    pipeline = TrainingPipeline("both_styles", mlflow_tracker=tracker, enable_mlflow=False)
    pipeline.add_stage(PipelineStage.MODEL_TRAINING, train)
    pipeline.add_stage(PipelineStage.MODEL_EVALUATION, evaluate)
    result = pipeline.execute(data=nba_data)
    assert result.status is PipelineStatus.COMPLETED, result.error
    assert 0.5 < result.metrics["accuracy"] <= 1


# --- error handling, RBAC, monitoring -------------------------------------------------------------
def test_error_handling_decorator():
    from mcp_server.error_handling import handle_errors

    @handle_errors(reraise=True, notify=True)
    def train_model_with_error_handling():
        ...

    assert train_model_with_error_handling() is None


def test_rbac_decorator(tmp_path):
    from mcp_server.error_handling import PermissionDeniedError
    from mcp_server.rbac import Permission, configure_rbac, require_permission, reset_rbac
    from mcp_server.settings import Settings

    configure_rbac(Settings(data_home=tmp_path, user_roles={"alice": ["developer"], "victor": ["viewer"]}))
    try:
        @require_permission(Permission.WRITE)
        def deploy_model(model_id: str, user_id: str):
            ...

        assert deploy_model("model-1", "alice") is None
        with pytest.raises(PermissionDeniedError):
            deploy_model("model-1", user_id="victor")
    finally:
        reset_rbac()


def test_monitoring():
    from mcp_server.monitoring import track_metric

    with track_metric("model_training"):
        ...

    from mcp_server.monitoring import snapshot

    assert snapshot()["metrics"]["model_training"]["calls"] >= 1
