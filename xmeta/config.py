"""`XMetaConfig`: everything needed to rebuild an xmeta model around its (separately stored) encoder."""

from __future__ import annotations

from dataclasses import field

from transformers import PretrainedConfig

from .version import __version__


class XMetaConfig(PretrainedConfig):
    """Configuration of an xmeta model.

    The frozen encoder is *named* (``encoder``), never copied into the model folder: a meta-trained
    model is a few MB of LoRA, head and inner-loop settings on top of a public encoder. Only what
    rebuilds and runs the model is here; scores and the training log are `xmeta.trainer_state`'s.
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
    source_attention: bool = False  # attention over a bank of source-language adapters
    attention_dim: int = 64
    attention_top_k: int = 0  # keep only the k best sources per token (0: all)
    bank_centering: bool = False  # mix each bank delta minus the bank's mean delta (see modeling.source_attention)
    routing_weight: float = 0.0  # weight of the attention's KL loss toward the URIEL routing prior (0: off)
    routing_temperature: float = 0.1  # temperature of that prior (data.typology.routing_prior)
    bank_momentum: float = 0.3  # how much each new inner-loop result moves a bank slot
    meta_embedding: bool = False  # gated char n-gram view next to the subword embedding (see modeling.meta_embedding)
    meta_embedding_buckets: int = 32768  # hashed character n-gram buckets
    meta_embedding_dim: int = 64  # n-gram vector size before its projection
    meta_embedding_ngrams: list[int] = field(default_factory=lambda: [3, 5])  # min and max n
    meta_embedding_adapt: bool = False  # adapt also trains a per-language target view (see modeling.target_view)
    meta_embedding_target_vocab: int = 2000  # most pieces of a target view's unigram model
    inner_lr: float = 0.05
    inner_lr_learned: bool = False  # one learned inner rate per group of fast weights (see modeling.inner_rates)
    inner_steps: int = 3
    prototype_head: bool = False  # inner loops start the head from the support's class prototypes (see modeling.prototype_head)
    prototype_meta_head: bool = True  # the prototypes are added to a meta-learned head (else they are the head)
    prototype_prior: str = "sources"  # per_language | sources: the weight of the source prior (modeling.prototype_head)
    head_lr_scale: float = 1.0  # the head's inner-loop rate is this times the others'
    adapt_steps: int = 10
    romanize: str = "off"  # auto | on | off: how a language not yet decided is decided (see data.romanize)
    romanized_languages: list[str] = field(default_factory=list)  # languages whose texts are read romanised
    task: str | None = None
    source_languages: list[str] = field(default_factory=list)
    adapted_languages: list[str] = field(default_factory=list)
    xmeta_version: str = __version__

    @property
    def labels(self) -> list[str]:
        """Label names in id order."""
        return [self.id2label[i] for i in range(len(self.id2label))]
