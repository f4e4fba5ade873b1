#!/usr/bin/env python
"""Meta-embedding ablation on the embedded encoder and CLDR: meta-train with the layer on or off, then
the K-shot protocol on held-out targets (same seeds for both arms).

    OMP_NUM_THREADS=1 python scripts/meta_embedding_ablation.py --meta_embedding off --out runs/me-off
    OMP_NUM_THREADS=1 python scripts/meta_embedding_ablation.py --meta_embedding on --adapt_modes off,on --out runs/me-on

With the layer on, ``--adapt_modes off,on`` scores the same meta-trained model twice: adapting LoRA
only (the character view alone helps or not) and adapting a target view too (``meta_embedding_adapt``).
Writes results.json (median seconds per meta-step, macro-F1 per target, K and adapt mode) and prints it.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import time
from pathlib import Path

import torch
import transformers

from xmeta import XMetaForSequenceClassification
from xmeta.data import EpisodeSampler, LanguageTask, load_language_tasks, load_task_card
from xmeta.evaluation import few_shot_evaluation
from xmeta.fileio import atomic_directory, write_json
from xmeta.meta import MetaTrainer, MetaTrainingArguments


def subset(task: LanguageTask, limit: int) -> LanguageTask:
    """A fixed random ``limit`` rows of ``task`` (all when 0): bounded scoring time, same rows in every arm."""
    if not limit or limit >= len(task.texts):
        return task
    rows = sorted(random.Random(0).sample(range(len(task.texts)), limit))
    return dataclasses.replace(task, texts=[task.texts[i] for i in rows], labels=[task.labels[i] for i in rows],
                               item_ids=[task.item_ids[i] for i in rows] if task.item_ids else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meta_embedding", choices=["on", "off"], required=True)
    parser.add_argument("--meta_embedding_lr", type=float, default=MetaTrainingArguments.meta_embedding_lr)
    parser.add_argument("--adapt_modes", default="off", help="comma-separated: off (LoRA only), on (+ target view)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--targets", default="chr,yo,ha,am")
    parser.add_argument("--shots", default="4,16")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--test_limit", type=int, default=0, help="score at most this many test rows per target (0: all)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    card = load_task_card("cldr-emoji")
    model = XMetaForSequenceClassification.for_labels(card.labels, task=card.name, max_length=64,
                                                      meta_embedding=args.meta_embedding == "on")
    train_args = MetaTrainingArguments(steps=args.steps, eval_every=0, seed=0, meta_embedding_lr=args.meta_embedding_lr)
    tasks = load_language_tasks(card, list(card.sources), "train")
    sampler = EpisodeSampler(tasks, None, train_args.k_shot, train_args.k_query, seed=0)
    trainer = MetaTrainer(model, sampler, train_args)
    start = time.perf_counter()
    history = trainer.train()
    train_seconds = time.perf_counter() - start
    results = {**vars(args), "median_step_seconds": statistics.median(h.seconds for h in history),
               "train_seconds": train_seconds, "targets": {}}
    print(f"meta-train: {results['median_step_seconds']:.2f} s/step (median), {train_seconds:.0f} s", flush=True)
    shots = [int(k) for k in args.shots.split(",")]
    for lang in args.targets.split(","):
        train = load_language_tasks(card, [lang], "train")[lang]
        test = subset(load_language_tasks(card, [lang], "test")[lang], args.test_limit)
        for mode in args.adapt_modes.split(","):
            model.config.meta_embedding_adapt = mode == "on"
            evaluation = few_shot_evaluation(model, train, test, shots, list(range(args.seeds)))
            scores = {str(k): round(v["macro_f1_mean"], 4) for k, v in evaluation.summary().items()}
            results["targets"][f"{lang}/adapt-{mode}"] = scores
            print(lang, f"adapt-{mode}", scores, flush=True)
    with atomic_directory(Path(args.out), overwrite=True) as tmp:
        write_json(tmp / "results.json", results)
    print(results)


if __name__ == "__main__":
    main()
