"""Which labelled rows a job on a trained model reads: the user's file, else the task card the model names."""

from __future__ import annotations

from dataclasses import dataclass

from xmeta.arguments import DEFAULT_TASK, DataArguments
from xmeta.config import XMetaConfig
from xmeta.data.cards import available_tasks, load_task_card
from xmeta.data.files import file_tasks
from xmeta.data.loading import load_language_tasks
from xmeta.data.splits import Split
from xmeta.data.tagging_task import TaggingTask
from xmeta.data.task import LabelMap, LanguageTask
from xmeta.errors import DataError


@dataclass(frozen=True)
class ModelData:
    """What a model folder's config says about the data it reads: read before any weights load, so that
    data errors surface first."""

    folder: str
    trained_on: str | None  # the card (or file name) it was meta-trained on
    label_map: LabelMap

    @classmethod
    def of(cls, folder: str, config: XMetaConfig) -> ModelData:
        return cls(folder, config.task, LabelMap(tuple(config.labels)))


def task_name(data: DataArguments, model: ModelData | None = None, flag: str = "--train") -> str:
    """--task, else the card the model was meta-trained on, else cldr-emoji. A model meta-trained on
    the user's own file has no card to draw from: the error names the file flag to give instead."""
    if data.task:
        return data.task
    if model is None or not model.trained_on:
        return DEFAULT_TASK
    if model.trained_on not in available_tasks():
        raise DataError(f"{model.folder} was meta-trained on {model.trained_on!r}, not a task card: "
                        f"give {flag} FILE (or --task)")
    return model.trained_on


def file_language(path: str, data: DataArguments, label_map: LabelMap | None, lang: str) -> LanguageTask | TaggingTask:
    """``lang``'s rows of a labelled file (``lang`` also fills a missing language column)."""
    task = file_tasks(path, data, label_map, lang).get(lang)
    if task is None:
        raise DataError(f"{path}: no rows for language '{lang}'")
    return task


def language_task(data: DataArguments, lang: str, split: Split, model: ModelData, file: str = "",
                  flag: str = "--train") -> LanguageTask | TaggingTask:
    """``lang``'s rows from ``file`` (all of it: a file has no splits) if given, else the ``split`` of the
    task card (`task_name`; ``flag`` names the file flag that would replace it), whose labels must be the model's."""
    if file:
        return file_language(file, data, model.label_map, lang)
    card = load_task_card(task_name(data, model, flag))
    task = load_language_tasks(card, [lang], split)[lang]
    if task.label_map != model.label_map:
        raise DataError(f"task {card.name}: its labels ({', '.join(task.label_map.names)}) differ from the model's")
    return task
