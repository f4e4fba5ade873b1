"""`xmeta benchmark`: every baseline and xmeta variant on the same splits, shots and seeds, or the speed benchmark."""

from __future__ import annotations

from pathlib import Path

from ..arguments import BenchmarkCommand, split_list
from ..data import load_task_card
from ..data.preflight import raise_problems
from ..errors import ArgumentError, DataError
from ..evaluation.benchmark import Benchmark
from ..evaluation.benchmark_plan import plan_from
from ..evaluation.benchmark_report import BenchmarkReport
from ..evaluation.speed import VARIANTS_BY_NAME, speed_benchmark


def benchmark_folder(cmd: BenchmarkCommand) -> Path:
    return Path(cmd.out or ("runs/benchmark-quick" if cmd.quick else "runs/benchmark"))


def run_benchmark(cmd: BenchmarkCommand, command: str) -> BenchmarkReport:
    """Run every cell not cached yet (none with ``cmd.report_only``; re-run to resume), then write results.json/.md/.png
    quoting ``command``."""
    card = load_task_card(cmd.task)
    bench = Benchmark(plan_from(cmd, card.targets, card.report_separately), benchmark_folder(cmd), cmd.task, cmd.encoder)
    if cmd.update_readme and not Path(cmd.update_readme).is_file():
        raise DataError(f"{cmd.update_readme}: file not found (--update_readme)")
    if not cmd.report_only:
        raise_problems(bench.preflight())
        bench.run()
    report = BenchmarkReport(bench, command)
    report.write()
    return report


def run_speed_benchmark(cmd: BenchmarkCommand) -> dict:
    """Seconds per meta-step of each speed-up in turn, each variant in its own process."""
    if cmd.speed_steps < 1:
        raise ArgumentError(f"--speed_steps must be at least 1 (got {cmd.speed_steps})")
    only = tuple(split_list(cmd.speed_variants, "--speed_variants")) if cmd.speed_variants else ()
    unknown = [name for name in only if name not in VARIANTS_BY_NAME]
    if unknown:
        raise ArgumentError(f"--speed_variants: unknown variant {unknown[0]!r} (one of {', '.join(VARIANTS_BY_NAME)})")
    return speed_benchmark(benchmark_folder(cmd), steps=cmd.speed_steps, task=cmd.task, encoder=cmd.encoder, only=only)
