"""The AutoML baselines of ``benchmarks.automl``, run in their own virtual environment.

    .venv-automl/bin/python benchmarks/automl_baselines.py JOB.json      # writes JOB.out.json
    python benchmarks/automl_baselines.py --requirements                  # the `automl` extra, one per line

Why a separate environment: AutoGluon 1.6 pins pandas < 2.4 and the project's test environment has
pandas 3. So FLAML and AutoGluon live in ``.venv-automl`` (``make bench-automl`` creates it from the
``automl`` extra of pyproject.toml) and this file runs there as a plain script: it imports nothing
from the project, only the standard library, pandas and the system it runs. The benchmark (in the
project's own venv, where the product runs) writes the training and test rows as parquet plus a
JSON job, starts one process per fit, and scores the predictions it gets back itself, so every
system is scored by the same code on the same rows.

The job: ``{"system": "flaml" | "autogluon", "train": path, "test": path, "target": column,
"task": "classification" | "regression", "budget": seconds, "seed": int, "group_column": column |
null, "use_groups": bool, "workdir": path}``. The group column (in the train file, never a
feature) is given to FLAML as its group k-fold (``split_type="group"``) when ``use_groups``, as
the product gets its group split; AutoGluon's ``medium_quality`` preset does not bag, and its
``groups`` only applies to bagged folds, so it gets none. The answer: predictions for the test
rows (probability of the positive class, or the predicted value), the fit's wall time, and what
the system chose.

Every system runs single-threaded: the parent sets ``OMP_NUM_THREADS`` & co. to 1 before this
process starts, FLAML gets ``n_jobs=1`` and AutoGluon ``num_cpus=1, num_gpus=0``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

EXTRA = "automl"
# AutoGluon's neural networks are left out (they would bring torch); they are not installed either.
AUTOGLUON_EXCLUDED = ["NN_TORCH", "FASTAI"]
AUTOGLUON_PRESETS = "medium_quality"
VERSIONED = ("flaml", "autogluon.tabular", "lightgbm", "xgboost", "catboost", "scikit-learn", "pandas", "numpy")


def requirements(pyproject: Path = Path(__file__).resolve().parents[1] / "pyproject.toml") -> list[str]:
    """The ``automl`` extra of pyproject.toml: what ``.venv-automl`` installs (one source of truth)."""
    import tomllib

    with open(pyproject, "rb") as handle:
        return list(tomllib.load(handle)["project"]["optional-dependencies"][EXTRA])


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd

    train = pd.read_parquet(job["train"])
    test = pd.read_parquet(job["test"])
    target, group_column = job["target"], job.get("group_column")
    y = train.pop(target)
    groups = train.pop(group_column).to_numpy() if group_column else None  # never a feature
    group_values = groups if job.get("use_groups") else None
    fit = {"flaml": _flaml, "autogluon": _autogluon}[job["system"]]
    return fit(job, train, y, test, group_values)


def _flaml(job, X, y, test, groups) -> dict[str, Any]:
    from flaml import AutoML

    classification = job["task"] == "classification"
    settings: dict[str, Any] = dict(
        time_budget=job["budget"], task="classification" if classification else "regression",
        metric="roc_auc" if classification else "rmse", n_jobs=1, seed=job["seed"], verbose=0,
        log_file_name=str(Path(job["workdir"]) / "flaml.log"),
    )
    if groups is not None:
        settings.update(split_type="group", groups=groups)
    automl = AutoML()
    started = time.perf_counter()
    automl.fit(X_train=X, y_train=y, **settings)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    predictions = automl.predict_proba(test)[:, 1] if classification else automl.predict(test)
    predict_seconds = time.perf_counter() - started
    tried = sorted({str(entry.get("Current Learner", "")) for entry in _flaml_history(automl)} - {""})
    return {
        "fit_seconds": fit_seconds, "predict_seconds": predict_seconds, "predictions": [float(p) for p in predictions],
        "chosen": str(automl.best_estimator), "detail": {
            "best_config": {k: _plain(v) for k, v in (automl.best_config or {}).items()},
            "best_validation_loss": _plain(automl.best_loss), "learners_tried": tried,
            "trials": len(automl.config_history or {}),
        },
    }


def _flaml_history(automl) -> list[dict[str, Any]]:
    # config_history: {iteration: (learner, config, time)}; keep it tolerant of FLAML versions.
    out = []
    for value in (automl.config_history or {}).values():
        if isinstance(value, (tuple, list)) and value:
            out.append({"Current Learner": value[0]})
    return out


def _autogluon(job, X, y, test, groups) -> dict[str, Any]:
    from autogluon.tabular import TabularPredictor

    classification = job["task"] == "classification"
    train = X.assign(**{job["target"]: y.to_numpy()})
    predictor = TabularPredictor(
        label=job["target"], problem_type="binary" if classification else "regression",
        eval_metric="roc_auc" if classification else "root_mean_squared_error",
        path=str(Path(job["workdir"]) / "autogluon"), verbosity=0,
    )
    started = time.perf_counter()
    predictor.fit(train, time_limit=job["budget"], presets=AUTOGLUON_PRESETS,
                  excluded_model_types=AUTOGLUON_EXCLUDED, num_cpus=1, num_gpus=0)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    if classification:
        probabilities = predictor.predict_proba(test)
        positive = predictor.positive_class
        predictions = probabilities[positive].to_numpy()
    else:
        predictions = predictor.predict(test).to_numpy()
    predict_seconds = time.perf_counter() - started
    best = predictor.model_best
    weights: dict[str, float] = {}
    try:
        model = predictor._trainer.load_model(best)  # noqa: SLF001 - AutoGluon exposes no public getter
        weights = {str(k): float(v) for k, v in model._get_model_weights().items()}  # noqa: SLF001
    except Exception:  # noqa: BLE001 - not an ensemble, or another AutoGluon version: weights unknown
        weights = {}
    models = list(predictor.model_names())
    return {
        "fit_seconds": fit_seconds, "predict_seconds": predict_seconds, "predictions": [float(p) for p in predictions],
        "chosen": str(best), "detail": {"ensemble_weights": weights, "models_trained": models},
    }


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--requirements"]:
        print("\n".join(requirements()))
        return 0
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    path = Path(argv[0])
    job = json.loads(path.read_text())
    started = time.perf_counter()
    try:
        answer = run_job(job)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which shows it in the report
        answer = {"error": f"{type(exc).__name__}: {exc}"}
    answer["process_seconds"] = time.perf_counter() - started
    answer["versions"] = versions()
    path.with_suffix(".out.json").write_text(json.dumps(answer))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
