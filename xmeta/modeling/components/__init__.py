"""The registry of optional model parts: one line per component, in the order they are attached
(and their AdamW groups follow θ's). See `xmeta.modeling.components.base` for the protocol."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from .base import Component, ComponentFlags, MetaTrainingRun
from .generator import AdapterGeneratorComponent
from .inner_rates import LearnedInnerRates
from .meta_embedding import MetaEmbeddingComponent
from .prototype_head import PrototypeHead
from .source_attention import SourceAttention

COMPONENTS: list[type[Component]] = [
    SourceAttention,
    MetaEmbeddingComponent,
    LearnedInnerRates,
    AdapterGeneratorComponent,  # before the prototype head: prototypes read the generated LoRA
    PrototypeHead,
]


def enabled_components(config) -> list[type[Component]]:
    """The registered components a model with ``config`` has, in registry order."""
    return [cls for cls in COMPONENTS if cls.enabled(config)]


def with_component_flags(name: str, base: type, group: Literal["model", "training"], module: str) -> type:
    """Dataclass ``module.name``: ``base`` extended with the ``group`` flags of every component registered now
    (their fields after ``base``'s, in registry order): one argument group of `meta-train`, one set of settings."""
    return _extended(name, base, group, module, tuple(COMPONENTS))


@cache
def _extended(name: str, base: type, group: str, module: str, components: tuple[type[Component], ...]) -> type:
    parts = [flags for cls in components if (flags := getattr(cls, f"{group}_flags")) is not None]

    def validate(self) -> None:
        base.validate(self)
        for part in parts:
            part.validate(self)

    def config_fields(self) -> dict[str, Any]:
        """The config fields the components' flags set, in registry order."""
        return {key: value for part in parts for key, value in part.config_fields(self).items()}

    namespace = {"__module__": module, "__qualname__": name, "__doc__": base.__doc__,
                 "validate": validate, "config_fields": config_fields}
    # dataclass fields follow the reversed MRO: base's first, then each part's
    return dataclass(type(name, (*reversed(parts), base), namespace))


__all__ = ["COMPONENTS", "Component", "ComponentFlags", "MetaTrainingRun", "enabled_components", "with_component_flags"]
