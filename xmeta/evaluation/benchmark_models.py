"""The models the benchmark scores: B1 trained jointly on every source row, xmeta rows meta-trained
through the same code as `xmeta meta-train`, a fresh model for B3. Each is saved under its
fingerprint's folder (`BenchmarkCache.model_dir`) and reused once there."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..arguments import RESUME_DEFAULT, BaseEncoderArguments, DataArguments, MetaTrainCommand
from ..data import LanguageTask
from ..meta.batch import LabelledBatch
from ..meta.checkpoint import checkpoint_seconds
from ..meta.trainer import MetaTrainingArguments
from ..modeling import META_ADAPTER, XMetaForSequenceClassification
from ..train import EncoderArguments, meta_train
from ..trainer_state import TrainerState
from .baselines import score_batch, supervised_finetune
from .benchmark_cache import JOINT_LR, BenchmarkCache, write_record
from .benchmark_plan import Method
from .fingerprint import fingerprint


def stratified_rows(task: LanguageTask, per_class: int, seed: int) -> list[int]:
    """At most ``per_class`` rows of each label, drawn by ``seed`` (test and dev subsamples)."""
    rng = np.random.default_rng(seed)
    rows: list[int] = []
    for members in task.by_label().values():
        rows += rng.choice(members, size=min(per_class, len(members)), replace=False).tolist()
    return sorted(rows)


def pooled_sample(tasks: dict[str, LanguageTask], per_class: int) -> tuple[list[str], list[int], list[str]]:
    """Texts, labels and languages of a stratified sample of every language, pooled (source training and dev data)."""
    rows = {lang: stratified_rows(task, per_class, seed=0) for lang, task in tasks.items()}
    return ([tasks[lang].texts[i] for lang in rows for i in rows[lang]],
            [tasks[lang].labels[i] for lang in rows for i in rows[lang]],
            [lang for lang in rows for _ in rows[lang]])


class BenchmarkModels(BenchmarkCache):
    """Trains (or finds) the model each method is scored with; `Benchmark` loads the data it reads."""

    task: str

    @property
    def dev_episodes(self) -> int:
        """Meta-training draws its dev episodes from distinct source languages (unused: eval_every=0)."""
        return min(MetaTrainingArguments.dev_episodes, len(self.sources))

    def model_for(self, method: Method):
        if method.kind in ("joint", "joint-ft"):
            return XMetaForSequenceClassification.from_pretrained(self.joint_model(method))
        if method.kind == "target-only":
            torch.manual_seed(self.plan.training_seed)
            return self.fresh_model(method)
        return XMetaForSequenceClassification.from_pretrained(self.meta_trained(method))

    def fresh_model(self, method: Method) -> XMetaForSequenceClassification:
        """An untrained model for a baseline row, its encoder flags (e.g. ``lora_layers``) applied."""
        return XMetaForSequenceClassification.for_labels(
            self.labels, encoder=self.encoder, task=self.card.name, source_languages=self.sources,
            adapt_steps=self.plan.adapt_steps, max_length=BaseEncoderArguments.max_length, **method.encoder_flags)

    def meta_trained(self, method: Method) -> Path:
        """Meta-train through the same code as `xmeta meta-train` (resuming its checkpoint)."""
        out = self.model_dir(method)
        if (out / "config.json").exists():
            return out
        resume = RESUME_DEFAULT if Path(f"{out}.checkpoint").exists() else ""
        cmd = MetaTrainCommand(out=str(out), adapt_steps=self.plan.xmeta_adapt_steps, overwrite=True, resume=resume,
                               sources=",".join(self.sources))
        settings = self.model_settings(method)
        training = MetaTrainingArguments(steps=settings["meta_steps"], meta_batch=self.plan.meta_batch,
                                         k_shot=self.plan.k_shot, k_query=self.plan.k_query,
                                         inner_steps=self.plan.inner_steps, eval_every=0, checkpoint_every=10,
                                         dev_episodes=self.dev_episodes, seed=self.plan.training_seed,
                                         **method.training_flags,
                                         **({"joint_steps": settings["joint_steps"]} if method.warm_start else {}))
        earlier = checkpoint_seconds(Path(f"{out}.checkpoint")) if resume else 0.0
        start = time.perf_counter()
        meta_train(cmd, DataArguments(task=self.task), EncoderArguments(encoder=self.encoder, **method.encoder_flags),
                   training)
        config = json.loads((out / "config.json").read_text(encoding="utf-8"))
        write_record(self.train_record(method), {"seconds": round(earlier + time.perf_counter() - start, 1),
                                                 "adapt_steps": config["adapt_steps"],
                                                 "adapt_steps_by_shots": config.get("adapt_steps_by_shots") or None,
                                                 "adapt_steps_dev": TrainerState.read(out).adapt_steps or None,
                                                 "meta_steps": settings["meta_steps"], "resumed": bool(resume),
                                                 "joint_steps": settings.get("joint_steps", 0),
                                                 "example_passes": self.example_passes(method),
                                                 "flags": settings["flags"], "fingerprint": fingerprint(settings)})
        return out

    def joint_model(self, method: Method) -> Path:
        """B1: the adapter trained on every source row, selected on source dev rows."""
        out = self.model_dir(method)
        if (out / "config.json").exists():
            return out
        torch.manual_seed(self.plan.training_seed)
        model = self.fresh_model(method)
        texts = [t for task in self.source_train.values() for t in task.texts]
        labels = [y for task in self.source_train.values() for y in task.labels]
        dev = self.source_dev_batch(model)
        settings = self.model_settings(method)
        steps = settings["steps"]
        result = supervised_finetune(model, texts, labels, steps=steps, batch_size=self.plan.joint_batch, lr=JOINT_LR,
                                     dev=lambda: score_batch(model, dev, META_ADAPTER)["accuracy"],
                                     eval_every=max(1, steps // 8), desc="joint (B1)")
        model.save_pretrained(out)
        write_record(self.train_record(method), {"seconds": round(result.seconds, 1), **asdict(result),
                                                 "example_passes": self.example_passes(method),
                                                 "fingerprint": fingerprint(settings)})
        return out

    def source_dev_batch(self, model) -> LabelledBatch:
        texts, labels, _ = pooled_sample(self.source_dev, self.plan.dev_per_class)
        with torch.inference_mode():
            return LabelledBatch.build(model, texts, labels)
