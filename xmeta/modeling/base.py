"""`XMetaModelBase`: what every xmeta head shares — frozen encoder, one peft LoRA adapter per
language (adapter ``meta`` = θ; `xmeta.modeling.adapters`), the optional components
(`xmeta.modeling.components`), encoding, save/load and export.

A head subclass names its plain network (``network_class``, wrapped by peft; its ``classifier``
is the per-adapter head copy) and how it tokenises (``tokenize``); everything else is here once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import torch
from peft import get_peft_model
from peft.tuners.lora import LoraLayer
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..config import XMetaConfig
from ..data.romanize import romanization_needed, romanize_texts
from ..encoders import layer_index, load_encoder, resolve_encoder, run_lower, transformer_layers
from ..errors import ArgumentError
from ..trainer_state import TrainerState
from . import components as registry
from .adapters import LanguageAdapters, default_language, name_lora_targets
from .classifier import PooledClassifier
from .components import Component
from .language_codes import META_ADAPTER
from .pooling import mean_pool


class XMetaPreTrainedModel(PreTrainedModel):
    """Binds xmeta models to `XMetaConfig`; weights never come from transformers' own loader."""

    config_class = XMetaConfig
    base_model_prefix = "xmeta"

    def _init_weights(self, module: torch.nn.Module) -> None:
        """The encoder is pretrained and the head initialises itself: nothing to do here."""


