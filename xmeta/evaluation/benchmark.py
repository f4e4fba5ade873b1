"""`xmeta benchmark`: every method on the same encoder, split, shot sets and seeds.

Each number is cached as one JSON file per (method, target, K, seed) and each trained model as
a model folder, so an interrupted run resumes where it stopped and adding a method or a seed
reuses everything already measured. Every cached file is named by the fingerprint of what
determines it (card, rows, encoder weights, flags, budget, shots, test rows, xmeta version), so
changed settings are recomputed, never served. The report (`benchmark_report`) is rebuilt from
the cache.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..adapt import centre_texts
from ..arguments import BaseEncoderArguments
from ..coverage import measure_coverage
from ..data import LanguageTask, load_language_tasks, load_task_card, sample_k_shot
from ..data.preflight import episode_problems, shot_problems
from ..data.romanize import romanize_targets
from ..encoders import load_encoder, resolve_encoder
from ..meta.batch import LabelledBatch
from ..modeling import META_ADAPTER, XMetaForSequenceClassification
from .baselines import FrozenEncoderProbe, score_batch, supervised_finetune
from .benchmark_cache import JOINT_LR, PROBE_C_GRID, write_record
from .benchmark_models import BenchmarkModels, pooled_sample, stratified_rows
from .benchmark_plan import ALL_ROWS, Method, Plan, check_budgets

SCRATCH = "bench"  # adapter name for one adaptation, dropped after scoring


class Benchmark(BenchmarkModels):
    """Runs a `Plan` into ``out`` (``out/cache``: numbers; ``out/models``: trained models, `BenchmarkModels`),
    every file named by the fingerprint of its settings (`BenchmarkCache`)."""

    def __init__(self, plan: Plan, out: Path, task: str, encoder: str) -> None:
        self.plan, self.out, self.task, self.encoder = plan, out, task, encoder
        self.card = load_task_card(task)
        self.labels = list(self.card.labels)
        self.langs = plan.targets + plan.extra_targets
        self.sources = plan.sources or list(self.card.sources)
        self.train = load_language_tasks(self.card, self.langs, "train")
        self.full_test = load_language_tasks(self.card, self.langs, "test")
        self.test_rows = {lang: stratified_rows(self.full_test[lang], plan.test_per_class, seed=0) for lang in self.langs}
        self.test = {lang: self.full_test[lang].subset(rows) for lang, rows in self.test_rows.items()}
        self.romanized = romanize_targets(self.train, self.test, plan.romanize, encoder)
        self.source_train = load_language_tasks(self.card, self.sources, "train")
        self.source_dev = load_language_tasks(self.card, self.sources, "dev")
        self.identify()
        check_budgets(plan, self.n_way())

    # -------------------------------------------------------------- preflight
    def preflight(self) -> list[str]:
        """Every data shortfall the planned runs would meet, found before any training."""
        kinds = {m.kind for m in self.plan.methods}
        problems = []
        if "xmeta" in kinds:
            problems += episode_problems(self.source_train, self.source_dev, k_shot=self.plan.k_shot,
                                         k_query=self.plan.k_query, n_way=0, meta_batch=self.plan.meta_batch,
                                         dev_episodes=self.dev_episodes)
        if kinds & set(self.plan.tuning_grid):
            k = self.plan.tuning_k
            problems += shot_problems([self.source_dev[lang] for lang in self.tuning_langs()], "dev", k + 1,
                                      f"adaptation tuning (K={k} shots + held-out rows)")
        max_k = max((k for m in self.plan.runs() for k in self.plan.shots_for(m) if k != ALL_ROWS), default=0)
        problems += shot_problems(self.train.values(), "train", max_k, f"K={max_k} shots")
        problems += shot_problems(self.full_test.values(), "test", 1, "macro-F1 over every label")
        return problems

    def examples(self, task: LanguageTask, rows: list[int]) -> list[tuple[str, str]]:
        return [(task.texts[i], self.labels[task.labels[i]]) for i in rows]

    # ------------------------------------------------------------------- runs
    def run(self) -> None:
        for method in self.plan.runs():
            if not any(self.pending(method, lang) for lang in self.langs):
                continue
            runner = {"probe": self.run_probe, "oracle": self.run_oracle}.get(method.kind, self.run_adapting)
            runner(method)
            gc.collect()

    def progress(self, method: Method) -> Iterator[tuple[str, list[tuple[int, int]]]]:
        for lang in tqdm(self.langs, desc=method.label, unit="lang", dynamic_ncols=True):
            todo = self.pending(method, lang)
            if todo:
                yield lang, todo

    def test_batch(self, model, lang: str) -> LabelledBatch:
        with torch.inference_mode():
            return LabelledBatch.build(model, self.test[lang].texts, self.test[lang].labels)

    def run_adapting(self, method: Method) -> None:
        """K=0 scores θ (with an adapter generator: the adapter it generates for the target); K>0 adapts a
        scratch copy of θ on the shot set and scores it.

        Runs go K by K over all targets (small K first), so a run stopped early leaves complete
        columns. Test batches are built once per target, except with the meta-embedding on, whose
        per-language target view changes what the lower layers compute."""
        model = self.model_for(method)
        options = self.adapt_options(method, model)
        generates = model.adapter_generator is not None  # it reads the texts' language (no other model is told:
        # the texts arrive romanised already, and the adapter's name decides nothing else)
        todo = {lang: set(self.pending(method, lang)) for lang in self.langs}
        batches: dict[str, LabelledBatch] = {}

        def test_batch(lang: str) -> LabelledBatch:
            if model.config.meta_embedding:
                return self.test_batch(model, lang)
            if lang not in batches:
                batches[lang] = self.test_batch(model, lang)
            return batches[lang]

        for k, seed in tqdm(sorted(set().union(*todo.values())), desc=method.label, unit="K,seed", dynamic_ncols=True):
            for lang in [lang for lang in self.langs if (k, seed) in todo[lang]]:
                if k == 0 and not generates and not method.centres_on_text:
                    self.record(method, lang, k, seed, score_batch(model, test_batch(lang), META_ADAPTER))
                    continue
                rows = self.shots(lang, k, seed) if k else []
                text = self.target_text_options(method, model, lang) if k or method.centres_on_text else {}
                result = model.adapt(self.examples(self.train[lang], rows), lang=SCRATCH, seed=seed,
                                     language=lang if generates else None, **options, **text)
                scores = score_batch(model, test_batch(lang), SCRATCH)
                model.drop_language(SCRATCH)
                self.record(method, lang, k, seed, scores, adapt_seconds=round(result.seconds, 3),
                            target_view="train_meta_embedding" in text, adapt=options)

    def adapt_options(self, method: Method, model) -> dict:
        """Adaptation settings: xmeta uses what meta-training chose (its steps on source dev episodes);
        baselines get a learning rate and a number of steps tuned on held-out source data (see
        `tune_adaptation`)."""
        if method.kind in self.plan.tuning_grid:
            return self.tune_adaptation(method, model)
        return {"steps": self.plan.adapt_steps} if method.kind != "xmeta" else {}

    def target_text_options(self, method: Method, model, lang: str) -> dict:
        """The target's unlabelled text (the texts of its training split, labels unused): a row that centres on
        it gets it always (`adapt_language`'s ``target_text``). With ``--target_text train``, what `xmeta coverage`
        recommends: with the meta-embedding on, a language the vocabulary covers poorly also gets its own target
        view, a unigram model of that text (and no centring: those rows are scored as they always were)."""
        texts = self.train[lang].texts
        if method.centres_on_text:
            return {"target_text": texts}
        if self.plan.target_text != "train" or not method.reads_target_text:
            return {}
        if not measure_coverage(model.tokenizer, lang, texts).poorly_covered:
            return {}
        return {"train_meta_embedding": True, "target_text": texts, "centre_on_text": False}

    def tune_adaptation(self, method: Method, model) -> dict:
        """Pick the adaptation rate and steps on source dev data only: K shots of a few source
        languages' dev rows, scored on the rest of their dev rows (B2 and B3 alike)."""
        record = self.tuning_file(method)
        if record.exists():
            choice = json.loads(record.read_text())
            return {"lr": choice["lr"], "steps": choice["steps"]}
        table = {}
        for lr in self.plan.tuning_grid[method.kind]:
            for steps in self.plan.tuning_steps:
                scores = []
                for lang in self.tuning_langs():
                    dev = self.source_dev[lang]
                    rows = sample_k_shot(dev, self.plan.tuning_k, seed=0)
                    rest = [i for i in range(len(dev)) if i not in set(rows)]
                    model.adapt(self.examples(dev, rows), lang=SCRATCH, steps=steps, lr=lr, seed=0)
                    with torch.inference_mode():
                        held = LabelledBatch.build(model, [dev.texts[i] for i in rest], [dev.labels[i] for i in rest])
                    scores.append(score_batch(model, held, SCRATCH)["macro_f1"])
                    model.drop_language(SCRATCH)
                table[(lr, steps)] = float(np.mean(scores))
        lr, steps = max(table, key=table.get)
        write_record(record, {"lr": lr, "steps": steps, "fingerprint": self.tuning_fingerprint(method),
                              "dev_macro_f1": [{"lr": a, "steps": b, "macro_f1": f} for (a, b), f in table.items()],
                              "pseudo_targets": self.tuning_langs(), "k": self.plan.tuning_k})
        return {"lr": lr, "steps": steps}

    def run_oracle(self, method: Method) -> None:
        """B1 fine-tuned on all of the target's training rows (AdamW, fixed epochs: no target dev data)."""
        model = XMetaForSequenceClassification.from_pretrained(self.joint_model(method))
        for lang, todo in self.progress(method):
            task = self.train[lang]
            model.start_language(SCRATCH)
            steps = max(1, int(self.plan.oracle_epochs * len(task) / self.plan.joint_batch))
            result = supervised_finetune(model, task.texts, task.labels, steps=steps, batch_size=self.plan.joint_batch,
                                         lr=JOINT_LR, seed=0, desc=f"oracle {lang}")
            scores = score_batch(model, self.test_batch(model, lang), SCRATCH)
            model.drop_language(SCRATCH)
            for k, seed in todo:
                self.record(method, lang, k, seed, scores, adapt_seconds=round(result.seconds, 3),
                            train_rows=len(task))

    def run_probe(self, method: Method) -> None:
        """B4: sources' features (a stratified sample per language) plus the K target examples,
        the latter weighted so they count as much as one source language. With ``centres_on_text``
        (`probe+text`), every language's features are first centred on the mean feature of its training texts
        (labels unused; `centre_texts`, sources and targets alike), as `xmeta+text` centres its prototypes."""
        encoder, tokenizer = load_encoder(resolve_encoder(self.encoder))
        probe = FrozenEncoderProbe(encoder, tokenizer, resolve_encoder(self.encoder).prefix, BaseEncoderArguments.max_length)
        start = time.perf_counter()
        centres: dict[str, np.ndarray] = {}

        def features(texts: list[str], langs: list[str]) -> np.ndarray:
            x = probe.features(texts)
            if not method.centres_on_text:
                return x
            for lang in set(langs) - set(centres):
                task = self.source_train[lang] if lang in self.source_train else self.train[lang]
                centres[lang] = probe.features(centre_texts(task.texts)).mean(0)
            return x - np.stack([centres[lang] for lang in langs])

        src_texts, src_y, src_langs = pooled_sample(self.source_train, self.plan.probe_per_class)
        src_x = features(src_texts, src_langs)
        c = self.tune_probe(probe, src_x, src_y, features)
        per_language = len(src_y) / len(self.source_train)
        for lang, todo in self.progress(method):
            test_x = features(self.test[lang].texts, [lang] * len(self.test[lang]))
            for k, seed in todo:
                ids = self.shots(lang, k, seed) if k else []
                shots = [self.train[lang].texts[i] for i in ids]
                x = np.concatenate([src_x, features(shots, [lang] * len(ids))]) if ids else src_x
                y = src_y + [self.train[lang].labels[i] for i in ids]
                weights = np.concatenate([np.ones(len(src_y)), np.full(len(ids), per_language / max(1, len(ids)))])
                fit_start = time.perf_counter()
                classifier = probe.fit(x, y, c, weights)
                scores = probe.score(classifier, test_x, self.test[lang].labels)
                self.record(method, lang, k, seed, scores, adapt_seconds=round(time.perf_counter() - fit_start, 3))
        write_record(self.train_record(method), {"seconds": round(time.perf_counter() - start, 1), "C": c,
                                                 "source_rows": len(src_y),
                                                 "fingerprint": self.model_fingerprint(method)})

    def tune_probe(self, probe: FrozenEncoderProbe, x: np.ndarray, y: list[int],
                   features: Callable[[list[str], list[str]], np.ndarray]) -> float:
        """Regularisation strength chosen on source dev rows (read by ``features``, as the probe reads every row)."""
        dev_texts, dev_y, dev_langs = pooled_sample(self.source_dev, self.plan.dev_per_class)
        dev_x = features(dev_texts, dev_langs)
        grid = {c: probe.score(probe.fit(x, y, c), dev_x, dev_y)["macro_f1"] for c in PROBE_C_GRID}
        return max(grid, key=grid.get)
