#!/usr/bin/env python
"""How much does the prototype prior's weight τ matter? The shrunk prototypes alone, per estimator of τ.

    OMP_NUM_THREADS=1 python scripts/prior_check.py --model runs/benchmark/models/xmeta-<id> --out runs/prior-check

One meta-trained model (prototype head, folded), the benchmark's own shot sets and test rows; every
support is read under θ and scored with its shrunk prototypes as the head (0 adaptation steps), its
class means shrunk toward the sources' by a weight τ from:

- ``sources``: the per-language estimate with the sources' noise of one row w (before `--prior_within`);
- ``support``: with the support's own w (K=1: the sources' τ), `--prior_within support`;
- ``oracle``: w and b measured on all of the target's labelled training rows: the best a per-language
  estimate could know (a ceiling, not a method).

Writes results.json and results.md: macro-F1 per target group and K (mean ± std over shot seeds) and the
median τ each estimator chose.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
import transformers

from xmeta import XMetaForSequenceClassification
from xmeta.arguments import BenchmarkCommand
from xmeta.data import load_task_card
from xmeta.evaluation.benchmark import Benchmark
from xmeta.evaluation.benchmark_plan import plan_from
from xmeta.evaluation.metrics import classification_scores
from xmeta.fileio import atomic_directory, write_json
from xmeta.meta import LabelledBatch
from xmeta.modeling import META_ADAPTER
from xmeta.modeling.prototype_head import class_means, support_variance

ESTIMATORS = ("sources", "support", "oracle")


def read(model, texts: list[str], labels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """What the head reads for each row under θ, and the labels in the same order."""
    with torch.inference_mode():
        batch = LabelledBatch.build(model, texts, labels)
    theta = {n: p.detach() for n, p in model.fast_parameters().items()}
    return model.prototype_mix.features(model, theta, batch), batch.labels


def prior_weight(mix, features: torch.Tensor, labels: torch.Tensor, within: str) -> float:
    """τ for ``features`` (rows of one language) with the row noise ``within`` ("sources" or "support"), read in
    the model's prototype metric as adaptation reads them."""
    features = features @ mix.metric
    centred, centre, counts = class_means(features, labels, mix.source_means.shape[0])
    mix.within = within
    return mix.prior_weight(centred, counts, support_variance(features, labels, centred, centre, counts))


def shrunk_head(mix, features: torch.Tensor, labels: torch.Tensor, estimator: str,
                oracle: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The support's prototype head with τ from ``estimator``, and that τ."""
    tau = oracle if estimator == "oracle" else prior_weight(mix, features, labels, estimator)
    weight, bias = mix.support_linear(features, labels, tau)
    return weight, bias, tau


def check(model, bench: Benchmark, langs: list[str], shots: list[int], seeds: int) -> dict:
    """Per target, estimator and K: macro-F1 per shot seed and the τ chosen."""
    mix = model.prototype_mix
    results: dict = {}
    for lang in langs:
        train, test = bench.train[lang], bench.test[lang]
        # the oracle: the per-language estimate on all of the language's labelled rows
        oracle = prior_weight(mix, *read(model, train.texts, train.labels), "support")
        test_x, test_y = read(model, test.texts, test.labels)
        results[lang] = {e: {str(k): [] for k in shots} for e in ESTIMATORS}
        for k in shots:
            for seed in range(seeds):
                rows = bench.shots(lang, k, seed)
                support_x, support_y = read(model, [train.texts[i] for i in rows], [train.labels[i] for i in rows])
                for estimator in ESTIMATORS:
                    weight, bias, tau = shrunk_head(mix, support_x, support_y, estimator, oracle)
                    predicted = (test_x @ weight.T + bias).argmax(-1).tolist()
                    results[lang][estimator][str(k)].append(
                        {"macro_f1": classification_scores(test_y.tolist(), predicted)["macro_f1"], "tau": tau})
        print(lang, {e: {k: round(statistics.mean(c["macro_f1"] for c in v), 3) for k, v in r.items()}
                     for e, r in results[lang].items()}, flush=True)
    return results


def markdown(results: dict, groups: dict[str, list[str]], shots: list[int], model: str) -> str:
    lines = [f"Shrunk prototypes alone (0 adaptation steps), model `{model}`: macro-F1, mean over the group's targets "
             "(± std over shot seeds of that mean); τ: median over the group's supports.", "",
             "| targets | τ from | " + " | ".join(f"K={k}" for k in shots) + " | " + " | ".join(f"τ K={k}" for k in shots) + " |",
             "|---|---|" + "---:|" * (2 * len(shots))]
    for name, langs in groups.items():
        for estimator in ESTIMATORS:
            f1s, taus = [], []
            for k in shots:
                per_seed = [statistics.mean(results[lang][estimator][str(k)][s]["macro_f1"] for lang in langs)
                            for s in range(len(results[langs[0]][estimator][str(k)]))]
                f1s.append(f"{statistics.mean(per_seed):.3f} ± {statistics.pstdev(per_seed):.3f}")
                taus.append(f"{statistics.median(c['tau'] for lang in langs for c in results[lang][estimator][str(k)]):.3g}")
            lines.append(f"| {name} | {estimator} | " + " | ".join(f1s) + " | " + " | ".join(taus) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a meta-trained xmeta model folder (prototype head on)")
    parser.add_argument("--task", default="cldr-emoji")
    parser.add_argument("--shots", default="1,4,16")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)
    card = load_task_card(args.task)
    bench = Benchmark(plan_from(BenchmarkCommand(task=args.task), card.targets, card.report_separately), Path(args.out),
                      args.task, "embedded")
    model = XMetaForSequenceClassification.from_pretrained(args.model, lang=META_ADAPTER)
    if model.prototype_mix is None or float(model.prototype_mix.prior_rows) <= 0:
        parser.error(f"--model {args.model}: needs a prototype head folded with the source prototypes")
    shots = [int(k) for k in args.shots.split(",")]
    groups = {"mean": bench.plan.targets, **{lang: [lang] for lang in bench.plan.extra_targets}}
    results = check(model, bench, bench.langs, shots, args.seeds)
    summary = markdown(results, groups, shots, args.model)
    with atomic_directory(Path(args.out), overwrite=True) as tmp:
        write_json(tmp / "results.json", {"model": args.model, "task": args.task, "shots": shots, "seeds": args.seeds,
                                          "targets": results})
        (tmp / "results.md").write_text(summary, encoding="utf-8")
    print(summary)


if __name__ == "__main__":
    main()
