"""The registry of optional model parts: one line per component, in the order they are attached
(and their AdamW groups follow θ's). See `xmeta.modeling.components.base` for the protocol."""

from __future__ import annotations

from .base import Component, MetaTrainingRun
from .inner_rates import LearnedInnerRates
from .meta_embedding import MetaEmbeddingComponent
from .prototype_head import PrototypeHead
from .source_attention import SourceAttention

COMPONENTS: list[type[Component]] = [
    SourceAttention,
    MetaEmbeddingComponent,
    LearnedInnerRates,
    PrototypeHead,
]


def enabled_components(config) -> list[type[Component]]:
    """The registered components a model with ``config`` has, in registry order."""
    return [cls for cls in COMPONENTS if cls.enabled(config)]


__all__ = ["COMPONENTS", "Component", "MetaTrainingRun", "enabled_components"]
