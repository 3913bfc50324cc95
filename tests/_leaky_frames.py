"""Data sets built by the tests themselves to try to fool the server (no files beside the project).

- ``game_log``: one row per team per game, as a CSV written by pandas with its index: an
  ``Unnamed: 0`` index column with gaps, a ``Date`` column, a ``GAME_ID`` repeated by the two teams,
  and the score columns ``PTS`` / ``OPP_PTS`` whose difference decides ``WL``. Without those, the
  box-score columns predict ``WL`` only loosely (ROC AUC ~0.8).
- ``player_seasons``: players over several seasons whose points depend on a per-player level: a
  random split rewards recognizing the player, a group split does not.
- ``coarse_games``: team games with coarse features (home, opponent, game number) that repeat with
  both labels, each row its own game: de-duplicating on features and label inverts the model.
- ``noise_frame`` / ``inverted_frame``: no signal at all; a signal that flips sign in the last 20%
  of the rows (a time split then tests a model below chance).
- ``shooting_log``: one row per team per game with both teams' shooting counts (field goals, threes
  and free throws made, for and against), the scores dropped: the six counts still rebuild both
  scores exactly, so a weighted sum of them decides the game though no one column or pair does.
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


SHOOTING_COLUMNS = ["fgm", "fg3m", "ftm", "opp_fgm", "opp_fg3m", "opp_ftm"]


def shooting_log(n_games: int = 2500, seed: int = 0, *, target: str = "win") -> pd.DataFrame:
    """One row per team per game (~5000 rows): ``fgm`` (threes included), ``fg3m``, ``ftm`` of the
    team and ``opp_*`` of its opponent, with points ``2 * (fgm - fg3m) + 3 * fg3m + ftm`` in every
    row; the scores themselves are dropped. ``target``: ``win`` (1 when the team scored more; no
    ties) or ``margin`` (its points minus the opponent's). Beside them: ``home``, ``rest_days``,
    ``game_number``, ``opponent_id`` (weak or no signal), a ``game_date`` and a ``row_id`` index."""
    if target not in ("win", "margin"):
        raise ValueError(f"target must be 'win' or 'margin', got {target!r}")
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2021-10-19", periods=n_games // 12 + 1, freq="D")
    played = np.zeros(30, dtype=int)
    rows = []
    for game in range(n_games):
        teams = rng.choice(30, 2, replace=False)  # the first is at home
        fg3m = rng.poisson(12, 2)
        fgm = rng.poisson(29, 2) + fg3m
        ftm = rng.poisson([18, 16])  # a little home advantage at the line
        pts = 2 * (fgm - fg3m) + 3 * fg3m + ftm
        if pts[0] == pts[1]:
            continue  # overtime would decide it: no ties in basketball
        played[teams] += 1
        for side in (0, 1):
            other = 1 - side
            rows.append({
                "game_date": dates[game // 12].strftime("%Y-%m-%d"), "home": int(side == 0),
                "rest_days": int(rng.integers(0, 4)), "game_number": int(played[teams[side]]),
                "opponent_id": int(teams[other]),
                "fgm": int(fgm[side]), "fg3m": int(fg3m[side]), "ftm": int(ftm[side]),
                "opp_fgm": int(fgm[other]), "opp_fg3m": int(fg3m[other]), "opp_ftm": int(ftm[other]),
                target: int(pts[side] > pts[other]) if target == "win" else int(pts[side] - pts[other]),
            })
    frame = pd.DataFrame(rows)
    return frame.rename_axis("row_id").reset_index()


N_TEAMS, N_GAMES = 30, 82


def coarse_games(seed: int = 0) -> pd.DataFrame:
    """Team game logs with coarse features (home, opponent, game number): many rows share their
    features and label, yet every row is its own game (its id and date differ)."""
    rng = np.random.default_rng(seed)
    strength = rng.normal(0, 0.6, N_TEAMS)
    rows = []
    for team in range(N_TEAMS):
        for number in range(1, N_GAMES + 1):
            opponent = int(rng.integers(N_TEAMS - 1))
            opponent += opponent >= team
            home = int(rng.integers(2))
            edge = 0.35 * (2 * home - 1) + strength[team] - strength[opponent]
            rows.append({"GAME_ID": 22300000 + team * 100 + number,
                         "DATE": str(pd.Timestamp("2023-10-24") + pd.Timedelta(days=2 * number + team % 2))[:10],
                         "HOME": home, "OPP": f"T{opponent:02d}", "GAME_NO": number % 4,
                         "WL": int(rng.random() < 1 / (1 + np.exp(-edge)))})
    return pd.DataFrame(rows)


def noise_frame(n: int = 1200, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.normal(size=n),
                         "y": rng.integers(0, 2, n)})


def inverted_frame(n: int = 1200, seed: int = 2) -> pd.DataFrame:
    """x predicts y one way in the first 80% of the rows (by ``t``) and the other way after."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = rng.normal(size=n)
    late = t >= 0.8 * n
    logit = np.where(late, -2.5 * x, 2.5 * x)
    return pd.DataFrame({"t": t, "x": x, "z": rng.normal(size=n),
                         "y": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)})
