"""Task cards of ``source.type: hf-datasets``: one hub data set config (or a local copy) per language.

Source options: ``dataset`` (hub id), ``config`` (per-language config name, ``{lang}`` filled in),
``label_column``, ``train_split``/``dev_split``/``test_split`` (the data set's split names),
``revision`` and ``data_dir`` (a hub branch and, instead of a config, the language's folder in it:
how script datasets load from their parquet export, ``refs/convert/parquet``, once datasets no
longer runs scripts) and ``local_dir``: when set, ``<local_dir>/<data_dir or config>`` (a
``save_to_disk`` folder or a folder of data files) is read instead of the hub, which is how offline
machines and tests use a card.
"""

from __future__ import annotations

from pathlib import Path

from xmeta.data.cards import TaskCard
from xmeta.data.readers import Columns, read_hf_dataset
from xmeta.data.splits import Split
from xmeta.data.tagging import TagColumns, read_tagged_hf
from xmeta.data.tagging_task import TaggingTask, tagging_tasks_from_dataset
from xmeta.data.task import LabelMap, LanguageTask, tasks_from_dataset
from xmeta.errors import TaskCardError

DEFAULT_SPLITS = {"train": "train", "dev": "validation", "test": "test"}


def hub_language_tasks(card: TaskCard, langs: list[str], split: Split) -> dict[str, LanguageTask | TaggingTask]:
    """The ``split`` of each language as a LanguageTask (classification, pairs) or TaggingTask."""
    options = card.source_options
    if "dataset" not in options or "label_column" not in options:
        raise TaskCardError(f"{card.path}: an hf-datasets source needs keys 'source.dataset' and 'source.label_column'")
    if len(card.text_fields) not in (1, 2) or card.kind == "token-classification" and len(card.text_fields) != 1:
        raise TaskCardError(f"{card.path}: key 'text.fields' must name one text column, or two for sentence pairs")
    split_name = options.get(f"{split}_split", DEFAULT_SPLITS[split])
    labels = LabelMap(card.labels)
    tasks = {}
    for lang in dict.fromkeys(langs):
        folder = options.get("data_dir", "").format(lang=lang) or None
        config = folder or options.get("config", "{lang}").format(lang=lang)
        local = options.get("local_dir")
        source, hub_config = (Path(local) / config, None) if local else (options["dataset"], None if folder else config)
        hub = {} if local else {"revision": options.get("revision") or None, "data_dir": folder}
        if card.kind == "token-classification":
            data = read_tagged_hf(source, hub_config, split_name, TagColumns(tokens=card.text_fields[0],
                                                                             tags=options["label_column"]), lang, **hub)
            found = tagging_tasks_from_dataset(data, labels, origin=f"{card.name} {config}")
        else:
            pair = card.text_fields[1] if len(card.text_fields) == 2 else None
            columns = Columns(text=card.text_fields[0], text_pair=pair, label=options["label_column"])
            found = tasks_from_dataset(read_hf_dataset(source, hub_config, split_name, columns, lang, **hub), labels,
                                       origin=f"{card.name} {config}")
        tasks[lang] = found[lang]
    return tasks
