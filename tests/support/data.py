"""The data tests and benchmarks use: the real NBA CSVs when they are there, stand-ins made here
when they are not.

One setting says where the NBA data sets are: ``NBA_MCP_TEST_DATA`` (default ``../shared/data``
beside the project root). They state no license, so they are never copied into the project; a
test that needs the real files is marked ``needs_nba_data`` and skips with one reason. Every other
test reads ``nba_logreg`` / ``all_seasons`` from ``data_folder()``: the real files when present,
otherwise synthetic stand-ins with the same columns, types and value ranges (written once per
process), so a bare clone still exercises validation, tuning, pipelines, predict and the demo.
"""

from __future__ import annotations

import os
import tempfile
from functools import cache
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NBA_DATA_ENV_VAR = "NBA_MCP_TEST_DATA"
NBA_DATA = Path(os.environ.get(NBA_DATA_ENV_VAR) or PROJECT_ROOT.parent / "shared" / "data").resolve()
NBA_FILES = ("nba_logreg.csv", "all_seasons.csv")
HAVE_NBA_DATA = all((NBA_DATA / name).is_file() for name in NBA_FILES)
NBA_DATA_REASON = f"NBA data sets not found in {NBA_DATA} (set {NBA_DATA_ENV_VAR} to their folder)"

needs_nba_data = pytest.mark.skipif(not HAVE_NBA_DATA, reason=NBA_DATA_REASON)


def data_folder() -> Path:
    """The folder holding ``nba_logreg.csv`` and ``all_seasons.csv``: real, or the stand-ins."""
    return NBA_DATA if HAVE_NBA_DATA else synthetic_folder()


@cache
def synthetic_folder() -> Path:
    """A process-wide folder with synthetic ``nba_logreg.csv`` and ``all_seasons.csv``."""
    folder = Path(tempfile.mkdtemp(prefix="nba-mcp-synthetic-"))
    synthetic_rookies().to_csv(folder / "nba_logreg.csv", index=False)
    synthetic_seasons().to_csv(folder / "all_seasons.csv", index=False)
    return folder


def synthetic_rookies(rows: int = 1340, seed: int = 0):
    """Rookie seasons shaped like ``nba_logreg.csv`` (schema ``player_stats``); the target
    ``TARGET_5Yrs`` depends on minutes, points and games, so models have something to learn. Like
    the real file it has 11 missing ``3P%``, 12 exact duplicate rows and 10 label conflicts."""
    import pandas as pd

    base = _rookie_rows(rows - 22, seed)
    clean = base[base["3P%"].notna()]
    duplicates = clean.iloc[:12]
    conflicts = clean.iloc[12:22].assign(TARGET_5Yrs=lambda f: 1 - f["TARGET_5Yrs"])
    return pd.concat([base, duplicates, conflicts], ignore_index=True)


def _rookie_rows(rows: int, seed: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    gp = rng.integers(11, 83, rows)
    minutes = np.round(rng.uniform(3, 40, rows), 1)
    scale = minutes / 40
    made = np.round(rng.uniform(0.3, 7, rows) * scale, 1)
    attempts = np.round(made / rng.uniform(0.35, 0.55, rows), 1)
    threes = np.round(rng.uniform(0, 2.5, rows) * scale, 1)
    three_att = np.round(threes / rng.uniform(0.25, 0.45, rows), 1)
    ftm = np.round(rng.uniform(0, 5, rows) * scale, 1)
    fta = np.round(ftm / rng.uniform(0.55, 0.9, rows), 1)
    oreb, dreb = np.round(rng.uniform(0, 3, rows) * scale, 1), np.round(rng.uniform(0.3, 7, rows) * scale, 1)
    pts = np.round(2 * made + threes + ftm, 1)
    logit = 0.08 * (minutes - 17) + 0.15 * (pts - 6) + 0.04 * (gp - 55) + rng.normal(0, 0.8, rows)
    frame = pd.DataFrame({
        "Name": [f"Player {i}" for i in range(rows)], "GP": gp, "MIN": minutes, "PTS": pts,
        "FGM": made, "FGA": attempts, "FG%": np.round(100 * made / np.maximum(attempts, 0.1), 1),
        "3P Made": threes, "3PA": three_att, "3P%": np.round(100 * threes / np.maximum(three_att, 0.1), 1),
        "FTM": ftm, "FTA": fta, "FT%": np.round(100 * ftm / np.maximum(fta, 0.1), 1),
        "OREB": oreb, "DREB": dreb, "REB": np.round(oreb + dreb, 1),
        "AST": np.round(rng.uniform(0, 6, rows) * scale, 1), "STL": np.round(rng.uniform(0, 1.5, rows) * scale, 1),
        "BLK": np.round(rng.uniform(0, 1.5, rows) * scale, 1), "TOV": np.round(rng.uniform(0, 3, rows) * scale, 1),
        "TARGET_5Yrs": (logit > 0).astype(int),
    })
    for column in ("FG%", "3P%", "FT%"):
        frame[column] = frame[column].clip(upper=100)
    frame.loc[rng.choice(rows, 11, replace=False), "3P%"] = np.nan  # as many as in the real file
    return frame


def synthetic_seasons(rows: int = 3000, seed: int = 1):
    """Player seasons shaped like ``all_seasons.csv`` (schema ``player_seasons``); ``pts``
    depends on usage, shooting and games."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    gp = rng.integers(1, 83, rows)
    usg, ts = np.round(rng.uniform(0.08, 0.32, rows), 3), np.round(rng.uniform(0.4, 0.65, rows), 3)
    pts = np.clip(np.round(70 * usg * ts * (0.3 + gp / 82) + rng.normal(0, 1.5, rows), 1), 0, 60)
    drafted = rng.random(rows) < 0.8
    return pd.DataFrame({
        "player_id": np.arange(rows), "player_name": [f"Player {i % 900}" for i in range(rows)],
        "team_abbreviation": rng.choice(["BOS", "LAL", "CHI", "NYK", "MIA", "SAS"], rows),
        "age": rng.integers(19, 40, rows).astype(float), "player_height": np.round(rng.uniform(175, 225, rows), 2),
        "player_weight": np.round(rng.uniform(70, 140, rows), 2),
        "college": rng.choice(["Duke", "Kentucky", "None", "UCLA"], rows), "country": rng.choice(["USA", "France"], rows),
        "draft_year": np.where(drafted, rng.integers(1990, 2020, rows).astype(str), "Undrafted"),
        "draft_round": np.where(drafted, rng.integers(1, 3, rows).astype(str), "Undrafted"),
        "draft_number": np.where(drafted, rng.integers(1, 61, rows).astype(str), "Undrafted"),
        "gp": gp, "pts": pts, "reb": np.round(rng.uniform(0, 12, rows), 1), "ast": np.round(rng.uniform(0, 9, rows), 1),
        "net_rating": np.round(rng.normal(-2, 8, rows), 1), "oreb_pct": np.round(rng.uniform(0, 0.15, rows), 3),
        "dreb_pct": np.round(rng.uniform(0.05, 0.3, rows), 3), "usg_pct": usg, "ts_pct": ts,
        "ast_pct": np.round(rng.uniform(0, 0.4, rows), 3),
        "season": [f"{y}-{(y + 1) % 100:02d}" for y in rng.integers(1996, 2023, rows)],
    })
