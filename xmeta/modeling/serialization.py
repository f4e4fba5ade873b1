"""Model folders: config.json + trainer_state.json + model.safetensors (θ) + adapters/<lang>/ (peft) + README.md.

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
from ..trainer_state import TrainerState
from ..version import __version__
from .language_codes import META_ADAPTER
from .model_card import model_card

if TYPE_CHECKING:
    from .sequence_classification import XMetaForSequenceClassification

WEIGHTS_NAME = "model.safetensors"
ADAPTERS_DIR = "adapters"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def save_model(model: XMetaForSequenceClassification, directory: Path, overwrite: bool = True) -> Path:
    """Write the whole folder to a temporary sibling and rename it into place."""
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        model.config.architectures = [type(model).__name__]
        model.config.save_pretrained(tmp)
        model.trainer_state.write(tmp)
        state = {k: v.contiguous() for k, v in {**model.adapter_state(META_ADAPTER), **model.shared_state()}.items()}
        save_file(state, tmp / WEIGHTS_NAME, metadata={"format": "pt", "xmeta_version": __version__})
        for lang in model.languages():
            model.peft.save_pretrained(str(tmp / ADAPTERS_DIR), selected_adapters=[lang], save_embedding_layers=False)
        (tmp / ADAPTERS_DIR / "README.md").unlink(missing_ok=True)
        for component in model.components.values():
            component.save(model, tmp)
        (tmp / "README.md").write_text(model_card(model.config, model.trainer_state), encoding="utf-8")
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


def read_trainer_state(directory: Path, config: XMetaConfig) -> TrainerState:
    """The folder's ``trainer_state.json``; one written before it existed kept the records in ``config.json``'s
    ``scores``, which are read from there (and dropped from the config, which holds architecture only)."""
    legacy = getattr(config, "scores", None)
    if legacy is not None:
        del config.scores
    state = TrainerState.read(directory)
    return state if state is not None else TrainerState.from_legacy_scores(legacy or {})


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
    model.trainer_state = read_trainer_state(directory, config)
    state = read_safetensors(directory / WEIGHTS_NAME)
    expected = {**model.adapter_state(META_ADAPTER), **model.shared_state()}
    optional = {key for component in model.components.values() for key in component.optional_state_keys}
    missing = sorted(set(expected) - set(state) - optional)  # what older folders lack, their components say
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
    for component in model.components.values():
        component.load(model, directory)
    for lang in config.adapted_languages:
        folder = directory / ADAPTERS_DIR / lang
        read_safetensors(folder / "adapter_model.safetensors")
        read_adapter_config(folder)
        model.peft.load_adapter(str(folder), adapter_name=lang, is_trainable=False)
    model.use_language(META_ADAPTER)
    model.eval()
    return model

