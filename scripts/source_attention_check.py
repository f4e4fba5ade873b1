#!/usr/bin/env python
"""Does source attention help, and does it pick the obvious relatives? Measured on the embedded encoder.

    python scripts/source_attention_check.py [--steps 60] [--seeds 3] [--out runs/source-attention]

1. Meta-trains two models on the 20 default CLDR sources with the same seed: source attention off / on.
2. K=4 macro-F1 on the default held-out targets for both (same shot seeds).
3. Sanity: for yue (zh), ms (id), gl (pt/es), be (ru/uk), adapt on 4 examples per class and
   report every source's attention mass; the top one should be the named relative.
4. Seconds per meta-step with 0, 8 and 20 sources in the bank (same episodes, side by side).
Writes results.json, results.md and macro_f1_by_target.png.

    python scripts/source_attention_check.py --model runs/benchmark/models/xmeta+route-<id> --out runs/close-pairs

runs only step 3 on a model meta-trained elsewhere (e.g. a benchmark row with source attention).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from xmeta import XMetaForSequenceClassification  # noqa: E402
from xmeta.cli import main as xmeta  # noqa: E402
from xmeta.data import EpisodeSampler, load_language_tasks, load_task_card, sample_k_shot  # noqa: E402
from xmeta.evaluation import few_shot_evaluation  # noqa: E402
from xmeta.evaluation.explain import explain_sources  # noqa: E402
from xmeta.fileio import atomic_directory, write_json  # noqa: E402
from xmeta.meta import FirstOrderMAML, InnerLoop, LabelledBatch  # noqa: E402
from xmeta.modeling.components import MetaTrainingRun  # noqa: E402

RELATIVES = {"yue": ["zh"], "ms": ["id"], "gl": ["pt", "es"], "be": ["ru", "uk"]}


def step_seconds(card, tasks, n_sources: int, repeats: int = 3) -> float:
    """Median meta-step time with ``n_sources`` languages in the bank (0: attention off)."""
    torch.manual_seed(0)
    sources = list(card.sources)[:n_sources] if n_sources else list(card.sources)
    model = XMetaForSequenceClassification.for_labels(card.labels, source_languages=sources, source_attention=n_sources > 0)
    if n_sources:
        model.components["source_attention"].before_meta_training(model, MetaTrainingRun({lang: tasks[lang] for lang in sources}, seed=0, adapt_steps=3))
    model.train()
    maml = FirstOrderMAML(model, InnerLoop(0.05, 3))
    sampler = EpisodeSampler(tasks, None, 4, 4, seed=0)
    times = []
    for _ in range(repeats + 1):
        episodes = sampler.sample_meta_batch(4)
        start = time.perf_counter()
        built = [(ep.lang, LabelledBatch.build(model, ep.support_texts, ep.support_labels),
                  LabelledBatch.build(model, ep.query_texts, ep.query_labels)) for ep in episodes]
        maml.meta_gradient(built)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="runs/source-attention")
    parser.add_argument("--modes", default="off,on", help="which models to train and compare")
    parser.add_argument("--no_targets", action="store_true", help="skip the K=4 comparison (sanity and timing only)")
    parser.add_argument("--no_timing", action="store_true")
    parser.add_argument("--model", help="a meta-trained folder with source attention: only the close-pair check on it")
    args = parser.parse_args()
    if args.model:
        if not (Path(args.model) / "config.json").is_file():
            parser.error(f"--model: {args.model} has no config.json (not a meta-trained model folder)")
        args.modes, args.no_targets, args.no_timing = "on", True, True
    transformers.logging.set_verbosity_error()
    out = Path(args.out)
    card = load_task_card("cldr-emoji")
    results: dict = {"steps": args.steps, "seeds": args.seeds, "targets": {}, "sanity": {}, "step_seconds": {}}

    tasks = load_language_tasks(card, None, "train")
    for n in () if args.no_timing else (0, 8, 20):
        results["step_seconds"][n] = step_seconds(card, tasks, n)
        print(f"meta-step with {n} sources: {results['step_seconds'][n]:.2f} s", flush=True)

    models = {}
    modes = args.modes.split(",")
    for mode in modes:
        folder = Path(args.model) if args.model else out / f"meta-{mode}"
        if not (folder / "config.json").is_file():
            assert xmeta(["meta-train", "--out", str(folder), "--steps", str(args.steps), "--source_attention", mode,
                          "--overwrite"]) == 0
        models[mode] = XMetaForSequenceClassification.from_pretrained(folder)

    for lang in () if args.no_targets else card.targets:
        train, test = (load_language_tasks(card, [lang], split)[lang] for split in ("train", "test"))
        row = {}
        for mode, trained in models.items():
            ev = few_shot_evaluation(trained, train, test, [4], list(range(args.seeds)))
            row[mode] = ev.summary()[4]
        results["targets"][lang] = row
        print(lang, {m: round(r["macro_f1_mean"], 3) for m, r in row.items()}, flush=True)

    model = models.get("on")
    for lang, relatives in RELATIVES.items() if model is not None else ():
        train = load_language_tasks(card, [lang], "train")[lang]
        ids = sample_k_shot(train, 4, 0)
        model.adapt([(train.texts[i], card.labels[train.labels[i]]) for i in ids], lang=lang)
        profile = explain_sources(model, train.texts[:256], lang, lang)
        top = profile.ranked()[0][0]
        closest = max(zip(profile.cosine, profile.sources))[1]
        results["sanity"][lang] = {"relatives": relatives, "top": top, "ok": top in relatives, "closest_by_cosine": closest,
                                   "attention": dict(zip(profile.sources, profile.attention)),
                                   "cosine": dict(zip(profile.sources, profile.cosine))}
        print(lang, "top source", top, "expected", relatives, flush=True)

    mean = {m: statistics.fmean(r[m]["macro_f1_mean"] for r in results["targets"].values()) if results["targets"] else float("nan")
            for m in modes}
    results["mean_macro_f1_k4"] = mean
    lines = []
    if results["targets"]:
        lines += [f"K=4 macro-F1 (mean ± std over {args.seeds} seeds), {args.steps} meta-steps each", "",
                  "| target | " + " | ".join(f"attention {m}" for m in modes) + " |", "|---|" + "---|" * len(modes)]
        for lang, row in results["targets"].items():
            lines.append(f"| {lang} | " + " | ".join(f"{row[m]['macro_f1_mean']:.3f} ± {row[m]['macro_f1_std']:.3f}"
                                                    for m in modes) + " |")
        lines += ["| **mean** | " + " | ".join(f"{mean[m]:.3f}" for m in modes) + " |", ""]
    if args.model:
        lines += [f"Model: `{args.model}`", ""]
    lines += ["| target | expected | top source (attention) | top-3 attention | closest (centred cosine) |",
              "|---|---|---|---|---|"]
    for lang, s in results["sanity"].items():
        top3 = sorted(s["attention"].items(), key=lambda kv: -kv[1])[:3]
        lines.append(f"| {lang} | {'/'.join(s['relatives'])} | {s['top']} {'✓' if s['ok'] else '✗'} | "
                     + ", ".join(f"{k} {v:.3f}" for k, v in top3) + f" | {s['closest_by_cosine']} |")
    if results["step_seconds"]:
        lines += ["", "| sources in bank | s / meta-step |", "|---:|---:|"]
        lines += [f"| {n} | {t:.2f} |" for n, t in results["step_seconds"].items()]
    table = "\n".join(lines) + "\n"
    with atomic_directory(out / "report", overwrite=True) as tmp:
        write_json(tmp / "results.json", results)
        (tmp / "results.md").write_text(table, encoding="utf-8")
        langs = list(results["targets"])
        if langs:
            fig, ax = plt.subplots(figsize=(7, 3.5))
            for k, mode in enumerate(modes):
                ax.bar([i + 0.4 * k for i in range(len(langs))], [results["targets"][t][mode]["macro_f1_mean"] for t in langs],
                       width=0.4, label=f"attention {mode}")
            ax.set_xticks([i + 0.2 for i in range(len(langs))], langs)
            ax.set_ylabel("macro-F1, K=4")
            ax.legend()
            fig.tight_layout()
            fig.savefig(tmp / "macro_f1_by_target.png", dpi=120)
            plt.close(fig)
    print(table, end="")


if __name__ == "__main__":
    main()
