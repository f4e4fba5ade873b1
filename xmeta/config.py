"""`XMetaConfig`: everything needed to rebuild an xmeta model around its (separately stored) encoder."""

from __future__ import annotations

from dataclasses import field, replace

from peft import LoraConfig
from transformers import PretrainedConfig

from .version import __version__

# the flat LoRA keys of older config.json files (and a shorthand in code), each a field of the nested LoraConfig
FLAT_LORA_KEYS = {"lora_r": "r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout",
                  "lora_target_modules": "target_modules"}


def default_lora() -> LoraConfig:
    """xmeta's LoRA defaults (rank 8, alpha 16, no dropout); the model fills in the rest (see ``lora``)."""
    return LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0)


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
    # peft's settings of every adapter (θ's, each language's, each source-bank slot's). The model completes it
    # when it makes the adapters: the encoder's attention projections if no targets are named, the indices of the
    # top ``lora_layers`` layers, the head as the per-adapter module; config.json holds it completed.
    lora: LoraConfig = field(default_factory=default_lora)
    # LoRA in the top N encoder layers (0: all, the default). An xmeta field, not LoraConfig's layers_to_transform: "top N"
    # needs the depth of the named encoder, known only once it is loaded; the model writes the indices into ``lora``
    lora_layers: int = 0
    cache_frozen_layers: bool = True  # run the layers below the LoRA once per episode, not once per step
    source_attention: bool = False  # attention over a bank of source-language adapters
    attention_dim: int = 64
    attention_top_k: int = 0  # keep only the k best sources per token (0: all)
    bank_centering: bool = False  # mix each bank delta minus the bank's mean delta (see modeling.source_attention)
    routing_weight: float = 0.0  # weight of the attention's KL loss toward the URIEL routing prior (0: off)
    routing_temperature: float = 0.1  # temperature of that prior (data.typology.routing_prior)
    routing_self: bool = False  # the routing loss reads the attention unmasked, toward a prior that includes the episode's own language
    source_mixer: str = "attention"  # attention | uniform | arrow: what mixes the bank (see modeling.source_attention)
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
    prototype_prior_within: str = "sources"  # support | sources: whose row noise the per-language prior reads
    prototype_metric: str = "euclidean"  # sources | euclidean: the prototypes' distance (meta.prototype_metric)
    prototype_metric_shrinkage: float = 1.0  # the sources' covariance shrunk toward the identity by this (1: Euclidean)
    prototype_source_rows: int = 8  # rows per class and source language the fold read (8: folders written before the flag)
    prototype_centre: str = "support"  # shrunk | support: a support's centre (support: folders written before the setting)
    prototype_metric_selection: str = "fold"  # dev | fold: rows that score the metric's α (fold: folders written before it)
    adapter_generator: bool = False  # a hypernetwork generates each language's start (see modeling.generator)
    generator_dim: int = 16  # size of its source-language embeddings
    head_lr_scale: float = 1.0  # the head's inner-loop rate is this times the others'
    adapt_steps: int = 10
    adapt_steps_by_shots: dict[str, int] = field(default_factory=dict)  # rows per class -> steps (meta.adapt_steps)
    romanize: str = "off"  # auto | on | off: how a language not yet decided is decided (see data.romanize)
    romanized_languages: list[str] = field(default_factory=list)  # languages whose texts are read romanised
    task: str | None = None
    source_languages: list[str] = field(default_factory=list)
    adapted_languages: list[str] = field(default_factory=list)
    xmeta_version: str = __version__

    def __post_init__(self, **kwargs: object) -> None:
        """``lora`` from its config.json dict; flat ``lora_r``-style keys (older folders, shorthands) fold into it."""
        if isinstance(self.lora, dict):
            self.lora = LoraConfig.from_peft_type(**self.lora)
        flat = {FLAT_LORA_KEYS[key]: kwargs.pop(key) for key in list(kwargs) if key in FLAT_LORA_KEYS}
        if flat:
            self.lora = replace(self.lora, **flat)
        super().__post_init__(**kwargs)

    def to_dict(self) -> dict:
        """As transformers writes it, with ``lora`` as peft's own dict (target modules sorted: a set in peft)."""
        output = super().to_dict()
        output["lora"] = {key: sorted(value) if isinstance(value, set) else value
                          for key, value in self.lora.to_dict().items()}
        return output

    @property
    def labels(self) -> list[str]:
        """Label names in id order."""
        return [self.id2label[i] for i in range(len(self.id2label))]
