"""``python -m benchmarks.run`` — run the benchmarks, print each figure, write docs/benchmarks.md.

    python -m benchmarks.run                         # everything, full sizes (~65 min on 2 cores + ~45 min automl)
    python -m benchmarks.run --quick                 # smaller sizes, a few minutes
    python -m benchmarks.run --only pruning --only mcp_server
    python -m benchmarks.run --list
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import (
    automl,
    beat_baseline,
    dask_cluster,
    equal_budget,
    halving,
    honest_evaluation,
    mcp_latency,
    parallel_scaling,
    pruning,
    search_quality,
    shared_cores,
    tracking_overhead,
)
from benchmarks._common import (
    PROJECT_ROOT,
    NBA_DATA,
    BenchConfig,
    BenchContext,
    Section,
    load_average,
    quiet_warnings,
    verdict,
)
from benchmarks.report import render

# Order matters only for sharing: the overhead rounds measure GridSearchCV for the first seeds,
# which beat_baseline, pruning and parallel_scaling then reuse.
BENCHMARKS: dict[str, Callable[[BenchContext], Section]] = {
    tracking_overhead.NAME: tracking_overhead.run,
    beat_baseline.NAME: beat_baseline.run,
    search_quality.NAME: search_quality.run,
    pruning.NAME: pruning.run,
    parallel_scaling.NAME: parallel_scaling.run,
    mcp_latency.NAME: mcp_latency.run,
    honest_evaluation.NAME: honest_evaluation.run,
    dask_cluster.NAME: dask_cluster.run,
    halving.NAME: halving.run,
    equal_budget.NAME: equal_budget.run,
    shared_cores.NAME: shared_cores.run,
    automl.NAME: automl.run,  # FLAML and AutoGluon from .venv-automl (make bench-automl); ~45 min at full size
}
DEFAULT_REPORT = PROJECT_ROOT / "docs" / "benchmarks.md"


def run_benchmarks(ctx: BenchContext, names: list[str], *, echo: Callable[[str], None] = print) -> list[Section]:
    sections = []
    for name in names:
        echo(f"== {name} (load {load_average()})")
        started = time.perf_counter()
        section = BENCHMARKS[name](ctx)
        section.seconds = time.perf_counter() - started
        for row in section.rows:
            ratio = f" ratio {row.ratio}" if row.ratio else ""
            target = f" target {row.target}" if row.target else ""
            echo(f"   [{verdict(row.passed):8}] {row.measure}: ours {row.ours} | baseline {row.baseline}{ratio}{target}")
        echo(f"   ({section.seconds:.0f} s)")
        sections.append(section)
    return sections


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=list(BENCHMARKS), metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="smaller sizes (targets are judged on full runs)")
    sizes.add_argument("--tiny", action="store_true", help="smoke-test sizes: checks the code runs, nothing more")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"write the markdown report here (default for a full run of everything: {DEFAULT_REPORT})")
    parser.add_argument("--data-dir", type=Path, default=NBA_DATA, help="folder holding the NBA CSVs")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for name, fn in BENCHMARKS.items():
            print(f"{name}: {sys.modules[fn.__module__].TITLE}")
        return 0
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_warnings()
    config = BenchConfig.quick() if args.quick else BenchConfig.tiny() if args.tiny else BenchConfig.full()
    names = [n for n in BENCHMARKS if not args.only or n in args.only]
    output = args.output or (DEFAULT_REPORT if config.name == "full" and not args.only else None)
    started = dt.datetime.now(dt.timezone.utc)
    load_start = load_average()
    clock = time.perf_counter()
    ctx = BenchContext(config, data_dir=args.data_dir)
    try:
        sections = run_benchmarks(ctx, names)
    finally:
        ctx.close()
    elapsed = time.perf_counter() - clock
    command = "python -m benchmarks.run" + (" --quick" if args.quick else " --tiny" if args.tiny else "") + "".join(
        f" --only {n}" for n in args.only or [])
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(render(sections, config=config, started=started, elapsed=elapsed,
                                 loads=(load_start, load_average()), command=command))
        print(f"report written to {output}")
    missed = sum(row.passed is False for s in sections for row in s.rows)
    print(f"done in {elapsed / 60:.1f} min: {missed} target(s) missed")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
