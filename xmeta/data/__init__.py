"""Data stage: task cards and readers -> one LanguageTask per language -> episodes."""

from xmeta.data.cards import SplitSpec, TaskCard, available_tasks, load_task_card
from xmeta.data.cldr import CldrSource, available_locales
from xmeta.data.collate import encode_texts
from xmeta.data.readers import Columns, read_file, read_hf_dataset
from xmeta.data.loading import load_language_tasks
from xmeta.data.sampler import Episode, EpisodeSampler
from xmeta.data.tagging import TagColumns, read_tagged_file, read_tagged_hf
from xmeta.data.tagging_task import (
    SentenceEpisodeSampler,
    TaggingTask,
    sample_k_sentences,
    tag_map,
    tagging_tasks_from_dataset,
)
from xmeta.data.splits import Split, assign_item_splits, select_split
from xmeta.data.task import LabelMap, LanguageTask, sample_k_shot, tasks_from_dataset

__all__ = [
    "CldrSource",
    "Columns",
    "Episode",
    "EpisodeSampler",
    "LabelMap",
    "LanguageTask",
    "SentenceEpisodeSampler",
    "Split",
    "TagColumns",
    "TaggingTask",
    "SplitSpec",
    "TaskCard",
    "assign_item_splits",
    "available_locales",
    "available_tasks",
    "encode_texts",
    "load_language_tasks",
    "load_task_card",
    "read_file",
    "read_hf_dataset",
    "read_tagged_file",
    "read_tagged_hf",
    "sample_k_sentences",
    "sample_k_shot",
    "select_split",
    "tag_map",
    "tagging_tasks_from_dataset",
    "tasks_from_dataset",
]
