#!/usr/bin/env python
"""Which input reads a poorly covered language best: its own script, romanised (uroman), or both?

    OMP_NUM_THREADS=1 python scripts/romanize_views.py --model runs/benchmark/models/xmeta-<id> --out runs/romanize-views

One meta-trained model, one target language (default: Cherokee on cldr-emoji), three ways to read it:
``original`` (the script as written), ``romanized`` (what `--romanize auto` does for it) and ``both``
("original | romanised", one text). Every view is scored on the benchmark's own shot sets and test rows
(the same items per K and seed as `xmeta benchmark`), adapting with the steps the model's meta-training
chose, so the ``romanized`` cells equal the benchmark's. Writes results.json and results.md.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from pathlib import Path

import torch
import transformers

from xmeta import XMetaForSequenceClassification
from xmeta.arguments import BenchmarkCommand
from xmeta.data import load_task_card
from xmeta.data.romanize import romanize_string
from xmeta.evaluation.baselines import score_batch
from xmeta.evaluation.benchmark import Benchmark
from xmeta.evaluation.benchmark_plan import plan_from
from xmeta.fileio import atomic_directory, write_json
from xmeta.meta import LabelledBatch
from xmeta.modeling import META_ADAPTER

VIEWS: dict[str, Callable[[str], str]] = {
    "original": lambda text: text,
    "romanized": romanize_string,
    "both": lambda text: f"{text} | {romanize_string(text)}",
}


def score_view(model, bench: Benchmark, lang: str, view: Callable[[str], str], shots: list[int],
               seeds: int) -> dict[str, list[float]]:
    """Macro-F1 per K (one per shot seed; K=0 scores θ once) with ``lang``'s texts read through ``view``."""
    test = bench.test[lang]
    with torch.inference_mode():
        batch = LabelledBatch.build(model, [view(t) for t in test.texts], test.labels)
    scores: dict[str, list[float]] = {}
    for k in shots:
        if k == 0:
            scores["0"] = [score_batch(model, batch, META_ADAPTER)["macro_f1"]]
            continue
        scores[str(k)] = []
        for seed in range(seeds):
            examples = [(view(text), label) for text, label in bench.examples(bench.train[lang], bench.shots(lang, k, seed))]
            model.adapt(examples, lang=lang, seed=seed)
            scores[str(k)].append(score_batch(model, batch, lang)["macro_f1"])
            model.drop_language(lang)
    return scores


def markdown(results: dict) -> str:
    shots = results["shots"]
    lines = [f"Macro-F1 of `{results['lang']}` ({results['task']}), mean ± std over {results['seeds']} shot seeds, "
             f"model `{results['model']}`.", "",
             "| view | " + " | ".join(f"K={k}" for k in shots) + " |", "|---|" + "---:|" * len(shots)]
    for view, scores in results["views"].items():
        cells = [f"{statistics.mean(s):.3f} ± {statistics.pstdev(s):.3f}" if len(s) > 1 else f"{s[0]:.3f}"
                 for s in (scores[str(k)] for k in shots)]
        lines.append(f"| {view} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a meta-trained xmeta model folder")
    parser.add_argument("--task", default="cldr-emoji")
    parser.add_argument("--lang", default="chr")
    parser.add_argument("--views", default=",".join(VIEWS), help=f"comma-separated, of {', '.join(VIEWS)}")
    parser.add_argument("--shots", default="0,4,16")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    views = args.views.split(",")
    if unknown := [v for v in views if v not in VIEWS]:
        parser.error(f"--views: {', '.join(unknown)} not one of {', '.join(VIEWS)}")
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)
    card = load_task_card(args.task)
    cmd = BenchmarkCommand(task=args.task, romanize="off")  # the views decide how the target is read
    bench = Benchmark(plan_from(cmd, card.targets, card.report_separately), Path(args.out), args.task, cmd.encoder)
    if args.lang not in bench.test:
        parser.error(f"--lang: {args.lang} is not a target of {args.task} ({', '.join(sorted(bench.test))})")
    model = XMetaForSequenceClassification.from_pretrained(args.model, lang=META_ADAPTER)
    model.config.romanize = "off"  # read each view as given, even where the model decided the language before
    model.config.romanized_languages = [lang for lang in model.config.romanized_languages if lang != args.lang]
    shots = [int(k) for k in args.shots.split(",")]
    results = {"model": args.model, "task": args.task, "lang": args.lang, "shots": shots, "seeds": args.seeds, "views": {}}
    for view in views:
        results["views"][view] = score_view(model, bench, args.lang, VIEWS[view], shots, args.seeds)
        print(view, {k: round(statistics.mean(s), 4) for k, s in results["views"][view].items()}, flush=True)
    with atomic_directory(Path(args.out), overwrite=True) as tmp:
        write_json(tmp / "results.json", results)
        (tmp / "results.md").write_text(markdown(results), encoding="utf-8")
    print(markdown(results))


if __name__ == "__main__":
    main()
