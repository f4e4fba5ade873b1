"""Speed benchmark: xmeta's meta-step against the deepcopy-per-task way research code takes.

The same episodes (seeded sampler, seeded initialisation) go through a ladder of variants, each in
its own process so that its peak RSS is its own. From the bottom: the deepcopy reference
(`xmeta.meta.reference`: inputs padded to ``max_length``, a deepcopy of the model per task, every
layer recomputed each inner step, SGD on the copy), the same with dynamic padding, xmeta's
functional meta-step without copies (one padded set, no layer cache), with length-sorted chunks,
and xmeta's default (+ the frozen lower layers computed once per episode). Each rung adds one
gain, so the ratio of neighbours measures that gain alone. learn2learn's ``MAML(first_order=True)``
runs when it is importable. Also: a profile of the default step and the time to adapt.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from ..arguments import BaseEncoderArguments
from ..meta.trainer import MetaTrainingArguments
from ..fileio import atomic_directory, write_json
from ..meta.batch import DEFAULT_CHUNK


@dataclass(frozen=True)
class SpeedVariant:
    """One rung of the ladder: how a meta-step is computed (plain data)."""

    name: str
    description: str
    way: str = "xmeta"  # xmeta | deepcopy | learn2learn
    cache_frozen_layers: bool = True  # xmeta: lower layers once per episode
    chunk_size: int = DEFAULT_CHUNK  # xmeta: texts per length-sorted padded chunk
    pad_to_max_length: bool = True  # deepcopy: every text padded to the model's max_length
    components: tuple[str, ...] = ()  # xmeta: config flags of components switched on (their cost per meta-step)


ONE_CHUNK = 1 << 20  # more texts than any episode has: one padded set
VARIANTS = (
    SpeedVariant("deepcopy", "deepcopy per task, padded to max_length, all layers each step (research-code reference)",
                 way="deepcopy"),
    SpeedVariant("deepcopy+dynamic-padding", "+ each set padded to its longest text", way="deepcopy",
                 pad_to_max_length=False),
    SpeedVariant("xmeta-one-chunk-no-cache", "+ no model copies (functional fast weights); one padded set, "
                 "every layer each step", cache_frozen_layers=False, chunk_size=ONE_CHUNK),
    SpeedVariant("xmeta-no-cache", f"+ length-sorted chunks of {DEFAULT_CHUNK}", cache_frozen_layers=False),
    SpeedVariant("xmeta", "+ frozen lower layers once per episode (xmeta's default meta-step)"),
    SpeedVariant("xmeta+generate", "+ the adapter generator (a hypernetwork's update of θ starts every inner loop)",
                 components=("adapter_generator",)),
    SpeedVariant("learn2learn", "learn2learn MAML(first_order=True), plain padded batches", way="learn2learn"),
)
VARIANTS_BY_NAME = {v.name: v for v in VARIANTS}
PROFILE_ROWS = 12
GPU_NOTE = "GPU: not measured (no device lent to this task)"


@dataclass
class SpeedSettings:
    """What one meta-step is: the `meta-train` defaults on the embedded encoder, LoRA in the top 4 layers (the
    ladder's frozen-layer rung needs layers below the LoRA; the default's every-layer step is timed by the benchmark)."""

    task: str = "cldr-emoji"
    encoder: str = "embedded"
    max_length: int = BaseEncoderArguments.max_length  # `meta-train`'s truncation length, what the reference pads to
    target: str = "yo"  # the new language of the adaptation timing
    meta_batch: int = MetaTrainingArguments.meta_batch
    k_shot: int = MetaTrainingArguments.k_shot
    k_query: int = MetaTrainingArguments.k_query
    inner_steps: int = MetaTrainingArguments.inner_steps
    inner_lr: float = MetaTrainingArguments.inner_lr
    lora_layers: int = 4
    steps: int = 5
    warmup: int = 1
    adapt_shots: int = 4  # per class: 32 examples for the 8 CLDR-emoji classes
    adapt_runs: int = 3
    seed: int = 0


def _median_seconds(step: Callable[[], object], steps: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        step()
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return seconds


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_variant(name: str, settings: SpeedSettings) -> dict:
    """Time ``settings.steps`` meta-steps of variant ``name`` in this process (after ``warmup`` steps)."""
    import transformers

    from ..data import (
        EpisodeSampler,
        load_language_tasks,
        load_task_card,
        sample_k_shot,
    )
    from ..meta import MetaTrainer, MetaTrainingArguments
    from ..meta.reference import reference_meta_gradient
    from ..modeling import XMetaForSequenceClassification
    from ..modeling.components import MetaTrainingRun

    variant = VARIANTS_BY_NAME[name]
    transformers.logging.set_verbosity_error()
    card = load_task_card(settings.task)
    tasks = load_language_tasks(card, None, "train")
    torch.manual_seed(settings.seed)
    model = XMetaForSequenceClassification.for_labels(card.labels, encoder=settings.encoder, task=card.name,
                                                      max_length=settings.max_length, source_languages=list(tasks),
                                                      lora_layers=settings.lora_layers,
                                                      cache_frozen_layers=variant.cache_frozen_layers,
                                                      **dict.fromkeys(variant.components, True))
    for component in model.components.values():
        component.before_meta_training(model, MetaTrainingRun(tasks, settings.seed, settings.inner_steps))
    args = MetaTrainingArguments(steps=settings.warmup + settings.steps, meta_batch=settings.meta_batch,
                                 k_shot=settings.k_shot, k_query=settings.k_query, inner_lr=settings.inner_lr,
                                 inner_steps=settings.inner_steps, eval_every=0, seed=settings.seed,
                                 chunk_size=variant.chunk_size)
    sampler = EpisodeSampler(tasks, None, args.k_shot, args.k_query, seed=settings.seed)
    trainer = MetaTrainer(model, sampler, args)
    model.train()
    fresh = sampler.state_dict()
    n_way = len(set(sampler.sample_meta_batch(1)[0].support_labels))
    sampler.load_state_dict(fresh)  # every variant sees the same episodes
    params = list(trainer.named_trainable().values())
    pad_to = model.config.max_length if variant.pad_to_max_length else None

    def outer_update() -> None:
        torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        trainer.optimizer.step()

    def copied_step() -> None:  # the same episodes and AdamW update, meta-gradient the deepcopy way
        trainer.optimizer.zero_grad(set_to_none=True)
        episodes = [((e.support_texts, e.support_labels), (e.query_texts, e.query_labels))
                    for e in sampler.sample_meta_batch(args.meta_batch)]
        reference_meta_gradient(model, episodes, args.inner_lr, args.inner_steps, pad_to=pad_to)
        outer_update()

    def l2l_step() -> None:  # learn2learn clones the model per task with differentiable parameters
        import learn2learn as l2l

        maml = l2l.algorithms.MAML(model, lr=args.inner_lr, first_order=True, allow_nograd=True, allow_unused=True)
        trainer.optimizer.zero_grad(set_to_none=True)
        for e in sampler.sample_meta_batch(args.meta_batch):
            learner = maml.clone()
            for _ in range(args.inner_steps):
                learner.adapt(_plain_loss(learner, model, e.support_texts, e.support_labels))
            (_plain_loss(learner, model, e.query_texts, e.query_labels) / args.meta_batch).backward()
        outer_update()

    step = {"xmeta": trainer.step, "deepcopy": copied_step, "learn2learn": l2l_step}[variant.way]
    seconds = _median_seconds(step, settings.steps, settings.warmup)
    result = {"variant": name, "description": variant.description, "median_seconds": statistics.median(seconds),
              "all_seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "n_way": n_way}
    if name == "xmeta":
        result["profile"] = _profile(step)
        target = load_language_tasks(card, [settings.target], "train")[settings.target]
        adapt_seconds = []
        for seed in range(settings.adapt_runs + 1):  # the first run warms up
            ids = sample_k_shot(target, settings.adapt_shots, seed)
            done = model.adapt([(target.texts[i], card.labels[target.labels[i]]) for i in ids], lang=settings.target, seed=seed)
            adapt_seconds.append(done.seconds)
        result["adapt"] = {"examples": done.examples, "steps": done.steps, "median_seconds": statistics.median(adapt_seconds[1:]),
                           "all_seconds": adapt_seconds[1:]}
    return result


def _profile(step: Callable[[], object]) -> list[dict]:
    """The operators that take the most self CPU time in one more meta-step (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [{"op": e.key, "calls": e.count, "self_cpu_s": e.self_cpu_time_total / 1e6,
             "share": e.self_cpu_time_total / total} for e in events[:PROFILE_ROWS]]


def _plain_loss(learner, model, texts: list[str], labels: list[int]) -> torch.Tensor:
    logits = learner(**model.encode(texts)).logits
    return torch.nn.functional.cross_entropy(logits, torch.as_tensor(labels))


def _in_subprocess(variant: str, settings: SpeedSettings) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        done = subprocess.run([sys.executable, "-m", "xmeta.evaluation.speed", variant, json.dumps(asdict(settings)), str(out)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return {"variant": variant, "description": VARIANTS_BY_NAME[variant].description,
                    "skipped": f"failed: {done.stderr.strip().splitlines()[-1:]}"}
        return json.loads(out.read_text(encoding="utf-8"))


def speed_benchmark(out_dir: Path, steps: int = 5, warmup: int = 1, overwrite: bool = True,
                    only: tuple[str, ...] = (), **settings: object) -> dict:
    """Run every variant (``only`` these, by name; xmeta's default always) in its own process; write speed.json,
    speed.md and speed.png to ``out_dir``."""
    config = SpeedSettings(steps=steps, warmup=warmup, **settings)
    variants = {}
    for variant in VARIANTS:
        if only and variant.name not in {*only, "xmeta"}:
            continue
        if variant.way == "learn2learn" and importlib.util.find_spec("learn2learn") is None:
            variants[variant.name] = {"variant": variant.name, "description": variant.description, "skipped":
                                      "learn2learn is not importable (`pip install learn2learn` fails to build its "
                                      "Cython extension on Python 3.11: longintrepr.h)"}
            continue
        variants[variant.name] = _in_subprocess(variant.name, config)
    base = variants["xmeta"].get("median_seconds")
    ratios = {f"xmeta/{v}": base / r["median_seconds"] for v, r in variants.items()
              if v != "xmeta" and base and "median_seconds" in r}
    ladder = [variants[v.name] for v in VARIANTS
              if v.way != "learn2learn" and "median_seconds" in variants.get(v.name, {})]
    gains = {f"{low['variant']} -> {high['variant']}": low["median_seconds"] / high["median_seconds"]
             for low, high in pairwise(ladder)}
    results = {"settings": asdict(config), "variants": variants, "ratios": ratios, "gains": gains, "gpu": GPU_NOTE,
               "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
               "machine": platform.machine()}
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        write_json(tmp / "speed.json", results)
        (tmp / "speed.md").write_text(speed_markdown(results), encoding="utf-8")
        plot_speed(results, tmp / "speed.png")
    return results


def speed_markdown(results: dict) -> str:
    s = results["settings"]
    lines = [(f"Meta-step: {s['meta_batch']} languages × {results['variants']['xmeta'].get('n_way', '?')}-way "
              f"{s['k_shot']}+{s['k_query']}-shot, {s['inner_steps']} inner steps, task {s['task']}; "
              f"median of {s['steps']} steps after {s['warmup']} warm-up; each variant in its own process. "
              f"Each row adds one change to the row above; the gain is the row above's time over this one's."), "",
             "| variant | what it is | median s / meta-step | gain | peak RSS (MB) | xmeta / variant |",
             "|---|---|---:|---:|---:|---:|"]
    previous = None
    for name, r in results["variants"].items():
        if "skipped" in r:
            lines.append(f"| {name} | {r['description']} | skipped: {r['skipped']} | | | |")
            continue
        gain = results["gains"].get(f"{previous} -> {name}") if previous else None
        ratio = results["ratios"].get(f"xmeta/{name}", 1.0)
        lines.append(f"| {name} | {r['description']} | {r['median_seconds']:.2f} | {f'{gain:.2f}×' if gain else ''} "
                     f"| {r['peak_rss_mb']:.0f} | {ratio:.2f} |")
        previous = name
    xmeta = results["variants"]["xmeta"]
    if xmeta.get("adapt"):
        adapt = xmeta["adapt"]
        lines += ["", (f"Adapting to {s['target']} with {adapt['examples']} examples ({adapt['steps']} steps): "
                       f"{adapt['median_seconds']:.2f} s (median of {s['adapt_runs']}).")]
    if xmeta.get("profile"):
        lines += ["", "Profile of one default meta-step (torch.profiler, self CPU time):", "",
                  "| operator | calls | self CPU s | share |", "|---|---:|---:|---:|"]
        lines += [f"| `{p['op']}` | {p['calls']} | {p['self_cpu_s']:.2f} | {p['share']:.0%} |" for p in xmeta["profile"]]
    lines += ["", f"{results['gpu']}. CPU threads: {results['threads']}.", ""]
    return "\n".join(lines)


def plot_speed(results: dict, path: Path) -> None:
    measured = {n: r for n, r in results["variants"].items() if "median_seconds" in r}
    fig, ax = plt.subplots(figsize=(7, 3.5))
    bars = ax.barh(list(measured), [r["median_seconds"] for r in measured.values()], color="#4c72b0")
    for bar, r in zip(bars, measured.values()):
        ax.annotate(f" {r['median_seconds']:.1f} s, {r['peak_rss_mb']:.0f} MB",
                    (bar.get_width(), bar.get_y() + bar.get_height() / 2), va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds per meta-step (median)")
    ax.set_xlim(0, max(r["median_seconds"] for r in measured.values()) * 1.45)
    ax.set_title("first-order MAML meta-step (CPU): each bar adds one change")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":  # one variant in this process: python -m xmeta.evaluation.speed VARIANT SETTINGS_JSON OUT
    chosen, raw, target = sys.argv[1:4]
    write_json(Path(target), run_variant(chosen, SpeedSettings(**json.loads(raw))))
