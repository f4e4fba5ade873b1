"""A job's trained model folder: its config and data read before any weights, then the model loaded to fit the data."""

from __future__ import annotations

from pathlib import Path

from ..config import XMetaConfig
from ..data.readers import read_lines
from ..data.resolve import ModelData
from ..data.tagging_task import TaggingTask
from ..data.task import LanguageTask
from ..errors import ArgumentError, DataError
from ..modeling import XMetaForTokenClassification
from ..modeling.auto import load_any
from ..modeling.base import XMetaModelBase
from ..modeling.serialization import read_config

TASK_TEXTS = "train"  # --target_text's name for the texts of the split the examples are drawn from


def read_model_data(folder: str) -> tuple[XMetaConfig, ModelData]:
    """The folder's config and what it says about data: data errors surface before any weights load."""
    config = read_config(Path(folder))
    return config, ModelData.of(folder, config)


def job_language(lang: str, config: XMetaConfig) -> str:
    """--lang, else the model's only adapted language."""
    lang = lang or (config.adapted_languages[0] if len(config.adapted_languages) == 1 else "")
    if not lang:
        raise ArgumentError("--lang is required (the model has no single adapted language)")
    return lang


def target_texts(source: str, task: LanguageTask | TaggingTask) -> list:
    """The unlabelled texts a ``--target_text`` flag names: none (empty), the texts of ``task``, the split the
    command draws its examples from (``train``; labels unused), or a UTF-8 file's lines."""
    if not source:
        return []
    return list(task.texts) if source == TASK_TEXTS else read_lines(source)


def check_fits(task: LanguageTask | TaggingTask, model, where: str, model_dir: str) -> None:
    """Tagged data needs a tagger and text data a text classifier: say which mismatch, before any work."""
    if isinstance(task, TaggingTask) != isinstance(model, XMetaForTokenClassification):
        raise DataError(f"{where}: {'tagged' if isinstance(task, TaggingTask) else 'text'} data, "
                        f"but {model_dir} is a {type(model).__name__}")


def load_for_task(folder: str, task: LanguageTask | TaggingTask, where: str, lang: str | None = None,
                  romanize: str = "") -> XMetaModelBase:
    """The folder's model with ``lang``'s adapter active, checked to fit ``task`` (read from ``where``);
    ``romanize`` (auto|on|off) replaces its setting for languages it has not decided yet."""
    model = load_any(folder, lang=lang)
    model.config.romanize = romanize or model.config.romanize
    check_fits(task, model, where, folder)
    return model
