"""GNOME help pages (Debian ``gnome-user-docs``) as a multilingual topic classification task.

A text is one ``<title>`` or ``<p>`` of a Mallard page, ``/usr/share/help/<lang>/gnome-help/*.page``;
its label is the page's topic, the file name up to the first ``-`` (``net-wireless-connect`` ->
``net``). The translations are made by itstool from the English (``C``) pages, so the n-th text
element of a translated page is the n-th of the English page: that position is the item
(``<page>#<n>``), one paragraph across languages. itstool keeps the English text of a paragraph
nobody translated, so a row equal to its English paragraph is dropped: it is not in that language.
"""

from __future__ import annotations

import difflib
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from datasets import Dataset

from xmeta.data.cards import TaskCard
from xmeta.data.splits import Split, assign_group_splits, assign_item_splits
from xmeta.errors import DataError, TaskCardError

DEFAULT_HELP_DIR = Path("/usr/share/help")
DEFAULT_DOCUMENT = "gnome-help"
ENGLISH = "C"  # the untranslated source pages
MALLARD = "{http://projectmallard.org/1.0/}"
TEXT_TAGS = (f"{MALLARD}title", f"{MALLARD}p")
HIDDEN_TAGS = (f"{MALLARD}info", f"{MALLARD}comment")  # metadata and editors' notes: not shown to readers
FIELDS = ("text",)
COLUMNS = ("text", "label", "lang", "item_id")
MIN_WORDS = 3  # English paragraphs shorter than this ("Click Save.") say little about the topic
MIN_CHARS = 15


def page_topic(page: str) -> str:
    """The topic of a page: its file name up to the first ``-`` (``power-batterylife`` -> ``power``)."""
    return page.split("-", 1)[0]


