"""Training pipelines: stages run in order, each execution one MLflow run; registry and champion.

    pipeline = TrainingPipeline("nba_rookies", config={"n_estimators": 100}, mlflow_tracker=tracker)
    pipeline.add_stage(PipelineStage.DATA_PREPARATION, prepare)      # returns prepared_data
    pipeline.add_stage(PipelineStage.MODEL_TRAINING, train)          # train(prepared_data, config)
    pipeline.add_stage(PipelineStage.MODEL_EVALUATION, evaluate, retries=1)  # dict of numbers = metrics
    run = pipeline.execute(data=df)
    run.status, run.metrics, run.stages["model_training"].duration_seconds
    pipeline.compare_runs([a.run_id, b.run_id])["metrics"]["accuracy"]["diff"]

For declarative use (the MCP layer): ``run_standard_pipeline(StandardPipelineRequest(...), ...)``
(``plan_pipeline`` alone checks a request against the data without running anything),
``promote_model``, ``predict``, ``predict_proba`` and ``prediction_warnings``. See docs/pipeline.md.
"""

from mcp_server.training_pipeline._from_search import SEARCH_REQUEST_FILE, request_from_search
from mcp_server.training_pipeline._noise import BaselineScore
from mcp_server.training_pipeline._evaluation import (
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    default_primary_metric,
    evaluate_model,
)
from mcp_server.training_pipeline._mlflow_record import MODEL_URI_TAG, NAME_TAG
from mcp_server.training_pipeline._pipeline import StageCallback, TrainingPipeline
from mcp_server.training_pipeline._registry import (
    CHAMPION_ALIAS,
    MAX_PREDICT_ROWS,
    PIPELINE_PRIMARY_METRIC_TAG,
    PRIMARY_METRIC_TAG,
    PromotionDecision,
    decide_promotion,
    load_registered_model,
    predict,
    prediction_warnings,
    predict_proba,
    promote_model,
    registration_metric,
)
from mcp_server.training_pipeline._standard import (
    PipelinePlan,
    PipelineResult,
    StandardPipelineRequest,
    plan_pipeline,
    run_standard_pipeline,
)
from mcp_server.training_pipeline._types import (
    STAGE_OUTPUT_NAMES,
    PipelineRun,
    PipelineStage,
    PipelineStatus,
    StageResult,
    StageStatus,
)

__all__ = [
    "CHAMPION_ALIAS",
    "CLASSIFICATION_METRICS",
    "MAX_PREDICT_ROWS",
    "MODEL_URI_TAG",
    "NAME_TAG",
    "PIPELINE_PRIMARY_METRIC_TAG",
    "PRIMARY_METRIC_TAG",
    "registration_metric",
    "REGRESSION_METRICS",
    "STAGE_OUTPUT_NAMES",
    "PipelinePlan",
    "PipelineResult",
    "BaselineScore",
    "request_from_search",
    "SEARCH_REQUEST_FILE",
    "PipelineRun",
    "PipelineStage",
    "PipelineStatus",
    "PromotionDecision",
    "StageCallback",
    "StageResult",
    "StageStatus",
    "StandardPipelineRequest",
    "TrainingPipeline",
    "decide_promotion",
    "default_primary_metric",
    "evaluate_model",
    "load_registered_model",
    "plan_pipeline",
    "predict",
    "prediction_warnings",
    "predict_proba",
    "promote_model",
    "run_standard_pipeline",
]
