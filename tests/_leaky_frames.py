"""Data sets built by the tests themselves to try to fool the server (no files beside the project).

- ``game_log``: one row per team per game, as a CSV written by pandas with its index: an
  ``Unnamed: 0`` index column with gaps, a ``Date`` column, a ``GAME_ID`` repeated by the two teams,
  and the score columns ``PTS`` / ``OPP_PTS`` whose difference decides ``WL``. Without those, the
  box-score columns predict ``WL`` only loosely (ROC AUC ~0.8).
- ``player_seasons``: players over several seasons whose points depend on a per-player level: a
  random split rewards recognizing the player, a group split does not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def game_log(n_games: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    teams = [f"T{i:02d}" for i in range(30)]
    dates = pd.date_range("2022-10-18", periods=n_games // 5 + 1, freq="D")
    rows = []
    for game in range(n_games):
        home, away = rng.choice(30, 2, replace=False)
        fgm, fg3, ftm = rng.normal(40, 4, 2), rng.normal(12, 3, 2), rng.normal(17, 4, 2)
        pts = np.round(2 * fgm + fg3 + ftm).astype(int)
        for side, (team, opponent) in enumerate(((home, away), (away, home))):
            rows.append({
                "GAME_ID": 22200000 + game, "Date": dates[game // 5].strftime("%Y-%m-%d"),
                "TEAM": teams[team], "OPP": teams[opponent], "HOME": int(side == 0),
                "FGM": round(fgm[side]), "FG3M": round(fg3[side]), "FTM": round(ftm[side]),
                "REB": int(rng.normal(44, 5)), "AST": int(rng.normal(24, 4)), "TOV": int(rng.normal(14, 3)),
                "PTS": pts[side], "OPP_PTS": pts[1 - side], "WL": int(pts[side] > pts[1 - side]),
            })
    frame = pd.DataFrame(rows)
    frame = frame[frame.PTS != frame.OPP_PTS]
    return frame.drop(index=frame.sample(frac=0.03, random_state=seed).index)  # gaps in the index


def write_game_log(folder: Path, name: str = "games.csv", **kwargs) -> Path:
    """The game log as pandas writes it with its index (the ``Unnamed: 0`` column when read back)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    game_log(**kwargs).to_csv(path)
    return path


def read_game_log(folder: Path) -> pd.DataFrame:
    return pd.read_csv(write_game_log(folder))


def player_seasons(n_players: int = 150, seasons: int = 6, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for player in range(n_players):
        # A hidden per-player level drives points; height and weight are fixed per player and say
        # nothing about the level, but they identify the player for a model that saw their other seasons.
        level, height, weight = rng.normal(12, 5), rng.normal(200, 8), rng.normal(100, 10)
        for season in range(seasons):
            minutes = rng.uniform(10, 36)
            rows.append({"player_name": f"Player {player:03d}", "season": 2010 + season,
                         "minutes": minutes, "height": round(height, 1), "weight": round(weight, 1),
                         "pts": max(0.0, level * minutes / 25 + rng.normal(0, 1.0))})
    return pd.DataFrame(rows)