def _texts(node: ET.Element, out: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(tag, whitespace-normalised text) of every visible title and p under ``node``, in document order."""
    for child in node:
        if child.tag in HIDDEN_TAGS:
            continue
        if child.tag in TEXT_TAGS:
            out.append((child.tag[len(MALLARD):], " ".join("".join(child.itertext()).split())))
        else:
            _texts(child, out)
    return out


@lru_cache(maxsize=None)
def parse_page(path: str) -> tuple[tuple[str, str], ...]:
    """One page -> its (tag, text) elements; cached, since every split of a run reads the same pages."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        line, column = err.position
        raise DataError(f"{path}:{line}:{column + 1}: malformed Mallard XML") from None
    if root.tag != f"{MALLARD}page":
        raise DataError(f"{path}: not a Mallard page (root element {root.tag!r})")
    return tuple(_texts(root, []))


def read_document(folder: Path, topics: Iterable[str] | None = None) -> dict[str, tuple[tuple[str, str], ...]]:
    """The pages of one language's document folder (of ``topics`` only, when given), by page name."""
    wanted = None if topics is None else set(topics)
    return {path.stem: parse_page(str(path)) for path in sorted(folder.glob("*.page"))
            if wanted is None or page_topic(path.stem) in wanted}


def available_languages(help_dir: str | Path = DEFAULT_HELP_DIR, document: str = DEFAULT_DOCUMENT) -> list[str]:
    """Languages with a translation of ``document`` (``C``, the English source, left out)."""
    folder = Path(help_dir)
    if not (folder / ENGLISH / document).is_dir():
        raise DataError(f"GNOME help not found: no {folder / ENGLISH / document} (Debian package gnome-user-docs)")
    return sorted(p.parent.name for p in folder.glob(f"*/{document}") if p.parent.name != ENGLISH)


@dataclass(frozen=True)
class Paragraph:
    """One English text element that can be an item: long enough, on one page only, topic labelled."""

    page: str
    index: int
    text: str

    @property
    def item_id(self) -> str:
        return f"{self.page}#{self.index}"


@dataclass(frozen=True)
class GnomeHelpSource:
    """Where the help pages are and which of their paragraphs make rows."""

    help_dir: Path = DEFAULT_HELP_DIR
    document: str = DEFAULT_DOCUMENT
    labels: tuple[str, ...] = ()
    split_by: str = "page"
    excluded: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_card(cls, card: TaskCard) -> GnomeHelpSource:
        if card.text_fields != FIELDS:
            raise TaskCardError(f"{card.path}: key 'text.fields' of a gnome-help task must be [text]")
        if card.split.by not in ("page", "item_id"):
            raise TaskCardError(f"{card.path}: key 'split.by' of a gnome-help task must be page or item_id")
        options = card.source_options
        return cls(help_dir=Path(options.get("help_dir", DEFAULT_HELP_DIR)),
                   document=options.get("document", DEFAULT_DOCUMENT), labels=card.labels, split_by=card.split.by,
                   excluded=card.excluded)

    def pages(self, lang: str) -> dict[str, tuple[tuple[str, str], ...]]:
        """The parsed pages of ``lang`` (every English page; a translation's labelled pages only, which
        is all it is read for); refuses excluded and unknown languages."""
        if lang in self.excluded:
            raise DataError(f"language '{lang}' is excluded from this task: {self.excluded[lang]}")
        folder = self.help_dir / lang / self.document
        if not folder.is_dir():
            known = available_languages(self.help_dir, self.document)
            close = difflib.get_close_matches(lang, known, n=3)
            hint = f"; close: {', '.join(close)}" if close else ""
            raise DataError(f"unknown GNOME help language '{lang}': no {folder}{hint}")
        return read_document(folder, None if lang == ENGLISH else self.labels)

    def paragraphs(self) -> dict[str, Paragraph]:
        """The items, by item id: English titles and paragraphs of a labelled topic with at least
        MIN_WORDS words and MIN_CHARS characters, whose text occurs only once in the document (the
        same step, "Open the Activities overview…", on pages of several topics says nothing of any)."""
        english = self.pages(ENGLISH)
        if not english:
            raise DataError(f"no .page files in {self.help_dir / ENGLISH / self.document}")
        counts = Counter(text for elements in english.values() for _, text in elements)
        wanted = set(self.labels)
        items = (
            Paragraph(page, index, text)
            for page, elements in english.items() if page_topic(page) in wanted
            for index, (_, text) in enumerate(elements)
            if counts[text] == 1 and len(text) >= MIN_CHARS and len(text.split()) >= MIN_WORDS
        )
        return {p.item_id: p for p in items}

    def rows(self, lang: str) -> list[dict[str, str]]:
        """One row per item translated in ``lang``: pages whose element structure differs from the
        English page (an outdated translation) are skipped, and texts equal to the English dropped."""
        english = self.pages(ENGLISH)
        matching = {page: elements for page, elements in self.pages(lang).items()
                    if [tag for tag, _ in elements] == [tag for tag, _ in english.get(page, ())]}
        rows = []
        for item_id, paragraph in self.paragraphs().items():
            text = matching[paragraph.page][paragraph.index][1] if paragraph.page in matching else ""
            if text and text != paragraph.text:
                rows.append({"text": text, "label": page_topic(paragraph.page), "lang": lang, "item_id": item_id})
        return rows

    def read(self, langs: Iterable[str]) -> Dataset:
        """All rows of ``langs`` as one Dataset with columns text, label, lang, item_id."""
        langs = list(dict.fromkeys(langs))
        if not langs:
            raise DataError("no GNOME help languages given")
        rows = [row for lang in langs for row in self.rows(lang)]
        return Dataset.from_dict({column: [row[column] for row in rows] for column in COLUMNS})

    def item_splits(self, seed: int, test_fraction: float, dev_fraction: float,
                    reference_language: str) -> dict[str, Split]:
        """Split the English items, so every language gets the same split. ``by: page`` keeps all
        paragraphs of a page in one split (stratified by topic); ``by: item_id`` splits paragraphs."""
        if reference_language != ENGLISH:
            raise TaskCardError(f"split.reference_language '{reference_language}': a gnome-help split is made "
                                f"on the English pages every translation comes from ({ENGLISH})")
        paragraphs = self.paragraphs()
        if self.split_by == "item_id":
            labels = {item: page_topic(p.page) for item, p in paragraphs.items()}
            return assign_item_splits(labels, seed, test_fraction, dev_fraction)
        pages = {item: p.page for item, p in paragraphs.items()}
        return assign_group_splits(pages, {page: page_topic(page) for page in pages.values()}, seed,
                                   test_fraction, dev_fraction)
