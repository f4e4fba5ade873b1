"""Evaluation results as JSON (every number), a Markdown table and a PNG plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..fileio import atomic_directory, write_json  # noqa: E402
from .protocol import LanguageEvaluation  # noqa: E402


def markdown_table(evaluations: Sequence[LanguageEvaluation]) -> str:
    """Macro-F1 and accuracy (mean ± std over seeds) per language and K."""
    lines = ["| language | K | seeds | macro-F1 | accuracy |", "|---|---:|---:|---|---|"]
    for ev in evaluations:
        for k, s in ev.summary().items():
            lines.append(
                f"| {ev.lang} | {k} | {s['n_seeds']} | {s['macro_f1_mean']:.3f} ± {s['macro_f1_std']:.3f} "
                f"| {s['accuracy_mean']:.3f} ± {s['accuracy_std']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def plot_scores(evaluations: Sequence[LanguageEvaluation], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for ev in evaluations:
        summary = ev.summary()
        ks = list(summary)
        means = [summary[k]["macro_f1_mean"] for k in ks]
        stds = [summary[k]["macro_f1_std"] for k in ks]
        ax.errorbar([str(k) for k in ks], means, yerr=stds, marker="o", capsize=3, label=ev.lang)
    ax.set_xlabel("labelled examples per class (K)")
    ax.set_ylabel("macro-F1")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(directory: Path, evaluations: Sequence[LanguageEvaluation], settings: dict, overwrite: bool) -> Path:
    """``results.json`` + ``results.md`` + ``macro_f1_vs_shots.png`` in ``directory``, all or nothing."""
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        write_json(tmp / "results.json", {"settings": settings, "languages": [ev.to_dict() for ev in evaluations]})
        (tmp / "results.md").write_text(markdown_table(evaluations), encoding="utf-8")
        plot_scores(evaluations, tmp / "macro_f1_vs_shots.png")
    return directory
