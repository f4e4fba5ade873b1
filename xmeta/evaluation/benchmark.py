"""`xmeta benchmark`: every method on the same encoder, split, shot sets and seeds.

Each number is cached as one JSON file per (method, target, K, seed) and each trained model as
a model folder, so an interrupted run resumes where it stopped and adding a method or a seed
reuses everything already measured. The report (`benchmark_report`) is rebuilt from the cache.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..arguments import (
    RESUME_DEFAULT,
    BenchmarkCommand,
    DataArguments,
    EncoderArguments,
    MetaTrainCommand,
    int_list,
    split_list,
)
from ..coverage import measure_coverage
from ..data.romanize import romanize_targets
from ..data import LanguageTask, load_language_tasks, load_task_card, sample_k_shot
from ..encoders import load_encoder, resolve_encoder
from ..errors import ArgumentError
from ..fileio import write_json
from ..meta.batch import LabelledBatch
from ..meta.trainer import MetaTrainingArguments
from ..modeling import META_ADAPTER, XMetaForSequenceClassification
from .baselines import FrozenEncoderProbe, score_batch, supervised_finetune

ALL_ROWS = -1  # "K" of the oracle rows: every training row of the target
SCRATCH = "bench"  # adapter name for one adaptation, dropped after scoring


@dataclass(frozen=True)
class Method:
    """One row of the benchmark: a baseline or an xmeta variant (its flags as plain data)."""

    name: str
    kind: str  # probe | joint | joint-ft | target-only | xmeta | oracle
    description: str
    encoder_flags: dict = field(default_factory=dict)
    training_flags: dict = field(default_factory=dict)
    ablation: bool = False  # scored at the ablation shots only
    budget_scale: int = 1  # this many times the plan's training budget (xmeta's meta-steps, B1's steps)
    by_default: bool = True  # run when --methods is not given


METHODS = (
    Method("probe", "probe", "B4 frozen-encoder probe: logistic regression on mean-pooled features, sources + K target"),
    Method("joint", "joint", "B1 joint LoRA fine-tuning on all source rows (zero-shot on the target)"),
    Method("joint-ft", "joint-ft", "B2 B1 + fine-tuning on the K target examples"),
    Method("joint-ft-2x", "joint-ft", "B2 on a B1 trained twice as long (the budget of xmeta-fomaml-2x)",
           ablation=True, budget_scale=2, by_default=False),
    Method("target-only", "target-only", "B3 LoRA fine-tuning on the K target examples only"),
    Method("xmeta-fomaml", "xmeta", "xmeta, first-order MAML only"),
    Method("xmeta-fomaml-2x", "xmeta", "FOMAML with twice the meta-steps (and twice B1's example budget)",
           ablation=True, budget_scale=2, by_default=False),
    Method("xmeta+sa", "xmeta", "+ source attention", {"source_attention": "on"}, ablation=True),
    Method("xmeta+me", "xmeta", "+ meta-embedding", {"meta_embedding": "on"}, ablation=True),
    Method("xmeta+lr", "xmeta", "+ learned inner rates", training_flags={"learn_inner_lr": True}, ablation=True),
    Method("xmeta-full", "xmeta", "xmeta full: FOMAML + source attention + meta-embedding + learned inner rates",
           {"source_attention": "on", "meta_embedding": "on"}, {"learn_inner_lr": True}),
    Method("oracle", "oracle", "ceiling: B1 + fine-tuning on all of the target's training rows"),
)
METHOD_NAMES = tuple(m.name for m in METHODS)
DEFAULT_METHOD_NAMES = tuple(m.name for m in METHODS if m.by_default)


@dataclass
class Plan:
    """What one benchmark run measures (the resolved command-line settings)."""

    targets: list[str]
    extra_targets: list[str]
    shots: list[int]
    ablation_shots: list[int]
    seeds: list[int]
    methods: list[Method]
    meta_steps: int
    meta_batch: int = 4
    adapt_steps: int = 10
    test_per_class: int = 25
    dev_per_class: int = 5
    probe_per_class: int = 20
    joint_batch: int = 32
    oracle_epochs: float = 2.0
    pseudo_targets: int = 3
    romanize: str = "auto"  # input preprocessing of the targets, the same for every method
    tuning_grid: dict = field(default_factory=lambda: {"joint-ft": [0.01, 0.03, 0.1, 0.3], "target-only": [0.03, 0.1, 0.3, 1.0]})

    @property
    def joint_steps(self) -> int:
        """B1 sees as many examples as meta-training passes through the model: meta-batch ×
        (3 inner steps on the support + the query) × 8 classes × 4 shots, per meta-step."""
        return self.meta_steps * self.meta_batch * (3 + 1) * 8 * 4 // self.joint_batch

    def shots_for(self, method: Method) -> list[int]:
        if method.kind == "joint":
            return [0]
        if method.kind == "oracle":
            return [ALL_ROWS]
        shots = self.ablation_shots if method.ablation else self.shots
        if method.kind == "probe":  # cheap, and the reference point: the probe with every target row
            return [*shots, ALL_ROWS]
        return [k for k in shots if not (k == 0 and method.kind == "target-only")]


def plan_from(cmd: BenchmarkCommand, card_targets: tuple[str, ...]) -> Plan:
    extra = split_list(cmd.extra_targets, "--extra_targets")
    targets = split_list(cmd.targets, "--targets") if cmd.targets else [t for t in card_targets if t not in extra]
    names = split_list(cmd.methods, "--methods") if cmd.methods else list(DEFAULT_METHOD_NAMES)
    unknown = [n for n in names if n not in METHOD_NAMES]
    if unknown:
        raise ArgumentError(f"--methods: unknown method {unknown[0]!r} (choose from {', '.join(METHOD_NAMES)})")
    if cmd.seeds < 1:
        raise ArgumentError(f"--seeds must be at least 1 (got {cmd.seeds})")
    plan = Plan(targets=targets, extra_targets=extra, shots=int_list(cmd.shots, "--shots"),
                ablation_shots=int_list(cmd.ablation_shots, "--ablation_shots"), seeds=list(range(cmd.seeds)),
                methods=[m for m in METHODS if m.name in names], meta_steps=cmd.meta_steps,
                test_per_class=cmd.test_per_class, romanize=cmd.romanize)
    if cmd.quick:
        plan = replace(plan, targets=targets[:1], extra_targets=[], shots=[0, 4], ablation_shots=[0, 4], seeds=[0],
                       meta_steps=1, adapt_steps=2, test_per_class=2, dev_per_class=1, probe_per_class=1,
                       oracle_epochs=0.1, pseudo_targets=1, tuning_grid={"joint-ft": [0.1], "target-only": [0.3]})
    return plan


def stratified_rows(task: LanguageTask, per_class: int, seed: int) -> list[int]:
    """At most ``per_class`` rows of each label, drawn by ``seed`` (test and dev subsamples)."""
    rng = np.random.default_rng(seed)
    rows: list[int] = []
    for members in task.by_label().values():
        rows += rng.choice(members, size=min(per_class, len(members)), replace=False).tolist()
    return sorted(rows)


def pooled_sample(tasks: dict[str, LanguageTask], per_class: int) -> tuple[list[str], list[int]]:
    """Texts and labels of a stratified sample of every language, pooled (source training and dev data)."""
    rows = {lang: stratified_rows(task, per_class, seed=0) for lang, task in tasks.items()}
    return ([tasks[lang].texts[i] for lang in rows for i in rows[lang]],
            [tasks[lang].labels[i] for lang in rows for i in rows[lang]])


def write_record(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, obj)


class Benchmark:
    """Runs a `Plan` into ``out`` (``out/cache``: numbers; ``out/models``: trained models)."""

    def __init__(self, plan: Plan, out: Path, task: str, encoder: str) -> None:
        self.plan, self.out, self.task, self.encoder = plan, out, task, encoder
        self.card = load_task_card(task)
        self.labels = list(self.card.labels)
        self.langs = plan.targets + plan.extra_targets
        self.train = load_language_tasks(self.card, self.langs, "train")
        test = load_language_tasks(self.card, self.langs, "test")
        self.test_rows = {lang: stratified_rows(test[lang], plan.test_per_class, seed=0) for lang in self.langs}
        self.test = {lang: test[lang].subset(rows) for lang, rows in self.test_rows.items()}
        self.romanized = romanize_targets(self.train, self.test, plan.romanize, encoder)
        self.sources = list(self.card.sources)
        self._source_train: dict[str, LanguageTask] | None = None
        self._source_dev: dict[str, LanguageTask] | None = None

    # ------------------------------------------------------------------ cache
    def cache_file(self, method: str, lang: str, k: int, seed: int) -> Path:
        return self.out / "cache" / method / lang / f"k{'all' if k == ALL_ROWS else k}-s{seed}.json"

    def record(self, method: str, lang: str, k: int, seed: int, scores: dict, **extra: object) -> None:
        write_record(self.cache_file(method, lang, k, seed), {"method": method, "lang": lang, "k": k, "seed": seed,
                                                              **scores, **extra})

    def pending(self, method: Method, lang: str) -> list[tuple[int, int]]:
        runs = [(k, s) for k in self.plan.shots_for(method) for s in (self.plan.seeds[:1] if k in (0, ALL_ROWS) else self.plan.seeds)]
        return [(k, s) for k, s in runs if not self.cache_file(method.name, lang, k, s).exists()]

    def train_record(self, method: str) -> Path:
        return self.out / "cache" / method / "train.json"

    # ------------------------------------------------------------------- data
    @property
    def source_train(self) -> dict[str, LanguageTask]:
        if self._source_train is None:
            self._source_train = load_language_tasks(self.card, self.sources, "train")
        return self._source_train

    @property
    def source_dev(self) -> dict[str, LanguageTask]:
        if self._source_dev is None:
            self._source_dev = load_language_tasks(self.card, self.sources, "dev")
        return self._source_dev

    def shots(self, lang: str, k: int, seed: int) -> list[int]:
        return list(range(len(self.train[lang]))) if k == ALL_ROWS else sample_k_shot(self.train[lang], k, seed)

    def examples(self, task: LanguageTask, rows: list[int]) -> list[tuple[str, str]]:
        return [(task.texts[i], self.labels[task.labels[i]]) for i in rows]

    # ------------------------------------------------------------------- runs
    def run(self) -> None:
        for method in self.plan.methods:
            if not any(self.pending(method, lang) for lang in self.langs):
                continue
            runner = {"probe": self.run_probe, "oracle": self.run_oracle}.get(method.kind, self.run_adapting)
            runner(method)
            gc.collect()

    def progress(self, method: Method) -> Iterator[tuple[str, list[tuple[int, int]]]]:
        for lang in tqdm(self.langs, desc=method.name, unit="lang", dynamic_ncols=True):
            todo = self.pending(method, lang)
            if todo:
                yield lang, todo

    def test_batch(self, model, lang: str) -> LabelledBatch:
        with torch.inference_mode():
            return LabelledBatch.build(model, self.test[lang].texts, self.test[lang].labels)

    def run_adapting(self, method: Method) -> None:
        """K=0 scores θ; K>0 adapts a scratch copy of θ on the shot set and scores it.

        Runs go K by K over all targets (small K first), so a run stopped early leaves complete
        columns. Test batches are built once per target, except with the meta-embedding on, whose
        per-language target view changes what the lower layers compute."""
        model = self.model_for(method)
        options = self.adapt_options(method, model)
        todo = {lang: set(self.pending(method, lang)) for lang in self.langs}
        batches: dict[str, LabelledBatch] = {}

        def test_batch(lang: str) -> LabelledBatch:
            if model.config.meta_embedding:
                return self.test_batch(model, lang)
            if lang not in batches:
                batches[lang] = self.test_batch(model, lang)
            return batches[lang]

        for k, seed in tqdm(sorted(set().union(*todo.values())), desc=method.name, unit="K,seed", dynamic_ncols=True):
            for lang in [lang for lang in self.langs if (k, seed) in todo[lang]]:
                if k == 0:
                    self.record(method.name, lang, k, seed, score_batch(model, test_batch(lang), META_ADAPTER))
                    continue
                rows = self.shots(lang, k, seed)
                view = self.target_view_options(model, lang)
                result = model.adapt(self.examples(self.train[lang], rows), lang=SCRATCH, seed=seed, **options, **view)
                scores = score_batch(model, test_batch(lang), SCRATCH)
                model.drop_language(SCRATCH)
                self.record(method.name, lang, k, seed, scores, adapt_seconds=round(result.seconds, 3),
                            target_view=bool(view), shot_items=self.item_ids(lang, rows))

    def item_ids(self, lang: str, rows: list[int]) -> list[str] | list[int]:
        """Shot sets are saved as item (emoji) ids, which name the same rows in any later run."""
        ids = self.train[lang].item_ids
        return rows if ids is None else [ids[i] for i in rows]

    def test_items(self, lang: str) -> list[str] | list[int]:
        ids = self.test[lang].item_ids
        return self.test_rows[lang] if ids is None else ids

    def adapt_options(self, method: Method, model) -> dict:
        """Adaptation settings: xmeta uses what it meta-learned; baselines get a learning rate
        tuned on held-out source data (see `tune_lr`)."""
        options = {"steps": self.plan.adapt_steps}
        if method.kind in self.plan.tuning_grid:
            options["lr"] = self.tune_lr(method, model)
        return options

    def target_view_options(self, model, lang: str) -> dict:
        """What `xmeta coverage` recommends: with the meta-embedding on, a language the vocabulary
        covers poorly also gets its own target view, a unigram model of its unlabelled text (the
        texts of its training split, labels unused)."""
        if not model.config.meta_embedding:
            return {}
        texts = self.train[lang].texts
        if not measure_coverage(model.tokenizer, lang, texts).poorly_covered:
            return {}
        return {"train_meta_embedding": True, "target_text": texts}

    def tune_lr(self, method: Method, model) -> float:
        """Pick the adaptation rate on source dev data only: K=4 shots of a few source languages'
        dev rows, scored on the rest of their dev rows."""
        record = self.out / "cache" / method.name / "tuning.json"
        if record.exists():
            return json.loads(record.read_text())["lr"]
        langs = self.sources[:: max(1, len(self.sources) // self.plan.pseudo_targets)][: self.plan.pseudo_targets]
        table = {}
        for lr in self.plan.tuning_grid[method.kind]:
            scores = []
            for lang in langs:
                dev = self.source_dev[lang]
                rows = sample_k_shot(dev, 4, seed=0)
                rest = [i for i in range(len(dev)) if i not in set(rows)]
                model.adapt(self.examples(dev, rows), lang=SCRATCH, steps=self.plan.adapt_steps, lr=lr, seed=0)
                with torch.inference_mode():
                    held = LabelledBatch.build(model, [dev.texts[i] for i in rest], [dev.labels[i] for i in rest])
                scores.append(score_batch(model, held, SCRATCH)["macro_f1"])
                model.drop_language(SCRATCH)
            table[lr] = float(np.mean(scores))
        best = max(table, key=table.get)
        write_record(record, {"lr": best, "dev_macro_f1": table, "pseudo_targets": langs, "k": 4})
        return best

    # ----------------------------------------------------------------- models
    def model_dir(self, name: str) -> Path:
        return self.out / "models" / name

    def model_for(self, method: Method):
        if method.kind in ("joint", "joint-ft"):
            return XMetaForSequenceClassification.from_pretrained(self.joint_model(method.budget_scale))
        if method.kind == "target-only":
            torch.manual_seed(0)
            return self.fresh_model()
        return XMetaForSequenceClassification.from_pretrained(self.meta_trained(method))

    def fresh_model(self) -> XMetaForSequenceClassification:
        return XMetaForSequenceClassification.for_labels(
            self.labels, encoder=self.encoder, task=self.card.name, source_languages=self.sources,
            adapt_steps=self.plan.adapt_steps, max_length=EncoderArguments.max_length)

    def meta_trained(self, method: Method) -> Path:
        """Meta-train through the same code as `xmeta meta-train` (resuming its checkpoint)."""
        from ..commands import meta_train

        out = self.model_dir(method.name)
        if (out / "config.json").exists():
            return out
        resume = RESUME_DEFAULT if Path(f"{out}.checkpoint").exists() else ""
        cmd = MetaTrainCommand(out=str(out), adapt_steps=self.plan.adapt_steps, overwrite=True, resume=resume)
        steps = self.plan.meta_steps * method.budget_scale
        training = MetaTrainingArguments(steps=steps, meta_batch=self.plan.meta_batch, eval_every=0,
                                         checkpoint_every=10, seed=0, **method.training_flags)
        start = time.perf_counter()
        meta_train(cmd, DataArguments(task=self.task), EncoderArguments(encoder=self.encoder, **method.encoder_flags),
                   training)
        write_record(self.train_record(method.name), {"seconds": round(time.perf_counter() - start, 1),
                                                    "meta_steps": steps, "resumed": bool(resume),
                                                    "flags": {**method.encoder_flags, **method.training_flags}})
        return out

    @staticmethod
    def joint_name(budget_scale: int) -> str:
        """The B1 model (and its train record) a method with this budget builds on."""
        return "joint" if budget_scale == 1 else f"joint-{budget_scale}x"

    def joint_model(self, budget_scale: int = 1) -> Path:
        """B1: the adapter trained on every source row, selected on source dev rows."""
        name = self.joint_name(budget_scale)
        out = self.model_dir(name)
        if (out / "config.json").exists():
            return out
        torch.manual_seed(0)
        model = self.fresh_model()
        texts = [t for task in self.source_train.values() for t in task.texts]
        labels = [y for task in self.source_train.values() for y in task.labels]
        dev = self.source_dev_batch(model)
        steps = self.plan.joint_steps * budget_scale
        result = supervised_finetune(model, texts, labels, steps=steps, batch_size=self.plan.joint_batch, lr=1e-3,
                                     dev=lambda: score_batch(model, dev, META_ADAPTER)["accuracy"],
                                     eval_every=max(1, steps // 8), desc="joint (B1)")
        model.save_pretrained(out)
        write_record(self.train_record(name), {"seconds": round(result.seconds, 1), **asdict(result)})
        return out

    def source_dev_batch(self, model) -> LabelledBatch:
        texts, labels = pooled_sample(self.source_dev, self.plan.dev_per_class)
        with torch.inference_mode():
            return LabelledBatch.build(model, texts, labels)

    def run_oracle(self, method: Method) -> None:
        """B1 fine-tuned on all of the target's training rows (AdamW, fixed epochs: no target dev data)."""
        model = XMetaForSequenceClassification.from_pretrained(self.joint_model())
        for lang, todo in self.progress(method):
            task = self.train[lang]
            model.start_language(SCRATCH)
            steps = max(1, int(self.plan.oracle_epochs * len(task) / self.plan.joint_batch))
            result = supervised_finetune(model, task.texts, task.labels, steps=steps, batch_size=self.plan.joint_batch,
                                         lr=1e-3, seed=0, desc=f"oracle {lang}")
            scores = score_batch(model, self.test_batch(model, lang), SCRATCH)
            model.drop_language(SCRATCH)
            for k, seed in todo:
                self.record(method.name, lang, k, seed, scores, adapt_seconds=round(result.seconds, 3),
                            train_rows=len(task))

    def run_probe(self, method: Method) -> None:
        """B4: sources' features (a stratified sample per language) plus the K target examples,
        the latter weighted so they count as much as one source language."""
        encoder, tokenizer = load_encoder(resolve_encoder(self.encoder))
        probe = FrozenEncoderProbe(encoder, tokenizer, resolve_encoder(self.encoder).prefix, EncoderArguments.max_length)
        start = time.perf_counter()
        src_texts, src_y = pooled_sample(self.source_train, self.plan.probe_per_class)
        src_x = probe.features(src_texts)
        c = self.tune_probe(probe, src_x, src_y)
        per_language = len(src_y) / len(self.source_train)
        for lang, todo in self.progress(method):
            test_x = probe.features(self.test[lang].texts)
            for k, seed in todo:
                ids = self.shots(lang, k, seed) if k else []
                x = np.concatenate([src_x, probe.features([self.train[lang].texts[i] for i in ids])]) if ids else src_x
                y = src_y + [self.train[lang].labels[i] for i in ids]
                weights = np.concatenate([np.ones(len(src_y)), np.full(len(ids), per_language / max(1, len(ids)))])
                fit_start = time.perf_counter()
                classifier = probe.fit(x, y, c, weights)
                scores = probe.score(classifier, test_x, self.test[lang].labels)
                self.record(method.name, lang, k, seed, scores, adapt_seconds=round(time.perf_counter() - fit_start, 3),
                            shot_items=self.item_ids(lang, ids) if k != ALL_ROWS else [])
        write_record(self.train_record(method.name), {"seconds": round(time.perf_counter() - start, 1), "C": c,
                                                    "source_rows": len(src_y)})

    def tune_probe(self, probe: FrozenEncoderProbe, x: np.ndarray, y: list[int]) -> float:
        """Regularisation strength chosen on source dev rows."""
        dev_texts, dev_y = pooled_sample(self.source_dev, self.plan.dev_per_class)
        dev_x = probe.features(dev_texts)
        grid = {c: probe.score(probe.fit(x, y, c), dev_x, dev_y)["macro_f1"] for c in (0.01, 0.1, 1.0)}
        return max(grid, key=grid.get)
