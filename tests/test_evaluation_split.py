"""SplitSpec: the same folds as scikit-learn's splitters, holdouts that keep groups and time apart,
and clear errors for splits the data cannot give."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold, TimeSeriesSplit

from mcp_server.error_handling import InvalidRequestError
from mcp_server.evaluation import SplitSpec, check_split, coerce_split, cv_folds, holdout_rows, time_order
from tests._leaky_frames import game_log, player_seasons


def _folds_equal(ours, theirs) -> bool:
    return len(ours) == len(theirs) and all(
        np.array_equal(np.sort(a), np.sort(c)) and np.array_equal(np.sort(b), np.sort(d))
        for (a, b), (c, d) in zip(ours, theirs, strict=True)
    )


@pytest.mark.parametrize(
    ("spec", "classification", "splitter"),
    [
        (SplitSpec(kind="group", column="player_name"), True,
         StratifiedGroupKFold(n_splits=4, shuffle=True, random_state=7)),
        (SplitSpec(kind="group", column="player_name"), False, GroupKFold(n_splits=4, shuffle=True, random_state=7)),
        (SplitSpec(), True, StratifiedKFold(n_splits=4, shuffle=True, random_state=7)),
        (SplitSpec(), False, KFold(n_splits=4, shuffle=True, random_state=7)),
    ],
)
def test_group_and_kfold_folds_are_sklearns(spec, classification, splitter):
    frame = player_seasons(n_players=40, seasons=5)
    y = (frame["pts"] > frame["pts"].median()).astype(int) if classification else frame["pts"]
    ours = cv_folds(frame, y, spec, n_folds=4, seed=7, classification=classification)
    theirs = list(splitter.split(frame, y, frame["player_name"] if spec.kind == "group" else None))
    assert _folds_equal(ours, theirs)
    if spec.kind == "group":
        for train, valid in ours:
            assert not set(frame["player_name"].iloc[train]) & set(frame["player_name"].iloc[valid])


def test_time_folds_are_time_series_split_on_rows_in_time_order():
    frame = game_log(n_games=200).sample(frac=1.0, random_state=3)  # rows not in time order
    spec = SplitSpec(kind="time", column="Date", gap=4)
    ours = cv_folds(frame, frame["WL"], spec, n_folds=3, seed=0, classification=True)
    order = np.argsort(pd.to_datetime(frame["Date"]).to_numpy(), kind="stable")
    theirs = [(order[a], order[b]) for a, b in TimeSeriesSplit(n_splits=3, gap=4).split(order)]
    assert _folds_equal(ours, theirs)
    dates = pd.to_datetime(frame["Date"]).to_numpy()
    for train, valid in ours:
        assert dates[train].max() <= dates[valid].min()


def test_holdouts_keep_groups_and_time_apart_and_ignore_the_search_seed():
    seasons = player_seasons(n_players=50)
    by_player = holdout_rows(seasons, seasons["pts"], SplitSpec(kind="group", column="player_name"),
                             classification=False)
    train_players = set(seasons.loc[by_player.train_rows, "player_name"])
    assert not train_players & set(seasons.loc[by_player.test_rows, "player_name"])
    assert set(by_player.train_rows).isdisjoint(by_player.test_rows)
    assert by_player.n_train + by_player.n_test == len(seasons)

    games = game_log(n_games=300)
    by_time = holdout_rows(games, games["WL"], SplitSpec(kind="time", column="Date", test_size=0.25, gap=10),
                           classification=True)
    dates = pd.to_datetime(games["Date"])
    assert dates[by_time.train_rows].max() < dates[by_time.test_rows].min()  # no date on both sides
    assert by_time.n_test >= 0.25 * len(games) and by_time.n_train <= len(games) - by_time.n_test - 10

    once = holdout_rows(games, games["WL"], SplitSpec(), classification=True)
    again = holdout_rows(games, games["WL"], SplitSpec(), classification=True)
    assert once.test_digest == again.test_digest and once.test_rows == again.test_rows
    other_seed = holdout_rows(games, games["WL"], SplitSpec(seed=1), classification=True)
    assert other_seed.test_digest != once.test_digest
    none = holdout_rows(games, games["WL"], SplitSpec(test_size=0), classification=True)
    assert none.n_test == 0 and none.n_train == len(games)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "kfold", "column": "Date"}, "split.column is only for kind 'group' or 'time'"),
        ({"kind": "group"}, "split.column is required for kind 'group'"),
        ({"kind": "group", "column": "TEAM", "gap": 3}, "split.gap is only for kind 'time'"),
        ({"kind": "random"}, "kind"),
        ({"kind": "time", "column": "Date", "test_size": 0.9}, "test_size"),
    ],
)
def test_malformed_split_specs_are_refused_with_the_field(spec, message):
    with pytest.raises(InvalidRequestError, match="invalid split") as caught:
        coerce_split(spec)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (SplitSpec(kind="group", column="Team"), "split.column 'Team' is not a column; valid columns: "),
        (SplitSpec(kind="group", column="WL"), "split.column must not be the target 'WL'"),
        (SplitSpec(kind="time", column="TEAM"), "split.column 'TEAM' does not parse as time: values such as 'T"),
        (SplitSpec(kind="group", column="league"), "has a single group ('NBA'); a group split needs at least 2"),
        (SplitSpec(kind="group", column="conference"), "has 2 groups, fewer than the 6 needed (5 folds + a holdout)"),
    ],
)
def test_splits_the_data_cannot_give_are_refused(spec, message):
    games = game_log(n_games=100).assign(league="NBA")
    games["conference"] = np.where(games["TEAM"] < "T15", "East", "West")
    with pytest.raises(InvalidRequestError) as caught:
        check_split(spec, games, target="WL", n_folds=5)
    assert message in str(caught.value)


def test_time_columns_parse_dates_numbers_and_nba_seasons():
    assert list(time_order(pd.Series(["1996-97", "1997-98"]), column="season")) == [1996, 1997]
    assert time_order(pd.Series(["2022-10-18", "2022-10-19"]), column="d").is_monotonic_increasing
    assert list(time_order(pd.Series([2019, 2020]), column="year")) == [2019, 2020]
    with pytest.raises(InvalidRequestError, match="does not parse as time"):
        time_order(pd.Series(["LAL", "BOS"]), column="team")
