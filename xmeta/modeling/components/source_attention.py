"""Source attention as a component: bank and attention at ``model.source_transfer``, hooked into the
LoRA linears; the bank's slots go to ``bank/<lang>/`` peft adapter folders and to checkpoints
(`xmeta.modeling.source_attention`).

Routing (``config.routing_weight`` > 0, `xmeta.modeling.routing`): the query pass of an episode of
source l adds λ_t · KL(p_l ‖ ā) (with ``routing_self``, ā before l is masked and p_l including l); its
gradient goes to the attention's parameters only. λ_t anneals
linearly from ``routing_weight`` at the first outer step to ``routing_weight / steps`` at the last."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file

from ...arguments import require_number
from ...data.typology import routing_prior
from ...errors import ArgumentError
from ...fileio import read_safetensors
from ...meta.bank import finalize_bank
from ...scoped import attributes_set
from ..language_codes import META_ADAPTER
from ..pooling import mean_pool
from ..routing import recording_with_masks, routing_loss, routing_prior_matrix
from ..source_attention import build_source_transfer
from ..source_bank import PEFT_PREFIX, bank_folder_state
from .base import Component, ComponentFlags, MetaTrainingRun

BANK_DIR = "bank"
KEY_TEXTS = 64  # texts per source language whose mean hidden states initialise the attention's keys
BANK_SHOTS = 8  # examples per class (sentences, for tagging) for the final adaptation of each source-bank slot


@dataclass
class SourceAttentionFlags(ComponentFlags):
    source_attention: Literal["on", "off"] = field(
        default="off", metadata={"help": "attention over a bank of source-language adapters"})
    attention_top_k: int = field(default=0, metadata={"help": "source attention keeps the k best sources per token (0: all)"})
    bank_centering: Literal["on", "off"] = field(default="off", metadata={
        "help": "source attention mixes each bank adapter minus the bank's mean adapter (what the sources share)"})
    routing_weight: float = field(default=0.0, metadata={
        "help": "meta-training adds this times KL(URIEL routing prior || source attention) for each source episode, "
                "annealed linearly to 0 (0: off)"})
    routing_temperature: float = field(default=0.1, metadata={"help": "temperature of that URIEL routing prior"})
    routing_self: Literal["on", "off"] = field(default="off", metadata={
        "help": "the routing loss reads the attention before the episode's own language is masked, toward a prior "
                "that includes that language itself, so the attention learns which source a language's tokens "
                "resemble (needs --routing_weight)"})
    source_mixer: Literal["attention", "uniform", "nearest", "arrow"] = field(default="attention", metadata={
        "help": "what mixes the bank: the learned attention, a uniform average of the source adapters, the "
                "--attention_top_k sources (default 1) typologically nearest to the language being read (URIEL; "
                "weighted by the routing prior among them; a language URIEL lacks: uniform), or peft's Arrow routing "
                "(each token to the --attention_top_k sources, default 3, whose adapter's top right singular vector "
                "it aligns with most)"})

    def validate(self) -> None:
        if self.attention_top_k < 0:
            raise ArgumentError(f"--attention_top_k must not be negative (got {self.attention_top_k})")
        require_number("routing_weight", self.routing_weight, zero_ok=True)
        require_number("routing_temperature", self.routing_temperature)
        if self.routing_self == "on" and self.routing_weight <= 0:
            raise ArgumentError("--routing_self on needs --routing_weight above 0")
        if self.source_attention == "off" and (self.routing_weight > 0 or self.bank_centering == "on"):
            flag = "--routing_weight" if self.routing_weight > 0 else "--bank_centering on"
            raise ArgumentError(f"{flag} needs --source_attention on")
        if self.source_mixer != "attention":
            if self.source_attention == "off":
                raise ArgumentError(f"--source_mixer {self.source_mixer} needs --source_attention on")
            if self.routing_weight > 0:
                raise ArgumentError(f"--routing_weight trains the learned attention; --source_mixer {self.source_mixer} "
                                    "has nothing to train")
            if self.source_mixer == "uniform" and self.bank_centering == "on":
                raise ArgumentError("--bank_centering on with --source_mixer uniform mixes nothing (a uniform average "
                                    "of adapters minus their mean is zero)")

    def config_fields(self) -> dict[str, Any]:
        return {"source_attention": self.source_attention == "on", "attention_top_k": self.attention_top_k,
                "bank_centering": self.bank_centering == "on", "routing_weight": self.routing_weight,
                "routing_temperature": self.routing_temperature, "routing_self": self.routing_self == "on",
                "source_mixer": self.source_mixer}


@dataclass
class SourceAttentionTrainingFlags(ComponentFlags):
    attention_lr: float = field(default=0.0, metadata={
        "help": "AdamW learning rate of source attention's query, keys and temperature (0: --outer_lr); with "
                "--routing_weight, 4 meta-steps at 1e-3 barely move them (tests/test_routing.py)"})

    def validate(self) -> None:
        require_number("attention_lr", self.attention_lr, zero_ok=True)


class SourceAttention(Component):
    """Attention over a bank of source-language adapters, leave-one-language-out in meta-training."""

    name = "source_attention"
    flag = "source_attention"
    attribute = "source_transfer"
    checkpoint_prefix = "bank."  # the bank's slots: refreshed state, though not parameters
    optional_state_keys = ("source_transfer.attention.routing_prior",  # folders from before routing
                           "source_transfer.attention.query_centres")
    model_flags = SourceAttentionFlags
    training_flags = SourceAttentionTrainingFlags

    def __init__(self, module, routing_weight: float = 0.0, routing_temperature: float = 0.1) -> None:
        super().__init__(module)
        self.routing_temperature = routing_temperature  # of the URIEL prior the nearest mixer ranks sources by
        self.routing_weight = routing_weight  # λ_t of the current outer step (see `outer_step`)
        self._initial_routing_weight = routing_weight
        self._lang: str | None = None  # the episode's language
        self._nearness: dict[str, torch.Tensor | None] = {}  # the nearest mixer's scores per language read

    @classmethod
    def build(cls, model, network) -> SourceAttention:
        c = model.config
        if not c.source_languages:
            raise ArgumentError("source attention needs source languages (config.source_languages)")
        transfer, linears = build_source_transfer(
            model.peft, c.source_languages, network.encoder.config.hidden_size, c.lora.r,
            c.lora.lora_alpha / c.lora.r, c.attention_dim, c.attention_top_k, prefix=PEFT_PREFIX, centering=c.bank_centering,
            mixer=c.source_mixer)
        transfer.attach({name: linears[name] for name in transfer.bank.targets})
        model.source_transfer = transfer
        return cls(transfer, c.routing_weight, c.routing_temperature)

    def param_groups(self, args) -> list[dict]:
        """The attention's query, keys and temperature at ``--attention_lr`` (0: with θ at the outer rate)."""
        if not args.attention_lr:
            return []
        return [{"params": list(self.module.attention.parameters()), "lr": args.attention_lr}]

    @torch.no_grad()
    def init_keys(self, model, texts: dict[str, Sequence]) -> None:
        """Task embeddings (mean pooled output) and per-layer mean hidden states initialise the keys."""
        transfer = self.module
        encoder = model.peft.base_model.model.encoder
        layer_means = {i: [] for i in transfer.attention.layers}
        finals = []
        for lang in transfer.bank.languages:
            inputs = model.encode(list(texts[lang]), lang)
            with model.peft.disable_adapter(), transfer.disabled():
                out = encoder(**{k: inputs[k] for k in ("input_ids", "attention_mask")}, output_hidden_states=True)
            for i in layer_means:
                layer_means[i].append(mean_pool(out.hidden_states[i], inputs["attention_mask"]).mean(0))
            finals.append(mean_pool(out.last_hidden_state, inputs["attention_mask"]).mean(0))
        transfer.attention.init_keys({i: torch.stack(v) for i, v in layer_means.items()}, torch.stack(finals))
        if model.config.routing_weight > 0:  # a buffer saved with θ: loading never needs URIEL
            transfer.attention.routing_prior.copy_(
                routing_prior_matrix(transfer.bank.languages, model.config.routing_temperature,
                                     include_self=model.config.routing_self))

    def before_meta_training(self, model, run: MetaTrainingRun) -> None:
        """The keys start from a sample of each source language's texts."""
        self.init_keys(model, {lang: task.texts[:KEY_TEXTS] for lang, task in run.tasks.items()})

    def after_meta_training(self, model, run: MetaTrainingRun) -> None:
        """Each bank slot ← a longer adaptation of its language from the final θ (`finalize_bank`)."""
        finalize_bank(model, run.tasks, shots=BANK_SHOTS, steps=run.adapt_steps, seed=run.seed)

    def meta_step(self) -> contextlib.AbstractContextManager:
        return self.module.bank.deferred()

    def synchronise(self, sum_: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.module.bank.sync(sum_)

    @contextlib.contextmanager
    def episode(self, lang: str) -> Iterator[None]:
        """Within an episode of ``lang``: its own bank slot is masked out of the attention."""
        with attributes_set(self, _lang=lang), self.module.attention.excluding([lang]), self.reading(lang):
            yield

    @contextlib.contextmanager
    def reading(self, language: str | None) -> Iterator[None]:
        """The nearest mixer borrows from the sources nearest to ``language`` (the others ignore it)."""
        attention = self.module.attention
        if attention.mixer != "nearest":
            yield
            return
        with attributes_set(attention, nearness=self.nearness(language)):
            yield

    def nearness(self, language: str | None) -> torch.Tensor | None:
        """log p: the URIEL routing prior of ``language`` over the bank's sources (None: θ's own passes, or a
        language URIEL lacks), looked up once per language."""
        if language in (None, META_ADAPTER):
            return None
        if language not in self._nearness:
            prior = routing_prior(language, self.module.bank.languages, self.routing_temperature)
            self._nearness[language] = None if prior is None else torch.log(torch.as_tensor(prior, dtype=torch.float32))
        return self._nearness[language]

    def outer_step(self, step: int, steps: int) -> None:
        """λ_t = routing_weight · (1 − (t − 1) / steps): linear annealing over meta-training."""
        self.routing_weight = self._initial_routing_weight * (1 - (step - 1) / steps)

    @contextlib.contextmanager
    def query_pass(self, model) -> Iterator[list[tuple[torch.nn.Parameter, torch.Tensor]]]:
        """With routing on: the gradient of λ_t · KL(p_lang ‖ ā) w.r.t. the attention's parameters."""
        gradients: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
        attention = self.module.attention
        row = attention.languages.index(self._lang) if self._lang in attention.languages else None
        prior = attention.routing_prior[row] if row is not None and self.routing_weight > 0 else None
        if prior is None or not bool(prior.sum() > 0):  # routing off, not a source, or one URIEL lacks: no loss
            yield gradients
            return
        with recording_with_masks(attention, model.peft, unmasked=model.config.routing_self) as (weights, masks):
            yield gradients
        params = [p for p in attention.parameters() if p.requires_grad]
        loss = self.routing_weight * routing_loss(prior, weights, masks)
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        gradients += [(p, g) for p, g in zip(params, grads) if g is not None]

    def remember(self, model, lang: str, weights: dict[str, torch.Tensor], momentum: float | None) -> None:
        """Blend the inner-loop result of a source language into its bank slot."""
        bank = self.module.bank
        if lang not in bank.languages:
            return
        adapter = model.active_language
        lora = {target: (weights[f"{target}.lora_A.{adapter}.weight"], weights[f"{target}.lora_B.{adapter}.weight"])
                for target in bank.targets}
        bank.store(lang, lora, model.config.bank_momentum if momentum is None else momentum)

    def new_pass(self) -> None:
        self.module.attention.reset()

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        return self.module.bank.state_tensors()

    def load_checkpoint_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.module.bank.load_state_tensors(tensors)

    def save(self, model, folder: Path) -> None:
        """Each source language's bank slot as a peft adapter folder ``bank/<lang>/``."""
        bank = self.module.bank
        config = model.lora_config()
        for lang in bank.languages:
            (folder / BANK_DIR / lang).mkdir(parents=True)
            config.save_pretrained(str(folder / BANK_DIR / lang))
            save_file(bank_folder_state(bank, lang), folder / BANK_DIR / lang / "adapter_model.safetensors",
                      metadata={"format": "pt"})

    def load(self, model, folder: Path) -> None:
        """The slots are read on first use, not at load."""
        self.module.bank.defer_loading(lambda lang: read_safetensors(folder / BANK_DIR / lang / "adapter_model.safetensors"))

    def export(self, model, adapter: str, state: dict[str, torch.Tensor]) -> None:
        """Refused: the bank mix is chosen per token by the attention, which no fixed weight matrix of
        a plain model can hold (an export without it would predict differently, silently)."""
        raise ArgumentError("export: source attention mixes the source-language bank per token, which a plain "
                            "transformers model cannot hold; export a model meta-trained with --source_attention off")
