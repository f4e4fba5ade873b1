"""Evaluation results as JSON (every number), a Markdown table and a PNG plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..fileio import atomic_directory, write_json  # noqa: E402
from .protocol import LanguageEvaluation  # noqa: E402

METRIC_NAMES = {"macro_f1": "macro-F1", "f1": "entity F1", "token_accuracy": "token accuracy"}


def metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric)


def markdown_table(evaluations: Sequence[LanguageEvaluation]) -> str:
    """Every metric (mean ± std over seeds) per language and K, the headline metric first."""
    metrics = evaluations[0].metrics if evaluations else []
    lines = ["| language | K | seeds | " + " | ".join(map(metric_name, metrics)) + " |",
             "|---|---:|---:|" + "---|" * len(metrics)]
    for ev in evaluations:
        for k, s in ev.summary().items():
            cells = " | ".join(f"{s[f'{m}_mean']:.3f} ± {s[f'{m}_std']:.3f}" for m in metrics)
            lines.append(f"| {ev.lang} | {k} | {s['n_seeds']} | {cells} |")
    return "\n".join(lines) + "\n"


def plot_scores(evaluations: Sequence[LanguageEvaluation], metric: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for ev in evaluations:
        summary = ev.summary()
        ks = list(summary)
        means = [summary[k][f"{metric}_mean"] for k in ks]
        stds = [summary[k][f"{metric}_std"] for k in ks]
        ax.errorbar([str(k) for k in ks], means, yerr=stds, marker="o", capsize=3, label=ev.lang)
    ax.set_xlabel(f"labelled {evaluations[0].shot_unit} (K)")
    ax.set_ylabel(metric_name(metric))
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(directory: Path, evaluations: Sequence[LanguageEvaluation], settings: dict, overwrite: bool) -> Path:
    """``results.json`` + ``results.md`` + ``<headline>_vs_shots.png`` (``macro_f1``, or ``f1`` for
    entity tagging) in ``directory``, all or nothing."""
    headline = evaluations[0].metrics[0]
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        write_json(tmp / "results.json", {"settings": settings, "languages": [ev.to_dict() for ev in evaluations]})
        (tmp / "results.md").write_text(markdown_table(evaluations), encoding="utf-8")
        plot_scores(evaluations, headline, tmp / f"{headline}_vs_shots.png")
    return directory
