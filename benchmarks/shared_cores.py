"""Target 11: two HistGradientBoosting tuning jobs at once take ≤ 2.2× one job's time.

Both jobs are started the way an agent starts them: ``tune_hyperparameters``'s own plan and job body
(``tools.tuning``) on a server state (``AppState``) with the default settings — two jobs at a time,
isolated trial workers, an embedded sqlite MLflow store. The baseline is one such job alone, measured
in the same run (rounds alternate the order). Each fit gets ``cores // max_concurrent_jobs`` native
threads (``mcp_server/threads.py``, architecture rule 19), so the pair shares the cores instead of
fighting for them: unbounded, every fit started one OpenMP thread per core, and two jobs at once
took 91 s against 9 s for the same work at one thread per fit.

The full run adds that unbounded case as a reference (a ``cores`` setting of twice the machine gives
every fit all of its cores, as before): a smaller pair, stopped after ``REFERENCE_CAP_SECONDS``.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks._common import BenchContext, Row, Section, fmt_ratio, fmt_seconds, load_average, median, timed

NAME = "shared_cores"
TITLE = "11. Fits share the machine: two HistGradientBoosting tuning jobs at once vs one"
TARGET = 2.2
DATASET, TARGET_COLUMN = "nba_logreg", "TARGET_5Yrs"  # ../shared/data/nba_logreg.csv (1,340 rookies)
REFERENCE_CAP_SECONDS = 120.0


@dataclass(frozen=True)
class Size:
    trials: int  # per job
    folds: int
    rounds: int
    reference_trials: int  # 0: no unbounded reference


# Full: tune_hyperparameters' default budget (20 trials); three rounds, as a shared box is noisy.
SIZES = {"full": Size(20, 3, 3, 2), "quick": Size(6, 3, 1, 0), "tiny": Size(1, 2, 1, 0)}


class _Server:
    """The server's state with ``cores`` (None: the machine's usable cores), and one planned search."""

    def __init__(self, ctx: BenchContext, label: str, size: Size, trials: int, *, cores: int | None = None,
                 timeout: float | None = None) -> None:
        from mcp_server.hyperparameter_tuning import TuneRequest
        from mcp_server.settings import Settings
        from tools.app_state import AppState
        from tools.tuning import plan

        options = {"cores": cores} if cores else {}
        if timeout:
            options["job_timeout_seconds"] = timeout
        self.settings = Settings(data_home=ctx.scratch(f"shared-cores-{label}"), data_dirs=[ctx.data_dir],
                                 **options)
        self.app = AppState(self.settings)
        request = TuneRequest(dataset=DATASET, target=TARGET_COLUMN, drop=["Name"], estimator="hist_gradient_boosting",
                              strategy="random", max_trials=trials, cv_folds=size.folds, seed=0, leak_check="warn")
        self.search, self.X, self.y = plan(self.app, request)

    def run(self, n_jobs: int) -> tuple[float, bool]:
        """Seconds until ``n_jobs`` jobs started together have all ended; whether all succeeded."""
        from tools.tuning import tuning_work

        def jobs():
            ids = [self.app.jobs.submit("tune", tuning_work(self.app, self.search, self.X, self.y))
                   for _ in range(n_jobs)]
            return [self.app.jobs.wait(job_id, timeout=3600).state.value for job_id in ids]

        seconds, states = timed(jobs)
        return seconds, all(s == "SUCCEEDED" for s in states)

    def close(self) -> None:
        self.app.close(timeout=10)


def _measure(ctx: BenchContext, size: Size, section: Section) -> tuple[list[float], list[float], int]:
    server = _Server(ctx, "bounded", size, size.trials)
    try:
        server.run(1)  # warm: the store's migrations, the spare worker's imports, the data
        times: dict[int, list[float]] = {1: [], 2: []}
        for number in range(size.rounds):
            order = (1, 2) if number % 2 == 0 else (2, 1)
            load = load_average()
            this = {}
            for n_jobs in order:
                seconds, ok = server.run(n_jobs)
                if not ok:
                    raise RuntimeError(f"a tuning job failed in round {number + 1} ({n_jobs} at once)")
                this[n_jobs] = seconds
                times[n_jobs].append(seconds)
            section.add(f"| {number + 1} | {order[0]} job(s) → {order[1]} | {load} | {fmt_seconds(this[1])} | "
                        f"{fmt_seconds(this[2])} | {fmt_ratio(this[2] / this[1])} |")
        return times[1], times[2], server.app.jobs.threads_per_job
    finally:
        server.close()


def _reference(ctx: BenchContext, size: Size) -> tuple[float, float, bool]:
    """The same jobs unbounded (every fit gets every core): one alone, then two at once, capped."""
    from mcp_server.threads import usable_cores

    server = _Server(ctx, "unbounded", size, size.reference_trials, cores=2 * usable_cores(),
                     timeout=REFERENCE_CAP_SECONDS)
    try:
        server.run(1)
        one, _ = server.run(1)
        two, finished = server.run(2)
        return one, two, finished
    finally:
        server.close()


def run(ctx: BenchContext) -> Section:
    from mcp_server.threads import usable_cores

    size = SIZES.get(ctx.config.name, SIZES["quick"])
    section = Section(NAME, TITLE)
    section.add("| round | order | load (1/5/15 min) | one job | two jobs at once | two / one |",
                "|---|---|---|---|---|---|")
    one, two, threads = _measure(ctx, size, section)
    ratio = median(two) / median(one)
    section.rows.append(Row(NAME, "two HistGradientBoosting tuning jobs at once, wall time over one job alone",
                            f"{fmt_seconds(median(two))} for two", f"{fmt_seconds(median(one))} for one",
                            f"{ratio:.2f}×", f"≤ {TARGET}×", ratio <= TARGET))
    section.add(
        "",
        f"- Each job: random search, {size.trials} trial(s) × {size.folds} folds of HistGradientBoosting on "
        f"{DATASET} ({TARGET_COLUMN}), started through `tools.tuning` on a server state with the default "
        f"settings: max_concurrent_jobs=2, isolated trial workers, {usable_cores()} usable core(s) → "
        f"{threads} native thread(s) per fit.",
        "- Wall time of two jobs started together until both end, against one job alone, median over the "
        "rounds. Perfect sharing of 2 cores between 2 single-threaded jobs is 1.0×; running them one after "
        "the other is 2.0×. The pair also pays one cold trial worker (the server keeps one warm spare; "
        "a new worker imports scikit-learn: 3-7 s on this box), and other tenants' load counts.",
    )
    if size.reference_trials:
        ref_one, ref_two, finished = _reference(ctx, size)
        shown = fmt_seconds(ref_two) if finished else f"> {fmt_seconds(REFERENCE_CAP_SECONDS)} (stopped)"
        section.rows.append(Row(NAME, "reference: the same pair unbounded (every fit on every core), two over one",
                                f"{shown} for two", f"{fmt_seconds(ref_one)} for one",
                                f"{ref_two / ref_one:.2f}×" + ("" if finished else " or more"), "", None))
        section.add(f"- Reference ({size.reference_trials} trial(s) per job): `cores` set to twice the machine, "
                    "so each fit starts one OpenMP thread per core, as every fit did before threads were "
                    f"bounded; the pair is stopped after {REFERENCE_CAP_SECONDS:.0f} s.")
    return section
