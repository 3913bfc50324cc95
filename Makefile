# Two commands on a fresh clone:  `make demo` (the main job) and `make test` (the whole suite).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# FLAML and AutoGluon, the baselines of benchmarks/automl.py, in a venv of their own: AutoGluon pins
# pandas < 2.4, and the test venv keeps the project's pandas. It holds only pyproject's `automl` extra.
AUTOML_VENV  := .venv-automl
AUTOML_STAMP := $(AUTOML_VENV)/.installed
ARGS ?=

.PHONY: demo test test-all test-fast bench bench-automl serve install clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,bench]"
	@touch $(STAMP)

$(AUTOML_STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(AUTOML_VENV)
	$(AUTOML_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(AUTOML_VENV)/bin/python benchmarks/automl_baselines.py --requirements > $(AUTOML_VENV)/requirements.txt
	$(AUTOML_VENV)/bin/python -m pip install --quiet -r $(AUTOML_VENV)/requirements.txt
	@touch $(AUTOML_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/nba-mcp demo

# Two workers, a test file each at a time (its module fixtures stay in one process): most tests
# wait on spawned servers, stores and sockets, so two share CI's 2 cores well. `test` leaves out the
# soaks marked slow (many clients, twenty restarts, the wheel install: a quarter of the time);
# `test-all` runs them too, before a release or a change to jobs, shutdown or the HTTP front.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not server and not postgres and not dask_cluster"

bench: $(STAMP) $(AUTOML_STAMP)
	$(PY) -m benchmarks.run

# The default call vs FLAML and AutoGluon at 60 s (~45 min); e.g. ARGS="--seeds 2 --tasks rookies".
bench-automl: $(STAMP) $(AUTOML_STAMP)
	$(PY) -m benchmarks.automl $(ARGS)

serve: $(STAMP)
	$(VENV)/bin/nba-mcp serve

clean:
	rm -rf $(VENV) $(AUTOML_VENV) .pytest_cache
