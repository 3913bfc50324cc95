"""Benchmarks: measured proof that nba-mcp is fast, each figure a ratio against a baseline
(scikit-learn's GridSearchCV, Optuna's TPE, a minimal MCP server, direct library calls) measured
in the same run. Run everything with ``python -m benchmarks.run`` (``make bench``); the report
lands in ``docs/benchmarks.md``.

Performance claims live here, never in timed unit tests; ``tests/test_benchmarks_smoke.py`` runs
every benchmark in a tiny configuration so this code cannot rot.
"""

import os as _os

# MLflow reads these itself: they must be set before it is first imported (see ARCHITECTURE.md).
_os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
_os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
_os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
