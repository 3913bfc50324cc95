"""What every benchmark shares: configurations (full / quick / tiny), the data sets, result rows,
timing helpers and the run context (scratch folder, memoized baselines, load sampling)."""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The NBA CSVs: one setting shared with the tests (NBA_MCP_TEST_DATA, default ../shared/data).
from tests.support.data import NBA_DATA

logger = logging.getLogger("benchmarks")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ROOKIES_CSV = "nba_logreg.csv"
SEASONS_CSV = "all_seasons.csv"

# The seed project's grid: 27 RandomForest candidates.
SEED_GRID: dict[str, list[int]] = {
    "n_estimators": [50, 100, 200],
    "max_depth": [5, 10, 15],
    "min_samples_split": [2, 5, 10],
}
SEED_ESTIMATOR_RANDOM_STATE = 42


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of every benchmark. ``full`` is what the report's targets are judged on."""

    name: str
    grid: dict[str, list[int]]
    cv_folds: int
    seeds: tuple[int, ...]  # beat-the-baseline seeds; the first ``overhead_rounds`` serve the overhead rounds
    overhead_rounds: int
    use_mlflow_server: bool
    pruning_seeds: int
    scaling_rounds: int
    quality_trials: int
    # Seeds of the 30-trial comparison. A 30-trial search is deterministic per seed and takes
    # seconds, while the per-seed difference between GP and TPE spreads with sd 0.0013-0.0021, several
    # times its mean: 5 seeds' medians mostly measure which seeds were drawn (docs/tuning.md).
    quality_seeds: int
    quality_rows: int  # regression rows kept (sampled); the classification set is small
    quality_max_iter: int
    fast_bayesian_trials: int
    mcp_spawns: int
    mcp_calls: int
    mcp_runs: int
    profile_on_miss: bool = True
    quality_workers: int = 2
    equal_budget_seconds: float = 60.0  # wall time per search in the equal-budget comparison
    equal_budget_seeds: int = 5  # each search costs the whole budget: 5 searchers x 3 tasks x seeds
    settle_seconds: float = 1.0  # wait after a server starts before reading its idle RSS

    @classmethod
    def full(cls) -> BenchConfig:
        return cls(
            name="full", grid=SEED_GRID, cv_folds=5, seeds=(0, 1, 2, 3, 4), overhead_rounds=3,
            use_mlflow_server=True, pruning_seeds=5, scaling_rounds=2, quality_trials=30, quality_seeds=20,
            quality_rows=2000, quality_max_iter=50, fast_bayesian_trials=10, mcp_spawns=5, mcp_calls=40,
            mcp_runs=10,
        )

    @classmethod
    def quick(cls) -> BenchConfig:
        grid = {"n_estimators": [50, 100], "max_depth": [5, 10], "min_samples_split": [2, 10]}
        return cls(
            name="quick", grid=grid, cv_folds=5, seeds=(0, 1, 2), overhead_rounds=2,
            use_mlflow_server=True, pruning_seeds=2, scaling_rounds=1, quality_trials=15, quality_seeds=2,
            quality_rows=1000, quality_max_iter=30, fast_bayesian_trials=6, mcp_spawns=3, mcp_calls=15,
            mcp_runs=10, profile_on_miss=False, equal_budget_seconds=10.0, equal_budget_seeds=2,
        )

    @classmethod
    def tiny(cls) -> BenchConfig:
        """For the smoke test: every code path, seconds of work, no `mlflow server`."""
        grid = {"n_estimators": [5, 10], "max_depth": [3], "min_samples_split": [2, 5]}
        return cls(
            name="tiny", grid=grid, cv_folds=3, seeds=(0,), overhead_rounds=1,
            use_mlflow_server=False, pruning_seeds=1, scaling_rounds=1, quality_trials=4, quality_seeds=1,
            quality_rows=300, quality_max_iter=10, fast_bayesian_trials=4, mcp_spawns=1, mcp_calls=3,
            mcp_runs=3, profile_on_miss=False, quality_workers=1, settle_seconds=0.1, equal_budget_seconds=1.0,
            equal_budget_seeds=1,
        )


@dataclass
class Row:
    """One line of the report's summary table."""

    benchmark: str
    measure: str
    ours: str
    baseline: str
    ratio: str
    target: str
    passed: bool | None  # None: informational, no target


