"""The meta-embedding as a component: its layer sits in the network (``network.meta_embedding``, the
word vectors peft's adapters read), its character n-gram features come with every `encode`, and
its tensors go to their own file, ``meta_embedding.safetensors`` (`xmeta.modeling.meta_embedding`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file

from ...arguments import require_number
from ...errors import ModelFolderError
from ...fileio import read_safetensors
from ...version import __version__
from ..meta_embedding import CharNgramFeatures, MetaEmbedding
from ..target_view import (
    forget_target_view,
    is_shared_meta_embedding_tensor,
    is_target_view_tensor,
    load_target_views,
    save_target_views,
)
from .base import Component, ComponentFlags

WEIGHTS_NAME = "meta_embedding.safetensors"  # the shared layer (n-gram table, projection, gates)


@dataclass
class MetaEmbeddingFlags(ComponentFlags):
    meta_embedding: Literal["on", "off"] = field(
        default="off", metadata={"help": "gated character n-gram view of every token, <unk> spans included (see `xmeta coverage`)"})

    def config_fields(self) -> dict[str, Any]:
        return {"meta_embedding": self.meta_embedding == "on"}


@dataclass
class MetaEmbeddingTrainingFlags(ComponentFlags):
    meta_embedding_lr: float = field(default=1e-3, metadata={
        "help": "AdamW learning rate of the meta-embedding layer (1e-2 hurt well-covered targets in "
                "scripts/meta_embedding_ablation.py)"})

    def validate(self) -> None:
        require_number("meta_embedding_lr", self.meta_embedding_lr)


class MetaEmbeddingComponent(Component):
    """Gated subword / character n-gram (/ target-language) views of every token."""

    name = "meta_embedding"
    flag = "meta_embedding"
    in_network = True
    reads_offsets = True
    model_flags = MetaEmbeddingFlags
    training_flags = MetaEmbeddingTrainingFlags

    def __init__(self, layer: MetaEmbedding, features: CharNgramFeatures) -> None:
        super().__init__(layer)
        self.features = features

    @classmethod
    def build(cls, model, network) -> MetaEmbeddingComponent:
        c = model.config
        low, high = c.meta_embedding_ngrams
        features = CharNgramFeatures(model.tokenizer, c.meta_embedding_buckets, low, high)
        with torch.random.fork_rng(devices=[]):  # same LoRA init with the layer on or off; fixed n-gram vectors
            torch.manual_seed(0)
            network.meta_embedding = MetaEmbedding(network.encoder.config.hidden_size, c.meta_embedding_buckets,
                                                   c.meta_embedding_dim)
        return cls(network.meta_embedding, features)

    def param_groups(self, args: Any) -> list[dict]:
        return [{"params": list(self.module.parameters()), "lr": args.meta_embedding_lr}]

    def is_adapter_tensor(self, name: str, adapter: str) -> bool:
        return is_target_view_tensor(name, adapter)

    def is_shared_tensor(self, name: str) -> bool:
        return is_shared_meta_embedding_tensor(name)

    def use_language(self, adapter: str) -> None:
        self.module.active = adapter  # its target view, if any, joins the mix

    def forget_language(self, lang: str) -> None:
        forget_target_view(self.module, lang)

    def add_inputs(self, model, inputs: dict[str, torch.Tensor], texts: list[str], offsets: torch.Tensor | None) -> None:
        inputs["char_ngrams"] = self.features(texts, inputs["input_ids"], offsets)
        view = self.module.target(model.active_language)
        if view is not None:
            inputs["char_ngrams"] = view.with_pieces(inputs["char_ngrams"], texts, inputs["input_ids"], offsets)

    def caches_lower_layers(self, adapter: str) -> bool:
        return self.module.target(adapter) is None  # a target view is a fast weight: no cache

    def save(self, model, folder: Path) -> None:
        """The shared layer in its own file; each adapted language's target view, if it has one, in
        ``meta_embedding/<lang>/``."""
        state = {k: v.detach().contiguous() for k, v in self.module.state_dict().items() if not k.startswith("targets.")}
        save_file(state, folder / WEIGHTS_NAME, metadata={"format": "pt", "xmeta_version": __version__})
        save_target_views(self.module, folder, model.languages())

    def load(self, model, folder: Path) -> None:
        path = folder / WEIGHTS_NAME
        state = read_safetensors(path)
        expected = self.module.state_dict()
        for name, value in expected.items():
            if name not in state or state[name].shape != value.shape:
                found = tuple(state[name].shape) if name in state else "missing"
                raise ModelFolderError(f"{path}: {name} is {found}, expected shape {tuple(value.shape)}")
        self.module.load_state_dict({name: state[name] for name in expected})
        load_target_views(model, folder)

    def export(self, model, adapter: str, state: dict[str, torch.Tensor]) -> None:
        """Every vocabulary id's meta-embedding precomputed into the embedding matrix: exact for known
        pieces; ``<unk>`` keeps its pretrained row (see `xmeta.modeling.export`)."""
        words = model.peft.base_model.model.encoder.get_input_embeddings().weight.detach()
        state["transformer.embeddings.weight"] = self.module.vocabulary_matrix(words, self.features, self.module.target(adapter))
