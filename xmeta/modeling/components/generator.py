"""Generated adapters as a component: the hypernetwork at ``model.adapter_generator`` (`xmeta.modeling.generator`).

Every inner loop of a language with a representation starts at θ + δ(r): the episodes of meta-training (each
source leave-one-language-out), the adapt-step selection and bank refreshes, and adaptation (`generating`). Its
tensors are saved with θ; a generated adapter, once made, is an ordinary adapter (saved, exported, explained
like any other). It is registered before the prototype head, so the support's prototypes are read through the
generated LoRA update; a head the prototype head replaces gets no generated correction."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ...arguments import require_number
from ...errors import ArgumentError
from ...scoped import attributes_set
from ..generator import AdapterGenerator
from ..language_codes import META_ADAPTER
from .base import Component, ComponentFlags, MetaTrainingRun

GENERATOR_HIDDEN = 32  # width of the hypernetwork's hidden layer
EMBEDDING_TEXTS = 64  # texts per source language whose mean encoder output is its task embedding


@dataclass
class GeneratorFlags(ComponentFlags):
    adapter_generator: Literal["on", "off"] = field(default="off", metadata={
        "help": "a hypernetwork maps a language's representation (URIEL prior over the sources, else its task "
                "embedding) to an update of θ's LoRA and head: every inner loop and adaptation starts there, and "
                "`xmeta adapt --generate` gives a zero-shot adapter"})
    generator_dim: int = field(default=16, metadata={"help": "size of the generator's source-language embeddings"})

    def validate(self) -> None:
        if self.generator_dim < 1:
            raise ArgumentError(f"--generator_dim must be at least 1 (got {self.generator_dim})")

    def config_fields(self) -> dict[str, Any]:
        return {"adapter_generator": self.adapter_generator == "on", "generator_dim": self.generator_dim}


@dataclass
class GeneratorTrainingFlags(ComponentFlags):
    generator_lr: float = field(default=0.0, metadata={"help": "AdamW learning rate of the adapter generator (0: --outer_lr)"})

    def validate(self) -> None:
        require_number("generator_lr", self.generator_lr, zero_ok=True)


class AdapterGeneratorComponent(Component):
    """θ's fast weights start from a per-language generated update (`xmeta.modeling.generator`)."""

    name = "adapter_generator"
    flag = "adapter_generator"
    attribute = "adapter_generator"
    model_flags = GeneratorFlags
    training_flags = GeneratorTrainingFlags

    def __init__(self, module: AdapterGenerator) -> None:
        super().__init__(module)
        self.representation: torch.Tensor | None = None  # r of the language whose inner loops start generated

    @classmethod
    def build(cls, model, network) -> AdapterGeneratorComponent:
        c = model.config
        if not c.source_languages:
            raise ArgumentError("the adapter generator needs source languages (config.source_languages)")
        slots = {name: p.shape for name, p in model.fast_parameters().items()}  # θ's: the meta adapter is active
        generator = AdapterGenerator(c.source_languages, slots, network.encoder.config.hidden_size, c.generator_dim,
                                     GENERATOR_HIDDEN, c.routing_temperature)
        model.adapter_generator = generator
        return cls(generator)

    def before_meta_training(self, model, run: MetaTrainingRun) -> None:
        """The sources' task embeddings and leave-one-out representations (saved with θ: loading needs no URIEL
        for a source)."""
        embeddings = [model.task_embedding(run.tasks[lang].texts[:EMBEDDING_TEXTS], lang) for lang in self.module.languages]
        self.module.set_sources(torch.stack(embeddings))

    def param_groups(self, args: Any) -> list[dict]:
        if not args.generator_lr:
            return []
        return [{"params": list(self.module.parameters()), "lr": args.generator_lr}]

    @contextlib.contextmanager
    def episode(self, lang: str) -> Iterator[None]:
        with self.generating(self.module.representation(lang)[0]):
            yield

    def generating(self, representation: torch.Tensor | None) -> contextlib.AbstractContextManager[None]:
        """Inner loops in the block start from θ + δ(``representation``) (None: from θ)."""
        return attributes_set(self, representation=representation)

    def representation_for(self, model, lang: str, texts: Sequence) -> tuple[torch.Tensor, str]:
        """``lang``'s r and how it was found; the task embedding of ``texts`` is computed only when URIEL lacks it."""
        representation, kind = self.module.representation(lang)
        if kind == "uniform" and texts:
            representation, kind = self.module.representation(lang, model.task_embedding(texts, lang))
        return representation, kind

    def start_inner_loop(self, model, fast: dict[str, torch.Tensor], support) -> tuple[dict[str, torch.Tensor], Any]:
        """``fast`` + δ(r) on every tensor no other component replaces (a head the prototype head replaces gets
        none); the updates (with their graph) are the record."""
        if self.representation is None:
            return fast, None
        others = [c for c in model.components.values() if c is not self]
        named = {slot.replace(f".{META_ADAPTER}.", f".{model.active_language}."): update
                 for slot, update in self.module(self.representation).items()}
        updates = {name: update for name, update in named.items() if not any(c.replaces(name) for c in others)}
        moved = {name: w + updates[name].detach().to(w.dtype) if name in updates else w for name, w in fast.items()}
        return moved, updates

    def start_at(self, model, fast: dict[str, torch.Tensor], representation: torch.Tensor) -> dict[str, torch.Tensor]:
        """``fast`` as an inner loop starts it for ``representation`` (a zero-shot adapter, a source's fold)."""
        with self.generating(representation):
            return self.start_inner_loop(model, fast, None)[0]

    def start_gradients(self, query_grads: dict[str, torch.Tensor], record) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
        return self.module.pullback(record, query_grads)
