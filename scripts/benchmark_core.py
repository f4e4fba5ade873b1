#!/usr/bin/env python
"""Core speed numbers on the embedded encoder: seconds per meta-step, adaptation time, peak RSS.

    python scripts/benchmark_core.py [--steps 8] [--out runs/bench-core]

One meta-step = 4 languages, 8-way 4-shot support and 4-shot query, 3 inner SGD steps (the
defaults of `xmeta meta-train`). Adaptation = 32 examples (4 per class) of a held-out language.
Medians after one warm-up; writes results.json and results.md.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import time
from pathlib import Path

import torch
import transformers

from xmeta import XMetaForSequenceClassification, __version__
from xmeta.data import EpisodeSampler, load_language_tasks, load_task_card, sample_k_shot
from xmeta.fileio import atomic_directory, write_json
from xmeta.meta import MetaTrainer, MetaTrainingArguments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--adapt_runs", type=int, default=3)
    parser.add_argument("--target", default="yo")
    parser.add_argument("--out", default="runs/bench-core")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)

    card = load_task_card("cldr-emoji")
    model = XMetaForSequenceClassification.for_labels(card.labels, task=card.name)
    train_args = MetaTrainingArguments(steps=args.steps, eval_every=0)
    sampler = EpisodeSampler(load_language_tasks(card, None, "train"), None, train_args.k_shot, train_args.k_query, seed=0)
    trainer = MetaTrainer(model, sampler, train_args)
    model.train()
    trainer.step()  # warm-up
    step_seconds = []
    for _ in range(args.steps):
        start = time.perf_counter()
        trainer.step()
        step_seconds.append(time.perf_counter() - start)

    target = load_language_tasks(card, [args.target], "train")[args.target]
    adapt_seconds = []
    for seed in range(args.adapt_runs + 1):
        ids = sample_k_shot(target, 4, seed)
        result = model.adapt([(target.texts[i], card.labels[target.labels[i]]) for i in ids], lang=args.target, seed=seed)
        adapt_seconds.append(result.seconds)
    adapt_seconds = adapt_seconds[1:]  # first run warms up

    results = {
        "meta_step": {"languages": train_args.meta_batch, "n_way": 8, "k_shot": train_args.k_shot,
                      "k_query": train_args.k_query, "inner_steps": train_args.inner_steps,
                      "median_seconds": statistics.median(step_seconds), "all_seconds": step_seconds},
        "adapt": {"examples": result.examples, "steps": result.steps, "median_seconds": statistics.median(adapt_seconds),
                  "all_seconds": adapt_seconds},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "versions": {"xmeta": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
        "machine": platform.machine(),
    }
    table = (
        "| measure | value |\n|---|---|\n"
        f"| meta-step (4 langs, 8-way 4+4-shot, 3 inner steps), median of {args.steps} | "
        f"{results['meta_step']['median_seconds']:.2f} s |\n"
        f"| adapt on 32 examples ({result.steps} steps), median of {args.adapt_runs} | {results['adapt']['median_seconds']:.2f} s |\n"
        f"| peak RSS | {results['peak_rss_mb']:.0f} MB |\n| torch threads | {results['threads']} |\n"
    )
    with atomic_directory(Path(args.out), overwrite=True) as tmp:
        write_json(tmp / "results.json", results)
        (tmp / "results.md").write_text(table, encoding="utf-8")
    print(table, end="")


if __name__ == "__main__":
    main()
