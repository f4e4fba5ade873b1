#!/usr/bin/env python
"""Meta-embedding ablation on the embedded encoder and CLDR: meta-train with the layer on or off, then
the K-shot protocol on held-out targets (same seeds for both arms).

    python scripts/meta_embedding_ablation.py --meta_embedding on  --out runs/me-on
    python scripts/meta_embedding_ablation.py --meta_embedding off --out runs/me-off

Writes results.json (median seconds per meta-step, macro-F1 per target and K) and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import transformers

from xmeta import XMetaForSequenceClassification
from xmeta.data import EpisodeSampler, load_language_tasks, load_task_card
from xmeta.evaluation import few_shot_evaluation
from xmeta.fileio import atomic_directory, write_json
from xmeta.meta import MetaTrainer, MetaTrainingArguments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meta_embedding", choices=["on", "off"], required=True)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--targets", default="chr,yo,ha,am")
    parser.add_argument("--shots", default="4,16")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    card = load_task_card("cldr-emoji")
    model = XMetaForSequenceClassification.for_labels(card.labels, task=card.name, max_length=64,
                                                      meta_embedding=args.meta_embedding == "on")
    train_args = MetaTrainingArguments(steps=args.steps, eval_every=0, seed=0)
    tasks = load_language_tasks(card, list(card.sources), "train")
    sampler = EpisodeSampler(tasks, None, train_args.k_shot, train_args.k_query, seed=0)
    trainer = MetaTrainer(model, sampler, train_args)
    start = time.perf_counter()
    history = trainer.train()
    train_seconds = time.perf_counter() - start
    results = {"meta_embedding": args.meta_embedding, "steps": args.steps,
               "median_step_seconds": statistics.median(h.seconds for h in history),
               "train_seconds": train_seconds, "targets": {}}
    shots = [int(k) for k in args.shots.split(",")]
    for lang in args.targets.split(","):
        train = load_language_tasks(card, [lang], "train")[lang]
        test = load_language_tasks(card, [lang], "test")[lang]
        evaluation = few_shot_evaluation(model, train, test, shots, list(range(args.seeds)))
        results["targets"][lang] = {str(k): round(v["macro_f1_mean"], 4) for k, v in evaluation.summary().items()}
        print(lang, results["targets"][lang], flush=True)
    with atomic_directory(Path(args.out), overwrite=True) as tmp:
        write_json(tmp / "results.json", results)
    print(results)


if __name__ == "__main__":
    main()