@dataclass
class Section:
    """A benchmark's outcome: summary rows plus a markdown body (tables, breakdowns, profiles)."""

    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    body: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, *lines: str) -> None:
        self.body.extend(lines)


class BenchContext:
    """Scratch folder, configuration, and results several benchmarks share (memoized by key)."""

    def __init__(self, config: BenchConfig, *, data_dir: Path = NBA_DATA, workdir: Path | None = None) -> None:
        self.config = config
        self.data_dir = Path(data_dir)
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="nba-bench-")
        self.workdir = Path(workdir) if workdir else Path(self._tmp.name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._memo: dict[Any, Any] = {}
        self.closers: list[Callable[[], None]] = []

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def peek(self, key: Any, default: Any = None) -> Any:
        return self._memo.get(key, default)

    def remember(self, key: Any, value: Any) -> None:
        self._memo[key] = value

    def scratch(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def close(self) -> None:
        for close in reversed(self.closers):
            try:
                close()
            except Exception:  # noqa: BLE001 - cleanup must go on
                logger.exception("cleanup failed")
        self.closers.clear()
        if self._tmp is not None:
            self._tmp.cleanup()


# --- data ---------------------------------------------------------------------------------------


def load_rookies(data_dir: Path = NBA_DATA):
    """nba_logreg.csv as the seed used it: target TARGET_5Yrs, Name dropped, all 1,340 rows kept.
    3P% is empty only where 3PA = 0 (SOURCES.md), so it becomes 0."""
    import pandas as pd

    frame = pd.read_csv(Path(data_dir) / ROOKIES_CSV)
    y = frame.pop("TARGET_5Yrs").to_numpy()
    X = frame.drop(columns=["Name"]).fillna(0.0).to_numpy(dtype=float)
    return X, y


SEASON_FEATURES = [
    "age", "player_height", "player_weight", "draft_year", "draft_round", "draft_number",
    "gp", "reb", "ast", "oreb_pct", "dreb_pct", "usg_pct", "ast_pct",
]


def seasons_frame(data_dir: Path = NBA_DATA, *, min_gp: int = 10):
    """all_seasons.csv as a regression of pts: the features, then ``player_name`` (the group of a
    split by player, never a feature) and ``pts``. Dropped: player_id (a row index), the text
    columns, and what is computed from points (ts_pct = pts / (2 * shot attempts); net_rating
    counts the team's points while the player is on court). Rows with gp < min_gp are dropped
    (small-sample noise, SOURCES.md). 'Undrafted' becomes NaN, which HistGradientBoosting handles
    natively; the season "1996-97" becomes its first year."""
    import pandas as pd

    frame = pd.read_csv(Path(data_dir) / SEASONS_CSV)
    frame = frame[frame["gp"] >= min_gp]
    out = frame[SEASON_FEATURES].apply(pd.to_numeric, errors="coerce")
    out["season_start"] = frame["season"].str[:4].astype(int)
    return out.assign(player_name=frame["player_name"], pts=frame["pts"].astype(float))


def load_seasons(data_dir: Path = NBA_DATA, *, n_rows: int, seed: int = 0, min_gp: int = 10):
    """``seasons_frame`` as arrays (features, pts), ``n_rows`` of them sampled."""
    frame = seasons_frame(data_dir, min_gp=min_gp)
    if n_rows < len(frame):
        frame = frame.sample(n_rows, random_state=seed)
    X = frame.drop(columns=["player_name", "pts"])
    return X.to_numpy(dtype=float), frame["pts"].to_numpy(dtype=float)


# --- timing and statistics ----------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank-free linear interpolation (numpy's default), q in [0, 100]."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def fmt_seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def fmt_ratio(value: float) -> str:
    if value != value:  # noqa: PLR0124 - NaN
        return "n/a"
    return "∞" if value == float("inf") else f"{value:.3f}×"


def verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "**FAIL**", None: "info"}[passed]


def quiet_warnings() -> None:
    """Benchmarks print their own figures; library warnings (sklearn, MLflow) would drown them."""
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("mlflow", "alembic", "optuna", "urllib3", "httpx", "mcp"):
        logging.getLogger(name).setLevel(logging.ERROR)
