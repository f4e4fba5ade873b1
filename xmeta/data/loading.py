"""Loading a task card's data: the one place that knows every kind of source (CLDR, GNOME help, hub datasets)."""

from __future__ import annotations

from collections.abc import Iterable

from xmeta.data.cards import TaskCard
from xmeta.data.cldr import CldrSource
from xmeta.data.gnome_help import GnomeHelpSource
from xmeta.data.hub import hub_language_tasks
from xmeta.data.splits import Split, select_split
from xmeta.data.task import LabelMap, LanguageTask, tasks_from_dataset
from xmeta.errors import DataError


def load_language_tasks(card: TaskCard, langs: Iterable[str] | None = None, split: Split = "train") -> dict[str, LanguageTask]:
    """The ``split`` of ``langs`` (default: the card's sources), one LanguageTask per language."""
    langs = list(card.sources if langs is None else langs)
    if card.source_type == "hf-datasets":
        return hub_language_tasks(card, langs, split)
    source = (GnomeHelpSource if card.source_type == "gnome-help" else CldrSource).from_card(card)
    spec = card.split
    assignment = source.item_splits(spec.seed, spec.test_fraction, spec.dev_fraction, spec.reference_language)
    dataset = select_split(source.read(langs), assignment, split, card.name)
    tasks = tasks_from_dataset(dataset, LabelMap(card.labels), origin=card.name)
    empty = [lang for lang in langs if lang not in tasks]
    if empty:
        raise DataError(f"{card.name}: language '{empty[0]}' has no rows in the {split} split")
    return {lang: tasks[lang] for lang in dict.fromkeys(langs)}
