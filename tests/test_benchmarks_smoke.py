"""Every benchmark runs end to end in its tiny configuration, so the benchmark code cannot rot.

These tests check that the benchmarks run and report sensibly; they never judge performance
(that is what `python -m benchmarks.run` and docs/benchmarks.md are for).
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from benchmarks._common import BenchConfig, BenchContext, Section
from benchmarks.automl import AUTOML_PYTHON
from benchmarks.run import BENCHMARKS, main, run_benchmarks
from tests.support import data_folder


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    context = BenchContext(BenchConfig.tiny(), data_dir=data_folder(), workdir=tmp_path_factory.mktemp("bench"))
    yield context
    context.close()


def row(section: Section, fragment: str):
    matches = [r for r in section.rows if fragment in r.measure]
    assert matches, f"no row containing {fragment!r} in {[r.measure for r in section.rows]}"
    return matches[0]


def check_tracking_overhead(section: Section) -> None:
    # Correctness is binding even at tiny sizes: the tuner must agree with GridSearchCV exactly.
    assert row(section, "same best params").passed is True
    assert row(section, "embedded sqlite").ratio.endswith("×")


def check_beat_baseline(section: Section) -> None:
    assert row(section, "(primary)").target == "≤ 0.5×"
    assert any("| 0 |" in line for line in section.body)


def check_search_quality(section: Section) -> None:
    for task in ("classification", "regression"):
        best = row(section, f"{task}").ours
        assert 0 < float(best) <= 1 and math.isfinite(float(best))
    proposal = row(section, "proposal cost per trial")
    assert proposal.target == "≤ 50 ms" and proposal.passed is not None
    assert proposal.ours.endswith(("ms", " s")) and proposal.baseline.endswith(("ms", " s"))


def check_pruning(section: Section) -> None:
    assert row(section, "finds GridSearchCV's best params").passed is True
    assert row(section, "fold fits saved").ours.endswith("% saved")


def check_parallel_scaling(section: Section) -> None:
    assert float(row(section, "tuner speed-up").ratio.rstrip("×")) > 0


def check_mcp_server(section: Section) -> None:
    spawn = row(section, "spawn")
    assert spawn.ours.endswith(("ms", " s")) and spawn.passed is not None
    latency_rows = [r for r in section.rows if "latency over" in r.measure]
    assert {r.measure.split(" latency")[0] for r in latency_rows} == {"get_run", "search_runs", "compare_runs"}
    assert {"stdio" in r.measure or "http" in r.measure for r in latency_rows} == {True}
    assert row(section, "tools/list size").passed is True


def check_honest_evaluation(section: Section) -> None:
    assert row(section, "validate with leak checks").ratio.endswith("×")


def check_dask_cluster(section: Section) -> None:
    assert row(section, "same trials").passed is True
    assert float(row(section, "Dask workers").ratio.rstrip("×")) > 0


def check_halving(section: Section) -> None:
    assert row(section, "(primary)").target == "≤ 0.25×"
    assert "default factor (5)" in row(section, "(primary)").measure  # the default earns its place
    assert row(section, "HalvingGridSearchCV").ratio.endswith(("×", "∞"))
    assert row(section, "every seed").passed in (True, False)


def check_equal_budget(section: Section) -> None:
    from benchmarks.equal_budget import JUDGED, OURS_LABEL

    judged = [r for r in section.rows if r.passed is not None]
    for fragment in ("classification", "regression", "steep"):
        assert {r.baseline != "" for r in judged if fragment in r.measure} == {True}
        assert sum(fragment in r.measure and "vs Optuna TPE + Hyperband" in r.measure for r in judged) == 1
        assert all(OURS_LABEL[JUDGED] in r.measure for r in judged if fragment in r.measure)


def check_shared_cores(section: Section) -> None:
    judged = row(section, "two HistGradientBoosting tuning jobs at once")
    assert judged.target == "≤ 2.2×" and float(judged.ratio.rstrip("×")) > 0


def check_automl(section: Section) -> None:
    # Both baselines ran in their venv and were scored on the same holdout as the default call.
    for system in ("FLAML", "AutoGluon"):
        assert 0 < float(row(section, f"default call vs {system}").baseline) <= 1
    assert row(section, "default call vs FLAML").target == "≥ FLAML's median"
    assert row(section, "default call wall time").ours.endswith(" s")
    assert any(line.startswith("| 0 | ") for line in section.body)  # the per-seed pairs


CHECKS = {
    "tracking_overhead": check_tracking_overhead,
    "beat_baseline": check_beat_baseline,
    "search_quality": check_search_quality,
    "pruning": check_pruning,
    "parallel_scaling": check_parallel_scaling,
    "mcp_server": check_mcp_server,
    "honest_evaluation": check_honest_evaluation,
    "dask_cluster": check_dask_cluster,
    "halving": check_halving,
    "equal_budget": check_equal_budget,
    "shared_cores": check_shared_cores,
    "automl": check_automl,
}
# The AutoML comparison runs FLAML and AutoGluon from their own venv (make bench-automl), real fits
# of a few seconds each (about a minute in all): skipped without that venv, and marked slow.
TINY_RUNS = [
    pytest.param(name, marks=[pytest.mark.slow, pytest.mark.skipif(
        not AUTOML_PYTHON.is_file(), reason=f"{AUTOML_PYTHON} absent (make bench-automl creates it)")])
    if name == "automl" else name
    for name in BENCHMARKS
]


def test_every_benchmark_has_a_smoke_check():
    assert set(CHECKS) == set(BENCHMARKS)


@pytest.mark.parametrize("name", TINY_RUNS)
def test_benchmark_runs_in_tiny_configuration(ctx, name):
    printed: list[str] = []
    (section,) = run_benchmarks(ctx, [name], echo=printed.append)
    assert section.rows and section.body and section.seconds > 0
    assert all(r.passed in (True, False, None) for r in section.rows)
    assert all(r.target for r in section.rows if r.passed is not None), "a judged row needs its target"
    assert printed[0].startswith(f"== {name}") and len(printed) == len(section.rows) + 2
    CHECKS[name](section)


@pytest.mark.server
def test_tracking_overhead_against_a_real_mlflow_server(ctx, mlflow_server):
    from mcp_server.mlflow_integration import get_mlflow_tracker

    tiny = ctx.config
    ctx.config = dataclasses.replace(tiny, use_mlflow_server=True)
    # The session's server stands in for the one the benchmark would start (saves 7-20 s).
    tracker = get_mlflow_tracker(experiment_name="bench-smoke", tracking_uri=mlflow_server.uri)
    ctx.remember(("server_tracker", "bench"), tracker)
    try:
        (section,) = run_benchmarks(ctx, ["tracking_overhead"], echo=lambda _line: None)
    finally:
        ctx.config = tiny
        tracker.close()
    assert row(section, "mlflow server, loopback").ratio.endswith("×")
    assert row(section, "same best params").passed is True


def test_cli_writes_a_report(tmp_path, capsys):
    output = tmp_path / "report.md"
    argv = ["--tiny", "--only", "search_quality", "--output", str(output), "--data-dir", str(data_folder())]
    assert main(argv) == 0
    report = output.read_text()
    for heading in ("# Benchmarks", "## Machine", "## Summary", "## 3. Search quality", "## How to reproduce"):
        assert heading in report
    assert "scikit-learn" in report and "cores" in report
    out = capsys.readouterr().out
    assert "== search_quality" in out and f"report written to {output}" in out
