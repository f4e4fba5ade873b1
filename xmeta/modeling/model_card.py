"""The README.md written into every model folder: what it is, what it knows, how well it does."""

from __future__ import annotations

from ..config import XMetaConfig
from ..trainer_state import TrainerState


def adaptation_steps(config: XMetaConfig) -> str:
    """"10 steps", or with a choice per support size "0 at 1 example per class, 3 at 4 or more (steps)"."""
    sizes = sorted(config.adapt_steps_by_shots.items(), key=lambda kv: int(kv[0]))
    if not sizes:
        return f"{config.adapt_steps} steps"
    parts = [f"{steps} at {k} example{'s' * (k != '1')} per class" for k, steps in sizes[:-1]]
    return f"{', '.join(parts)}, {sizes[-1][1]} at {sizes[-1][0]} or more (steps)"


def model_card(config: XMetaConfig, state: TrainerState) -> str:
    sources = ", ".join(config.source_languages) or "none recorded"
    adapted = ", ".join(config.adapted_languages) or "none yet"
    lines = [
        "---",
        "library_name: xmeta",
        "tags: [xmeta, cross-lingual, meta-learning, lora, few-shot]",
        "---",
        "# xmeta sequence classifier",
        "",
        f"- Encoder: `{config.encoder}` (frozen; input prefix `{config.encoder_prefix}`)",
        f"- Task: `{config.task or 'custom'}`; labels: {', '.join(config.labels)}",
        f"- LoRA: r={config.lora.r}, alpha={config.lora.lora_alpha}, targets {', '.join(sorted(config.lora.target_modules))}",
        f"- Meta-trained on: {sources}",
        f"- Adapted languages (one peft adapter each under `adapters/`): {adapted}",
        f"- Inner loop: {config.inner_steps} SGD steps at lr {config.inner_lr}; adaptation: {adaptation_steps(config)}",
        *([f"- Prototype distance: the source languages' within-class covariance, shrunk by "
           f"{config.prototype_metric_shrinkage} toward the identity"]
          if config.prototype_head and config.prototype_metric == "sources" else []),
        "",
        "```python",
        "from xmeta import XMetaForSequenceClassification",
        "model = XMetaForSequenceClassification.from_pretrained('THIS_FOLDER')",
        "model.predict(['...'], lang='LANG')",
        "```",
    ]
    if state.dev:
        lines += ["", f"Meta-training: best dev episode accuracy {state.dev['episode_accuracy']} at step "
                      f"{state.dev['best_step']} (the run's records are in `trainer_state.json`)."]
    if state.language_scores:
        lines += ["", "## Scores", "", "| language | metric | value |", "|---|---|---|"]
        for lang, metrics in sorted(state.language_scores.items()):
            for metric, value in sorted(metrics.items()):
                lines.append(f"| {lang} | {metric} | {value} |")
    return "\n".join(lines) + "\n"
