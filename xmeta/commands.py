"""What each `xmeta` subcommand does, given its parsed argument dataclasses: call its job (`xmeta.jobs`), print."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .arguments import (
    AdaptCommand,
    BenchmarkCommand,
    CoverageCommand,
    DataArguments,
    EvaluateCommand,
    ExplainCommand,
    PredictCommand,
    PrepareEncoderCommand,
)


def prepare_encoder(cmd: PrepareEncoderCommand) -> int:
    from .encoders import embedded_encoder_path

    print(embedded_encoder_path(force=cmd.force))
    return 0


def adapt(cmd: AdaptCommand, data: DataArguments) -> int:
    from .jobs.adapt import adapt_model

    _, result = adapt_model(cmd, data)
    if not result.examples:
        print(f"generated the adapter of {cmd.lang} (zero-shot) in {result.seconds:.1f} s; saved {cmd.out}")
        return 0
    print(f"adapted {cmd.lang} on {result.examples} examples in {result.seconds:.1f} s "
          f"({result.steps} step{'s' * (result.steps != 1)}, support loss {result.support_loss:.3f}); saved {cmd.out}")
    return 0


def evaluate(cmd: EvaluateCommand, data: DataArguments) -> int:
    from .evaluation import markdown_table
    from .jobs.evaluate import run_protocol, score_model

    if cmd.shots:
        print(markdown_table([run_protocol(cmd, data)]), end="")
    else:
        print(json.dumps(score_model(cmd, data)))
    return 0


def predict(cmd: PredictCommand) -> int:
    from .jobs.predict import predict_rows

    for row in predict_rows(cmd):
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
    return 0


def explain(cmd: ExplainCommand, data: DataArguments) -> int:
    from .jobs.explain import explain_model

    print(explain_model(cmd, data).markdown(), end="")
    return 0


def coverage(cmd: CoverageCommand, data: DataArguments) -> int:
    from .coverage import coverage_table
    from .jobs.coverage import measure_languages

    print(coverage_table(*measure_languages(cmd, data)), end="")
    return 0


def reproducing_command(argv: list[str]) -> str:
    """The benchmark command as the report quotes it: without the flags that only (re)write the report."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--report_only":
            continue
        elif arg == "--update_readme":
            skip = True
        elif not arg.startswith("--update_readme="):
            kept.append(arg)
    return " ".join(["xmeta benchmark", *kept])


def benchmark(cmd: BenchmarkCommand) -> int:
    """Every baseline and xmeta variant on the same splits, shots and seeds (cached; re-run to resume)."""
    from .evaluation.benchmark_report import update_readme
    from .evaluation.speed import speed_markdown
    from .jobs.benchmark import benchmark_folder, run_benchmark, run_speed_benchmark

    if cmd.speed:
        print(speed_markdown(run_speed_benchmark(cmd)), end="")
        return 0
    report = run_benchmark(cmd, reproducing_command(sys.argv[2:] if sys.argv[1:2] == ["benchmark"] else []))
    out = benchmark_folder(cmd)
    print(f"{out}: {len(report.runs)} cells match the current settings; {report.stale} cached under other "
          "settings (stale) are not reported", file=sys.stderr)
    if cmd.update_readme:
        update_readme(Path(cmd.update_readme), report.markdown(), report.bench.card.name)
    print((out / "results.md").read_text(encoding="utf-8"), end="")
    return 0
