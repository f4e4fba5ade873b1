"""`XMetaConfig`: everything needed to rebuild an xmeta model around its (separately stored) encoder."""

from __future__ import annotations

from dataclasses import field

from transformers import PretrainedConfig

from .version import __version__


class XMetaConfig(PretrainedConfig):
    """Configuration of an xmeta model.

    The frozen encoder is *named* (``encoder``), never copied into the model folder: a meta-trained
    model is a few MB of LoRA, head and inner-loop settings on top of a public encoder.
    """

    model_type = "xmeta"

    encoder: str = "embedded"
    encoder_prefix: str = "query: "
    max_length: int = 128
    classifier_dropout: float = 0.1
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: list[str] = field(default_factory=list)
    lora_layers: int = 4  # LoRA in the top N encoder layers (0: all layers)
    cache_frozen_layers: bool = True  # run the layers below the LoRA once per episode, not once per step
    inner_lr: float = 0.05
    inner_steps: int = 3
    adapt_steps: int = 10
    task: str | None = None
    source_languages: list[str] = field(default_factory=list)
    adapted_languages: list[str] = field(default_factory=list)
    scores: dict = field(default_factory=dict)
    xmeta_version: str = __version__

    @property
    def labels(self) -> list[str]:
        """Label names in id order."""
        return [self.id2label[i] for i in range(len(self.id2label))]
