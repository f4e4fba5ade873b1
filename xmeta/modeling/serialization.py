"""Model folders: config.json + model.safetensors (θ) + adapters/<lang>/ (peft) + README.md.

Loading reads safetensors only. A pickle file offered as weights is refused outright, never
opened, because unpickling runs arbitrary code from whoever handed the file over.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save_file

from ..config import XMetaConfig
from ..errors import ModelFolderError
from ..fileio import atomic_directory, read_safetensors
from ..version import __version__
from .language_codes import META_ADAPTER
from .model_card import model_card
from .prototype_head import SOURCE_KEYS
from .source_attention import bank_folder_state
from .target_view import load_target_views, save_target_views

if TYPE_CHECKING:
    from .sequence_classification import XMetaForSequenceClassification

WEIGHTS_NAME = "model.safetensors"
ADAPTERS_DIR = "adapters"
META_EMBEDDING_NAME = "meta_embedding.safetensors"  # the shared meta-embedding layer, when config.meta_embedding
BANK_DIR = "bank"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def save_model(model: XMetaForSequenceClassification, directory: Path, overwrite: bool = True) -> Path:
    """Write the whole folder to a temporary sibling and rename it into place."""
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        model.config.architectures = [type(model).__name__]
        model.config.save_pretrained(tmp)
        state = {k: v.contiguous() for k, v in {**model.adapter_state(META_ADAPTER), **model.shared_state()}.items()}
        save_file(state, tmp / WEIGHTS_NAME, metadata={"format": "pt", "xmeta_version": __version__})
        save_meta_embedding(model, tmp)
        for lang in model.languages():
            model.peft.save_pretrained(str(tmp / ADAPTERS_DIR), selected_adapters=[lang], save_embedding_layers=False)
        (tmp / ADAPTERS_DIR / "README.md").unlink(missing_ok=True)
        if model.source_transfer is not None:
            save_bank(model, tmp / BANK_DIR)
        (tmp / "README.md").write_text(model_card(model.config), encoding="utf-8")
    return directory


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())


def read_config(directory: Path) -> XMetaConfig:
    """The folder's config, with every way it can be unusable turned into one clear line."""
    if not directory.is_dir():
        raise ModelFolderError(f"{directory}: model folder does not exist")
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise ModelFolderError(f"{directory}: not an xmeta model folder (no config.json)")
    try:
        raw = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFolderError(f"{config_file}: corrupt config ({err})") from err
    if not isinstance(raw, dict) or raw.get("model_type") != "xmeta":
        found = raw.get("model_type") if isinstance(raw, dict) else type(raw).__name__
        raise ModelFolderError(f"{config_file}: model_type is {found!r}, not 'xmeta'")
    saved = str(raw.get("xmeta_version", "0"))
    if _version_tuple(saved)[:2] > _version_tuple(__version__)[:2]:
        raise ModelFolderError(f"{config_file}: written by xmeta {saved}, this is {__version__}; upgrade xmeta")
    return XMetaConfig.from_pretrained(str(directory))


def refuse_pickles(directory: Path) -> None:
    """Raise if any weight-like file in the folder is a pickle."""
    for path in sorted(directory.rglob("*")):
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise ModelFolderError(f"{path}: pickle weights are refused; xmeta loads safetensors only")


def read_adapter_config(folder: Path) -> dict:
    """An adapter's ``adapter_config.json``, checked before peft reads it (peft would raise a bare traceback)."""
    path = folder / "adapter_config.json"
    if not path.is_file():
        raise ModelFolderError(f"{path}: missing adapter config")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFolderError(f"{path}: corrupt adapter config ({err})") from err
    if not isinstance(raw, dict) or not raw.get("peft_type"):
        raise ModelFolderError(f"{path}: not a peft adapter config (no peft_type)")
    return raw


def load_model(cls: type, directory: Path, **model_kwargs: object) -> XMetaForSequenceClassification:
    """Rebuild the model around its named encoder, then restore θ and every language adapter."""
    config = read_config(directory)
    refuse_pickles(directory)
    model = cls(config, **model_kwargs)
    state = read_safetensors(directory / WEIGHTS_NAME)
    expected = {**model.adapter_state(META_ADAPTER), **model.shared_state()}
    missing = sorted(set(expected) - set(state) - set(SOURCE_KEYS))  # older folders: no fold (zero offset)
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        culprit = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise ModelFolderError(f"{directory / WEIGHTS_NAME}: does not fit this config ({culprit})")
    for name, value in state.items():
        if value.shape != expected[name].shape:
            raise ModelFolderError(f"{directory / WEIGHTS_NAME}: {name} has shape {tuple(value.shape)}, expected {tuple(expected[name].shape)}")
    targets = {**model.state_dict(), **dict(model.peft.named_parameters())}  # θ keys are relative to the peft model
    with torch.no_grad():
        for name, value in state.items():
            targets[name].copy_(value)
    load_meta_embedding(model, directory)
    for lang in config.adapted_languages:
        folder = directory / ADAPTERS_DIR / lang
        read_safetensors(folder / "adapter_model.safetensors")
        read_adapter_config(folder)
        model.peft.load_adapter(str(folder), adapter_name=lang, is_trainable=False)
    if model.source_transfer is not None:
        model.source_transfer.bank.defer_loading(lambda lang: _read_bank_slot(directory / BANK_DIR / lang))
    model.use_language(META_ADAPTER)
    model.eval()
    return model


def save_bank(model: XMetaForSequenceClassification, folder: Path) -> None:
    """Each source language's bank slot as a peft adapter folder ``bank/<lang>/``."""
    bank = model.source_transfer.bank
    config = model.lora_config()
    for lang in bank.languages:
        (folder / lang).mkdir(parents=True)
        config.save_pretrained(str(folder / lang))
        save_file(bank_folder_state(bank, lang), folder / lang / "adapter_model.safetensors",
                  metadata={"format": "pt"})


def _read_bank_slot(folder: Path) -> dict:
    return read_safetensors(folder / "adapter_model.safetensors")


def save_meta_embedding(model: XMetaForSequenceClassification, directory: Path) -> None:
    """The meta-embedding's n-gram table, projection and gates (shared by every language) in their own file;
    each adapted language's target view, if it has one, in ``meta_embedding/<lang>/``."""
    module = model.peft.base_model.model.meta_embedding
    if module is not None:
        state = {k: v.detach().contiguous() for k, v in module.state_dict().items() if not k.startswith("targets.")}
        save_file(state, directory / META_EMBEDDING_NAME, metadata={"format": "pt", "xmeta_version": __version__})
        save_target_views(module, directory, model.languages())


def load_meta_embedding(model: XMetaForSequenceClassification, directory: Path) -> None:
    module = model.peft.base_model.model.meta_embedding
    if module is None:
        return
    path = directory / META_EMBEDDING_NAME
    state = read_safetensors(path)
    expected = module.state_dict()
    for name, value in expected.items():
        if name not in state or state[name].shape != value.shape:
            found = tuple(state[name].shape) if name in state else "missing"
            raise ModelFolderError(f"{path}: {name} is {found}, expected shape {tuple(value.shape)}")
    module.load_state_dict({name: state[name] for name in expected})
    load_target_views(model, directory)
