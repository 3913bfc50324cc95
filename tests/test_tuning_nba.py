"""On the NBA rookies data (and on the synthetic stand-in, so a bare clone tests it too): our grid
search finds what sklearn's GridSearchCV finds with the same splitter, and fold-level pruning saves
fold fits while keeping the same best."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from mcp_server.hyperparameter_tuning import HyperparameterTuner, MedianPruner
from tests.support import NBA_DATA, needs_nba_data, synthetic_folder

SEED_GRID = {"n_estimators": [50, 100, 200], "max_depth": [5, 10, 15], "min_samples_split": [2, 5, 10]}
SMALL_GRID = {"n_estimators": [10, 20], "max_depth": [3, 6], "min_samples_split": [2, 10]}
SEED = 42


@pytest.fixture(scope="module", params=[pytest.param("nba", marks=needs_nba_data), "synthetic"])
def rookies(request):
    folder = NBA_DATA if request.param == "nba" else synthetic_folder()
    # SOURCES.md: 12 exact duplicate rows; the 11 missing 3P% all have 3PA == 0, so 0 is the truth.
    frame = pd.read_csv(folder / "nba_logreg.csv").drop_duplicates()
    X = frame.drop(columns=["Name", "TARGET_5Yrs"]).fillna({"3P%": 0.0})
    return X, frame["TARGET_5Yrs"].astype(int)


def _grid_search_cv(grid, X, y, *, folds):
    search = GridSearchCV(RandomForestClassifier(random_state=0), grid, scoring="roc_auc", n_jobs=2,
                          cv=StratifiedKFold(folds, shuffle=True, random_state=SEED))
    return search.fit(X, y)


def _ours(grid, X, y, *, folds, pruning=None):
    return HyperparameterTuner(enable_mlflow=False).tune(
        estimator=RandomForestClassifier(random_state=0), X=X, y=y, space=grid, strategy="grid",
        scoring="roc_auc", cv_folds=folds, seed=SEED, n_jobs=2, pruning=pruning,
    )


def test_small_grid_matches_grid_search_cv_and_pruning_keeps_the_best(rookies):
    X, y = rookies
    reference = _grid_search_cv(SMALL_GRID, X, y, folds=3)
    ours = _ours(SMALL_GRID, X, y, folds=3)
    assert ours.best_params == reference.best_params_
    assert ours.best_score == pytest.approx(reference.best_score_, abs=1e-12)
    by_params = {tuple(sorted(t.params.items())): t for t in ours.trials}
    for params, mean, std in zip(reference.cv_results_["params"], reference.cv_results_["mean_test_score"],
                                 reference.cv_results_["std_test_score"]):
        trial = by_params[tuple(sorted(params.items()))]
        assert (trial.score, trial.std) == pytest.approx((mean, std), abs=1e-12)
    pruned = _ours(SMALL_GRID, X, y, folds=3, pruning=MedianPruner(n_startup_trials=2))
    assert pruned.best_params == reference.best_params_ and pruned.summary.n_fold_fits_saved > 0


@pytest.mark.slow
def test_seed_grid_matches_grid_search_cv_and_pruning_saves_a_third_of_fold_fits(rookies, request, capsys):
    X, y = rookies
    # The one-third saving is a measured fact of the real file; on the stand-in pruning must save some.
    least_saving = 0.30 if request.node.callspec.params["rookies"] == "nba" else 0.01
    start = time.perf_counter()
    reference = _grid_search_cv(SEED_GRID, X, y, folds=5)
    reference_seconds = time.perf_counter() - start
    ours = _ours(SEED_GRID, X, y, folds=5)
    assert ours.best_params == reference.best_params_
    assert ours.best_score == pytest.approx(reference.best_score_, abs=1e-12)
    # Seen twice on a machine at load 5-8 (120 and 125), never alone: the states say which trials lost fits.
    assert ours.summary.n_fold_fits == 27 * 5, [(t.number, t.state.value, len(t.fold_scores), t.error)
                                                for t in ours.trials if len(t.fold_scores) != 5 or t.error]

    pruned = _ours(SEED_GRID, X, y, folds=5, pruning="median")
    assert pruned.best_params == reference.best_params_
    assert pruned.best_score == pytest.approx(reference.best_score_, abs=1e-12)
    saved = pruned.summary.n_fold_fits_saved / (27 * 5)
    assert saved >= least_saving
    with capsys.disabled():
        print(f"\nNBA seed grid: GridSearchCV {reference_seconds:.1f}s, ours {ours.summary.elapsed_seconds:.1f}s, "
              f"pruned {pruned.summary.elapsed_seconds:.1f}s saving {saved:.0%} of fold fits; "
              f"best {ours.best_params} roc_auc {ours.best_score:.4f}")