class XMetaModelBase(LanguageAdapters, XMetaPreTrainedModel):
    """Fast weights (LoRA + head) are one peft adapter per language.

    Adapter ``meta`` holds the meta-learned initialisation θ; ``adapt`` copies it into a new
    adapter named by the language code and fine-tunes that copy on the user's few examples.
    """

    network_class: type[PooledClassifier] = PooledClassifier
    tags_words = False  # a tagger (one label per word): exported as XLMForTokenClassification
    passthrough_inputs: tuple[str, ...] = ()  # inputs the network needs besides the encoder's (kept by the layer cache)

    def __init__(
        self,
        config: XMetaConfig,
        encoder: PreTrainedModel | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> None:
        super().__init__(config)
        # Before any module exists: transformers' weight initialisation must not touch peft's LoRA
        # (B starts at zero so the adapted model starts as the encoder) or the pretrained encoder.
        self.post_init()
        if encoder is None or tokenizer is None:
            settings = resolve_encoder(config.encoder)
            encoder, tokenizer = load_encoder(settings)
            name_lora_targets(config, settings)
        if not config.lora.target_modules:
            raise ArgumentError("lora.target_modules is empty: name the encoder's attention projections")
        if config.id2label is None or not config.id2label:
            raise ArgumentError("the config has no labels (id2label)")
        config.label2id = {name: i for i, name in enumerate(config.labels)}
        encoder.requires_grad_(False)
        self.tokenizer = tokenizer
        self.trainer_state = TrainerState()  # scores and the training log (trainer_state.json), not architecture
        self._complete_lora(int(getattr(encoder.config, "num_hidden_layers", 0)))
        base = self.network_class(encoder, config.num_labels, config.classifier_dropout)
        base.name_or_path = config.encoder  # peft records it as the adapters' base model
        self._wrap_with_components(base)

    def _wrap_with_components(self, network: PooledClassifier) -> None:
        """Wrap ``network`` with peft (adapter ``meta``) and build the config's components around it:
        those inside the network first, the rest on the wrapped model. ``self.components`` holds them in
        registry order; ``model.<attribute>`` of a component that is off is None."""
        for cls in registry.COMPONENTS:
            if cls.attribute is not None:
                setattr(self, cls.attribute, None)
        enabled = registry.enabled_components(self.config)
        self.components: dict[str, Component] = {cls.name: cls.build(self, network) for cls in enabled if cls.in_network}
        self.peft = get_peft_model(network, self.lora_config(), adapter_name=META_ADAPTER)
        self._freeze_other_adapters(META_ADAPTER)
        for cls in enabled:
            if not cls.in_network:
                self.components[cls.name] = cls.build(self, network)
        self.components = {cls.name: self.components[cls.name] for cls in enabled}

    # --------------------------------------------------------------- components
    def shared_state(self) -> dict[str, torch.Tensor]:
        """Tensors outside the per-language adapters (components' modules on the model), saved with θ."""
        return {n: t.detach() for n, t in self.state_dict().items() if not n.startswith("peft.")}

    @contextlib.contextmanager
    def transferring_into(self, lang: str):
        """Within an episode of ``lang`` (e.g. its own bank slot masked out of source attention)."""
        with contextlib.ExitStack() as stack:
            for component in self.components.values():
                stack.enter_context(component.episode(lang))
            yield

    @contextlib.contextmanager
    def reading(self, language: str | None):
        """Forward passes in the block read texts of ``language`` (a component may condition on it: the
        nearest-source mixer of source attention borrows from the sources typologically nearest to it)."""
        with contextlib.ExitStack() as stack:
            for component in self.components.values():
                stack.enter_context(component.reading(language))
            yield

    def remember_source(self, lang: str, weights: dict[str, torch.Tensor], momentum: float | None = None) -> None:
        """Show the components an inner-loop result of a source language (source attention blends it into its bank slot)."""
        for component in self.components.values():
            component.remember(self, lang, weights, momentum)

    # ------------------------------------------------------------------ forward
    def network_logits(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
                       lower_hidden: torch.Tensor | None, lower_layers: int, char_ngrams: torch.Tensor | None,
                       **extra: torch.Tensor) -> torch.Tensor:
        """The peft-wrapped network's logits, with the components' per-pass state cleared around the call."""
        for component in self.components.values():
            component.new_pass()
        logits = self.peft(input_ids=input_ids, attention_mask=attention_mask, lower_hidden=lower_hidden,
                           lower_layers=lower_layers, char_ngrams=char_ngrams, **extra)
        for component in self.components.values():
            component.new_pass()
        return logits

    def train(self, mode: bool = True):
        """Only the head's and LoRA's dropout follow ``mode``: the frozen encoder's own dropout never runs."""
        super().train(mode)
        encoder = self.peft.base_model.model.encoder
        encoder.eval()
        for module in encoder.modules():
            if isinstance(module, LoraLayer):
                module.lora_dropout.train(mode)
        return self

    def tokenize(self, texts: Sequence, offsets: bool) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Model inputs for ``texts`` and, per row, the flat string ``offset_mapping`` indexes into."""
        raise NotImplementedError

    def decide_romanization(self, lang: str, texts: Sequence) -> bool:
        """Whether ``lang``'s texts are read romanised, decided once (by ``config.romanize``, from
        ``texts``: the language's training or adaptation text) and kept in ``config.romanized_languages``.
        A language already adapted or meta-trained on keeps the decision it got then."""
        c = self.config
        if lang in c.romanized_languages:
            return True
        if lang in c.source_languages or lang in c.adapted_languages:
            return False
        if romanization_needed(c.romanize, self.tokenizer, lang, texts):
            c.romanized_languages.append(lang)
            return True
        return False

    def encode(self, texts: Sequence, language: str | None = None) -> dict[str, torch.Tensor]:
        """Tokenise with the encoder's prefix, padding only to the longest text of the batch
        (plus the components' inputs, e.g. each token's character n-gram ids for the meta-embedding).

        The one place where texts become model inputs: texts of ``language`` (their language, not
        the adapter's name) are romanised first when the model reads that language romanised."""
        texts = romanize_texts(texts) if language in self.config.romanized_languages else list(texts)
        inputs, flat = self.tokenize(texts, offsets=any(c.reads_offsets for c in self.components.values()))
        offsets = inputs.pop("offset_mapping", None)
        for component in self.components.values():
            component.add_inputs(self, inputs, flat, offsets)
        return inputs

    @torch.no_grad()
    def task_embedding(self, texts: Sequence, language: str | None = None, batch_size: int = 32) -> torch.Tensor:
        """A language's task embedding [hidden]: the plain encoder's mean pooled output over ``texts``, averaged
        (no adapter, no source-bank mix: it describes the language, not what the model learned)."""
        encoder = self.peft.base_model.model.encoder
        transfer = getattr(self, "source_transfer", None)
        pooled = []
        for start in range(0, len(texts), batch_size):
            inputs = self.encode(list(texts[start : start + batch_size]), language)
            with self.peft.disable_adapter(), transfer.disabled() if transfer is not None else contextlib.nullcontext():
                hidden = encoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
            pooled.append(mean_pool(hidden, inputs["attention_mask"]))
        return torch.cat(pooled).mean(0)

    @property
    def frozen_layers(self) -> int:
        """How many lower encoder layers hold no trainable tensor (0 when the encoder cannot be split)."""
        base = self.peft.base_model.model
        if transformer_layers(base.encoder) is None:
            return 0
        layers = []
        for name, p in base.encoder.named_parameters():
            if p.requires_grad:
                index = layer_index(name)
                layers.append(0 if index is None else index)
        return min(layers, default=len(transformer_layers(base.encoder)))

    def prepare_for_repeated_passes(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Inputs for many passes over the same texts (inner steps, query): the frozen lower
        layers run once here, and every later pass starts from their output. A trainable
        meta-embedding (a slow weight, constant within an episode) keeps its graph to the cache,
        so the query loss still reaches it."""
        split = self.frozen_layers
        cacheable = all(c.caches_lower_layers(self.active_language) for c in self.components.values())
        if not self.config.cache_frozen_layers or split == 0 or not cacheable:
            return inputs
        base = self.peft.base_model.model
        embeds = base.word_vectors(inputs["input_ids"], inputs.get("char_ngrams"))
        with torch.set_grad_enabled(embeds is not None and embeds.requires_grad):
            lower = run_lower(base.encoder, inputs["input_ids"], inputs["attention_mask"], split, inputs_embeds=embeds)
        kept = {name: inputs[name] for name in self.passthrough_inputs}
        return {"lower_hidden": lower, "attention_mask": inputs["attention_mask"], "lower_layers": split, **kept}

    @contextlib.contextmanager
    def evaluating(self, lang: str | None, language: str | None = None):
        """Eval mode through ``lang``'s adapter (None: the active one), restored afterwards, on texts of
        ``language`` (None: the adapter's); yields the texts' language."""
        previous = self.active_language
        if lang is not None:
            self.use_language(lang)
        was_training = self.training
        self.eval()
        try:
            language = language or self.active_language
            with self.reading(language):
                yield language
        finally:
            self.train(was_training)
            if lang is not None:
                self.use_language(previous)

    # ------------------------------------------------------- adapt / save / load
    def adapt(self, examples: Sequence, lang: str, **kwargs: object):
        """Few-shot fine-tune a new adapter for ``lang`` (see `xmeta.adapt.adapt_language`)."""
        from ..adapt import adapt_language  # adapt builds on modeling, not the other way round

        return adapt_language(self, examples, lang, **kwargs)

    def labelled_examples(self, examples: Sequence, where: str) -> tuple[list, list]:
        """Model inputs and label ids of user examples; unknown labels raise a `DataError` naming ``where``."""
        raise NotImplementedError

    def save_pretrained(self, save_directory: str | Path, overwrite: bool = True, **_: object) -> Path:  # type: ignore[override]
        from .serialization import save_model

        return save_model(self, Path(save_directory), overwrite=overwrite)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *args: object, lang: str | None = None,
                        **kwargs: object):  # type: ignore[override]
        """Load a model folder with ``lang``'s adapter active (default: `default_language`, as `xmeta predict`),
        so ``predict``, ``forward``, pipelines and ``export_merged`` use it. Only ``encoder=``/``tokenizer=``
        (already loaded objects) are honoured; transformers' loader options (``config=``, ``dtype=``, ...)
        do not apply to a folder of adapters."""
        from .serialization import load_model

        objects = {k: kwargs[k] for k in ("encoder", "tokenizer") if kwargs.get(k) is not None}
        model = load_model(cls, Path(pretrained_model_name_or_path), **objects)
        model.use_language(lang or default_language(model.languages()))
        return model

    def export_merged(self, save_directory: str | Path, lang: str | None = None, overwrite: bool = True) -> Path:
        """Write a plain transformers model (LoRA merged) that loads without xmeta."""
        from .export import export_merged

        return export_merged(self, Path(save_directory), lang=lang, overwrite=overwrite)

    @classmethod
    def for_labels(cls, labels: Sequence[str], encoder: str = "embedded", **config_kwargs: object):
        """A fresh (not yet meta-trained) model for ``labels`` on ``encoder``."""
        settings = resolve_encoder(encoder)
        config = XMetaConfig(
            encoder=encoder,
            encoder_prefix=config_kwargs.pop("encoder_prefix", settings.prefix),
            id2label=dict(enumerate(labels)),
            **config_kwargs,
        )
        model_encoder, tokenizer = load_encoder(settings)
        name_lora_targets(config, settings)
        return cls(config, encoder=model_encoder, tokenizer=tokenizer)
