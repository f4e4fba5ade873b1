"""The benchmark's report, rebuilt from its cache: results.json, results.md, accuracy_vs_shots.png
(and, with several --budgets, budget.md and budget.png)."""

from __future__ import annotations

import json
import platform
import re
import statistics
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..fileio import write_json  # noqa: E402
from ..version import __version__  # noqa: E402
from .benchmark import Benchmark  # noqa: E402
from .benchmark_plan import ALL_ROWS, BUDGET_KINDS, Method  # noqa: E402

README_START = "<!-- benchmark:start -->"
README_END = "<!-- benchmark:end -->"


def versions() -> dict[str, str]:
    import accelerate
    import peft
    import sklearn
    import torch
    import transformers

    return {"xmeta": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__, "accelerate": accelerate.__version__,
            "scikit-learn": sklearn.__version__, "machine": f"{platform.machine()}, {torch.get_num_threads()} threads"}


def k_label(k: int) -> str:
    return "all" if k == ALL_ROWS else str(k)


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.pstdev(values) if len(values) > 1 else 0.0)


class BenchmarkReport:
    """Aggregates: per method and K, the mean over targets for each seed, then mean ± std over seeds.

    Only cells whose fingerprint matches the current settings are read; cached versions of the
    same (method, target, K, seed) made under other settings are counted as ``stale``, never used."""

    def __init__(self, bench: Benchmark, command: str) -> None:
        self.bench, self.plan, self.command = bench, bench.plan, command
        self.runs, self.stale = [], 0
        for method in self.plan.runs():
            for lang in bench.langs:
                for k, seed in bench.cells(method, lang):
                    path = bench.cache_file(method, lang, k, seed)
                    if path.exists():
                        self.runs.append(json.loads(path.read_text()))
                    stem = bench.cell_stem(method.label, lang, k, seed)
                    self.stale += sum(p != path for p in stem.parent.glob(f"{stem.name}*.json"))
        self.cell: dict[tuple[str, str, int], dict[int, dict]] = defaultdict(dict)  # (method, lang, k) -> seed -> run
        for r in self.runs:
            self.cell[(r["method"], r["lang"], r["k"])][r["seed"]] = r

    def shots(self, method: Method) -> list[int]:
        return self.plan.shots_for(method)

    def target_mean(self, method: str, k: int, langs: list[str], metric: str = "macro_f1") -> tuple[float, float, int] | None:
        """Mean over ``langs`` per seed (seeds every language has), then mean, std over those seeds."""
        cells = [self.cell.get((method, lang, k), {}) for lang in langs]
        seeds = set.intersection(*(set(c) for c in cells)) if cells else set()
        if not seeds:
            return None
        per_seed = [statistics.fmean(c[s][metric] for c in cells) for s in sorted(seeds)]
        return (*_mean_std(per_seed), len(seeds))

    def lang_mean(self, method: str, lang: str, k: int) -> tuple[float, float] | None:
        runs = self.cell.get((method, lang, k))
        return _mean_std([r["macro_f1"] for r in runs.values()]) if runs else None

    def train_seconds(self, method: Method) -> float | None:
        path = self.bench.train_record(method)
        return json.loads(path.read_text())["seconds"] if path.exists() else None

    def adapt_seconds(self, method: str, k: int) -> float | None:
        times = [r["adapt_seconds"] for (m, _, kk), runs in self.cell.items() if m == method and kk == k
                 for r in runs.values() if "adapt_seconds" in r]
        return statistics.median(times) if times else None

    # ---------------------------------------------------------------- output
    def columns(self) -> list[int]:
        ks = sorted({k for m in self.plan.methods for k in self.shots(m) if k != ALL_ROWS})
        return ks + ([ALL_ROWS] if any(ALL_ROWS in self.shots(m) for m in self.plan.methods) else [])

    def headline(self, langs: list[str]) -> str:
        ks = self.columns()
        lines = ["| method | " + " | ".join(f"K={k_label(k)}" for k in ks) + " | train s |",
                 "|---|" + "---:|" * (len(ks) + 1)]
        for m in self.plan.methods:
            cells = []
            for k in ks:
                value = self.target_mean(m.name, k, langs)
                cells.append(self.mean_text(value, k))
            seconds = self.train_seconds(m)
            lines.append(f"| {m.name} | " + " | ".join(cells) + f" | {'' if seconds is None else f'{seconds:.0f}'} |")
        return "\n".join(lines) + "\n"

    def mean_text(self, value: tuple[float, float, int] | None, k: int) -> str:
        """"0.521 ± 0.004"; a mean over fewer shot seeds than the plan's says how many ("… (3 seeds)")."""
        if value is None:
            return ""
        text = f"{value[0]:.3f}" if value[2] == 1 else f"{value[0]:.3f} ± {value[1]:.3f}"
        if k not in (0, ALL_ROWS) and value[2] < len(self.plan.seeds):
            text += f" ({value[2]} seed{'s' * (value[2] != 1)})"
        return text

    def per_target(self, k: int) -> str:
        methods = [m for m in self.plan.methods if k in self.shots(m)]
        lines = ["| target | " + " | ".join(m.name for m in methods) + " |", "|---|" + "---:|" * len(methods)]
        for lang in self.bench.langs:
            values = [self.lang_mean(m.name, lang, k) for m in methods]
            lines.append(f"| {lang} | " + " | ".join("" if v is None else f"{v[0]:.3f}" for v in values) + " |")
        return "\n".join(lines) + "\n"

    def timing(self) -> str:
        lines = ["| method | training s | median adapt s (K=4) | median adapt s (K=16) |", "|---|---:|---:|---:|"]
        for m in self.plan.methods:
            cells = [self.train_seconds(m), self.adapt_seconds(m.name, 4), self.adapt_seconds(m.name, 16)]
            lines.append(f"| {m.name} | " + " | ".join("" if c is None else f"{c:.1f}" for c in cells) + " |")
        return "\n".join(lines) + "\n"

    def markdown(self) -> str:
        p = self.plan
        readers = ", ".join(f"`{m.name}`" for m in p.methods if m.centres_on_text)
        always = f"; the targets' training texts (labels unused) are always read by {readers}" if readers else ""
        parts = [
            f"Macro-F1, mean over the {len(p.targets)} held-out targets ({', '.join(p.targets)}); ± is the std over "
            f"{len(p.seeds)} shot seeds of that mean (K=0 and all-rows runs are deterministic: one run). "
            f"Ablation rows were scored at K ∈ {{{', '.join(map(str, p.ablation_shots))}}} only. "
            f"Unlabelled target text (`--target_text`): {p.target_text}"
            f"{' (read by the meta-embedding rows)' if p.target_text == 'train' else ''}"
            f"{always}."
            f"{f' Every model trained with seed {p.training_seed} (`--training_seed`).' if p.training_seed else ''}\n\n",
            self.headline(p.targets),
        ]
        if p.extra_targets:
            parts += [f"\nReported separately: {', '.join(p.extra_targets)}.\n\n", self.headline(p.extra_targets)]
        for k in (4, 16):
            if k in self.columns():
                parts += [f"\nPer target, K={k} (mean over seeds):\n\n", self.per_target(k)]
        parts += ["\nTime (seconds, this machine):\n\n", self.timing()]
        if len(self.budgets()) > 1:
            parts += ["\nBudget curve (budget.png): ", self.budget_markdown()]
        parts += ["\nMethods:\n\n"] + [f"- `{m.name}`: {m.description}\n" for m in p.methods]
        parts += [f"\nReproduce: `{self.command}`\n"]
        return "".join(parts)

    # ------------------------------------------------------------ budget curve
    def budget_methods(self) -> list[Method]:
        """The rows trained at every budget (the -2x rows are points of that curve already)."""
        return [m for m in self.plan.methods if m.kind in BUDGET_KINDS and m.budget_scale == 1]

    def budgets(self) -> list[float]:
        return sorted({1.0, *self.plan.budgets})

    def budget_point(self, method: Method, budget: float, k: int) -> tuple[float, float, int] | None:
        """``method`` trained at ``budget``, scored at K: mean, std and number of shot seeds (as `target_mean`)."""
        at = replace(method, budget=budget)
        return self.target_mean(at.label, k, self.plan.targets) if k in self.plan.shots_for(at) else None

    def budget_curve(self) -> dict[str, dict[str, dict[str, float]]]:
        """K -> method -> budget -> macro-F1 (mean over targets and seeds), at the ablation shots."""
        curve: dict = {}
        for k in self.plan.ablation_shots:
            for m in self.budget_methods():
                for b in self.budgets():
                    value = self.budget_point(m, b, k)
                    if value is not None:
                        curve.setdefault(k_label(k), {}).setdefault(m.name, {})[f"{b:g}"] = value[0]
        return curve

    def budget_markdown(self) -> str:
        """One table per K; a point scored on fewer shot seeds than the plan's says how many (as the main table)."""
        budgets = self.budgets()
        parts = [f"Macro-F1 against the training budget (multiples of {self.plan.meta_steps} meta-steps' example "
                 f"passes; B1 and each warm start's joint stage counted in the same passes), mean over "
                 f"{len(self.plan.targets)} targets and the shot seeds; ± is the std over seeds of that mean.\n"]
        for k in self.plan.ablation_shots:
            parts += [f"\nK={k_label(k)}:\n\n| method | " + " | ".join(f"×{b:g}" for b in budgets) + " |\n",
                      "|---|" + "---:|" * len(budgets) + "\n"]
            parts += [f"| {m.name} | " + " | ".join(self.mean_text(self.budget_point(m, b, k), k) for b in budgets)
                      + " |\n" for m in self.budget_methods()]
        return "".join(parts)

    def plot_budget(self, path: Path) -> None:
        curve = self.budget_curve()
        ks = self.plan.ablation_shots
        fig, axes = plt.subplots(1, len(ks), figsize=(5 * len(ks), 4), sharey=True, squeeze=False)
        # one colour and marker per method in every panel (B2 at K=0 is B1: its marker shows under B1's line)
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        styles = {m.name: {"color": colours[i % len(colours)], "marker": "osD^v"[i % 5]}
                  for i, m in enumerate(self.budget_methods())}
        for ax, k in zip(axes[0], ks):
            for name, points in curve.get(k_label(k), {}).items():
                ax.plot([float(b) for b in points], list(points.values()), label=name, **styles[name])
            ax.set_xscale("log", base=2)
            ax.set_xticks(self.budgets(), [f"{b:g}" for b in self.budgets()])
            ax.set_title(f"K={k_label(k)}")
            ax.set_xlabel("training budget (× the unit example passes)")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel(f"macro-F1, mean over {len(self.plan.targets)} targets")
        for ax in axes[0]:
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)

    def plot(self, path: Path) -> None:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ks = [k for k in self.columns() if k != ALL_ROWS]
        for m in self.plan.methods:
            points = [(i, self.target_mean(m.name, k, self.plan.targets)) for i, k in enumerate(ks)]
            points = [(i, v) for i, v in points if v is not None]
            if not points:
                continue
            style = {"linestyle": "--"} if m.ablation else {}
            ax.errorbar([i for i, _ in points], [v[0] for _, v in points], yerr=[v[1] for _, v in points],
                        marker="o", capsize=3, label=m.name, **style)
        ax.set_xticks(range(len(ks)), [str(k) for k in ks])
        ax.set_xlabel("labelled target examples per class (K)")
        ax.set_ylabel(f"macro-F1, mean over {len(self.plan.targets)} targets")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a report of an empty cache has no lines
            ax.legend(fontsize="small", ncol=2)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)

    def summary(self) -> dict:
        out: dict = {}
        for m in self.plan.methods:
            row = {}
            for group, langs in (("targets", self.plan.targets), ("extra_targets", self.plan.extra_targets)):
                for k in self.shots(m):
                    value = self.target_mean(m.name, k, langs) if langs else None
                    if value is not None:
                        row.setdefault(group, {})[k_label(k)] = {"macro_f1_mean": value[0], "macro_f1_std": value[1],
                                                                 "n_seeds": value[2]}
            out[m.name] = {"description": m.description, "train_seconds": self.train_seconds(m), **row}
        return out

    def write(self) -> None:
        """results.json (every number), results.md and accuracy_vs_shots.png in the benchmark folder."""
        from dataclasses import asdict

        p = self.plan
        settings = {k: v for k, v in asdict(p).items() if k != "methods"}
        tuning = {m.name: json.loads(f.read_text()) for m in p.methods
                  if m.kind in p.tuning_grid and (f := self.bench.tuning_file(m)).exists()}
        identity = {k: v for k, v in self.bench.identity.items() if k != "card"}
        self.bench.out.mkdir(parents=True, exist_ok=True)  # --report_only of a folder never run
        write_json(self.bench.out / "results.json", {
            "command": self.command, "task": self.bench.task, "encoder": self.bench.encoder, "settings": settings,
            "versions": versions(), "sources": self.bench.sources, "tuning": tuning,
            "fingerprints": {**identity, "models": {m.name: self.bench.model_fingerprint(m) for m in p.methods}},
            "stale_cells": self.stale, "summary": self.summary(), "budget_curve": self.budget_curve(),
            "runs": self.runs})
        (self.bench.out / "results.md").write_text(self.markdown(), encoding="utf-8")
        self.plot(self.bench.out / "accuracy_vs_shots.png")
        if len(self.budgets()) > 1:
            (self.bench.out / "budget.md").write_text(self.budget_markdown(), encoding="utf-8")
            self.plot_budget(self.bench.out / "budget.png")


def readme_markers(task: str) -> tuple[str, str]:
    """The markers of a task's generated section: ``<!-- benchmark:<task>:start -->`` ... ``:end -->``."""
    return f"<!-- benchmark:{task}:start -->", f"<!-- benchmark:{task}:end -->"


def update_readme(readme: Path, results_md: str, task: str = "") -> None:
    """Replace the README's generated results section of ``task`` (between its own markers, else the
    plain benchmark markers)."""
    text = readme.read_text(encoding="utf-8")
    for start, end in (readme_markers(task), (README_START, README_END)):
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
        if pattern.search(text):
            readme.write_text(pattern.sub(lambda _: f"{start}\n{results_md}{end}", text), encoding="utf-8")
            return
    from ..errors import ArgumentError

    start, end = readme_markers(task)
    raise ArgumentError(f"{readme}: no '{start}' ... '{end}' (or '{README_START}' ... '{README_END}') section to update")
