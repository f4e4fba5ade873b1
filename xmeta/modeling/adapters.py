"""`LanguageAdapters`: the model's fast weights are one peft LoRA adapter per language (adapter ``meta`` = θ),
all made with the settings of ``config.lora``; a component's tensors of a language belong to its adapter."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace

import torch
from peft import LoraConfig

from ..config import XMetaConfig
from ..encoders import EncoderSettings
from ..errors import DataError, warn
from .language_codes import META_ADAPTER, check_language_code


def default_language(languages: Sequence[str]) -> str:
    """The adapter a model folder is used through when no language is named (API and CLI alike):
    its only adapted language, else θ (``meta``), with a warning when there are several to choose from."""
    if len(languages) == 1:
        return languages[0]
    if languages:
        warn(f"{len(languages)} adapted languages ({', '.join(languages)}): using θ ('meta'); "
             "name one with --lang / lang= / use_language()")
    return META_ADAPTER


def name_lora_targets(config: XMetaConfig, settings: EncoderSettings) -> None:
    """Name the encoder's attention projections as LoRA targets where the config names none."""
    if not config.lora.target_modules:
        config.lora = replace(config.lora, target_modules=list(settings.lora_target_modules))


def is_adapter_tensor(name: str, adapter: str) -> bool:
    """Whether a peft parameter name is one of ``adapter``'s own tensors (LoRA A/B or its head copy)."""
    return f".{adapter}." in name and ("lora_" in name or "modules_to_save" in name)


class LanguageAdapters:
    """Adapter bookkeeping of `XMetaModelBase` (which holds ``config``, ``peft`` and ``components``)."""

    config: XMetaConfig

    def _complete_lora(self, n_layers: int) -> None:
        """Write into ``config.lora``, once, what every adapter takes from this model: the indices of the top
        ``lora_layers`` of its ``n_layers`` encoder layers, the head as each adapter's own module, the encoder."""
        c = self.config
        top = list(range(n_layers - c.lora_layers, n_layers)) if 0 < c.lora_layers < n_layers else None
        c.lora = replace(c.lora, layers_to_transform=top, layers_pattern="layer" if top is not None else None,
                         modules_to_save=["classifier"], base_model_name_or_path=c.encoder)

    def lora_config(self) -> LoraConfig:
        """A new adapter's LoRA settings: a copy of ``config.lora`` (peft keeps, and may change, the one it is given)."""
        return copy.deepcopy(self.config.lora)

    @property
    def active_language(self) -> str:
        return self.peft.active_adapter

    def languages(self) -> list[str]:
        """Languages with their own adapter (the meta initialisation excluded)."""
        return [name for name in self.peft.peft_config if name != META_ADAPTER]

    def use_language(self, lang: str | None) -> None:
        """Route forward passes through ``lang``'s adapter (``None``: the meta initialisation)."""
        name = lang or META_ADAPTER
        if name not in self.peft.peft_config:
            known = ", ".join(self.languages()) or "none"
            raise DataError(f"language {name!r} has no adapter in this model (adapted: {known})")
        self.peft.set_adapter(name)
        self.peft.base_model.model.encoder.requires_grad_(False)
        self._freeze_other_adapters(name)
        for component in self.components.values():
            component.use_language(name)

    def _freeze_other_adapters(self, active: str) -> None:
        """Only ``active``'s adapter (with its components' tensors of it, e.g. a target view) trains; a
        component's shared tensors in the network (e.g. the meta-embedding) train with θ, not per language."""
        for pname, p in self.peft.named_parameters():
            p.requires_grad_(self._is_language_tensor(pname, active) or (
                active == META_ADAPTER and any(c.is_shared_tensor(pname) for c in self.components.values())))

    def _is_language_tensor(self, name: str, adapter: str) -> bool:
        """Whether a peft parameter name belongs to ``adapter``: its LoRA, head copy or a component's tensor of it."""
        return is_adapter_tensor(name, adapter) or any(c.is_adapter_tensor(name, adapter) for c in self.components.values())

    def start_language(self, lang: str) -> None:
        """Create (or reset) ``lang``'s adapter as a copy of the meta initialisation and activate it."""
        check_language_code(lang)
        if lang in self.peft.peft_config:
            if lang in self.config.adapted_languages:
                warn(f"replacing the existing adapter of {lang!r}")
            if self.active_language == lang:
                self.use_language(None)  # peft would warn that it deleted the active adapter
            self.peft.delete_adapter(lang)
        self._forget_language(lang)
        self.peft.add_adapter(lang, self.lora_config())
        meta = self.adapter_state(META_ADAPTER)
        params = dict(self.peft.named_parameters())
        with torch.no_grad():
            for name, value in meta.items():
                params[name.replace(f".{META_ADAPTER}.", f".{lang}.")].copy_(value)
        self.use_language(lang)
        if lang not in self.config.adapted_languages:
            self.config.adapted_languages.append(lang)

    def drop_language(self, lang: str) -> None:
        """Forget ``lang``'s adapter (e.g. a scratch adapter used for evaluation)."""
        if lang in self.peft.peft_config:
            if self.active_language == lang:
                self.use_language(None)
            self.peft.delete_adapter(lang)
        self._forget_language(lang)
        if lang in self.config.adapted_languages:
            self.config.adapted_languages.remove(lang)
        if lang in self.config.romanized_languages:
            self.config.romanized_languages.remove(lang)

    def _forget_language(self, lang: str) -> None:
        for component in self.components.values():
            component.forget_language(lang)

    def adapter_state(self, adapter: str) -> dict[str, torch.Tensor]:
        """The adapter's own tensors (LoRA A/B and its head copy), keyed by parameter name."""
        return {n: p.detach() for n, p in self.peft.named_parameters() if is_adapter_tensor(n, adapter)}

    def fast_parameters(self) -> dict[str, torch.nn.Parameter]:
        """The active adapter's trainable tensors: the inner loop's fast weights φ.

        Every other trainable tensor (source attention, ...) is a slow weight of the outer loop. A
        component's tensor of the language (e.g. its target view) is one of its fast weights.
        """
        lang = self.active_language
        return {n: p for n, p in self.peft.named_parameters(prefix="peft")
                if p.requires_grad and self._is_language_tensor(n, lang)}
