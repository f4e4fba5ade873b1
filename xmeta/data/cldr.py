"""CLDR emoji annotations as a parallel multilingual classification task.

Every CLDR locale names the same emoji (a spoken ``tts`` name plus ``|``-separated
keywords); the Unicode emoji group of the emoji is its label. Emoji are matched to
``emoji-test.txt`` with U+FE0F removed on both sides, as CLDR itself stores them.
"""

from __future__ import annotations

import difflib
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from datasets import Dataset

from xmeta.data.cards import TaskCard
from xmeta.data.splits import Split, assign_item_splits
from xmeta.errors import DataError

DEFAULT_ANNOTATIONS_DIR = Path("/usr/share/unicode/cldr/common/annotations")
DEFAULT_EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
INHERIT = "↑↑↑"  # CLDR's "same as the parent locale" placeholder, not a name
FIELDS = ("tts", "keywords")
COLUMNS = ("text", "label", "lang", "item_id")


def _strip_fe0f(text: str) -> str:
    return text.replace("\ufe0f", "")


@lru_cache(maxsize=8)
def emoji_groups(emoji_test: str) -> dict[str, str]:
    """Emoji (U+FE0F removed) -> Unicode group, for every sequence in ``emoji-test.txt``."""
    path = Path(emoji_test)
    if not path.is_file():
        raise DataError(f"emoji test file not found: {path} (Debian package unicode-data)")
    groups: dict[str, str] = {}
    group = None
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.startswith("# group:"):
                group = line.split(":", 1)[1].strip()
            elif line.strip() and not line.startswith("#"):
                if group is None:
                    raise DataError(f"{path}:{number}: emoji listed before any '# group:' header")
                try:
                    emoji = "".join(chr(int(cp, 16)) for cp in line.split(";", 1)[0].split())
                except ValueError:
                    raise DataError(f"{path}:{number}: not a code point list: {line.split(';')[0].strip()!r}") from None
                groups.setdefault(_strip_fe0f(emoji), group)
    return groups


@lru_cache(maxsize=256)
def parse_annotations(xml_path: str) -> dict[str, dict[str, str]]:
    """One locale file -> {emoji: {"tts": name, "keywords": "a | b"}}; ``↑↑↑`` values skipped.

    Cached because every split and every sampler of a run reads the same locales.
    """
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as err:
        line, column = err.position
        raise DataError(f"{xml_path}:{line}:{column + 1}: malformed CLDR XML") from None
    entries: dict[str, dict[str, str]] = {}
    for node in root.iter("annotation"):
        value = (node.text or "").strip()
        if not value or value == INHERIT:
            continue
        kind = "tts" if node.get("type") == "tts" else "keywords"
        entries.setdefault(_strip_fe0f(node.get("cp", "")), {})[kind] = value
    return entries


def available_locales(annotations_dir: str | Path = DEFAULT_ANNOTATIONS_DIR) -> list[str]:
    """Locales with an annotation file (``root`` has no names and is left out)."""
    folder = Path(annotations_dir)
    if not folder.is_dir():
        raise DataError(f"CLDR annotations folder not found: {folder} (Debian package unicode-cldr-core)")
    return sorted(p.stem for p in folder.glob("*.xml") if p.stem != "root")


@dataclass(frozen=True)
class CldrSource:
    """Where the CLDR files are and how a row is built from them."""

    annotations_dir: Path = DEFAULT_ANNOTATIONS_DIR
    emoji_test: Path = DEFAULT_EMOJI_TEST
    labels: tuple[str, ...] = ()
    text_fields: tuple[str, ...] = FIELDS
    separator: str = " | "
    excluded: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_card(cls, card: TaskCard) -> CldrSource:
        unknown = [f for f in card.text_fields if f not in FIELDS]
        if unknown:
            raise DataError(f"{card.path}: text field '{unknown[0]}' is not a CLDR field ({', '.join(FIELDS)})")
        options = card.source_options
        return cls(
            annotations_dir=Path(options.get("annotations_dir", DEFAULT_ANNOTATIONS_DIR)),
            emoji_test=Path(options.get("emoji_test", DEFAULT_EMOJI_TEST)),
            labels=card.labels,
            text_fields=card.text_fields,
            separator=card.text_separator,
            excluded=card.excluded,
        )

    def locale_file(self, lang: str) -> Path:
        """The annotation file of ``lang``; refuses excluded and unknown locales."""
        if lang in self.excluded:
            raise DataError(f"language '{lang}' is excluded from this task: {self.excluded[lang]}")
        path = self.annotations_dir / f"{lang}.xml"
        if not path.is_file():
            close = difflib.get_close_matches(lang, available_locales(self.annotations_dir), n=3)
            hint = f"; close: {', '.join(close)}" if close else ""
            raise DataError(f"unknown CLDR locale '{lang}': no {path}{hint}")
        return path

    def labelled_items(self, lang: str) -> dict[str, str]:
        """Emoji named in ``lang`` (with every text field) whose group is a task label."""
        groups = emoji_groups(str(self.emoji_test))
        wanted = set(self.labels)
        return {
            emoji: groups[emoji]
            for emoji, entry in parse_annotations(str(self.locale_file(lang))).items()
            if groups.get(emoji) in wanted and all(f in entry for f in self.text_fields)
        }

    def rows(self, lang: str) -> list[dict[str, str]]:
        """One row per labelled emoji of ``lang``, in emoji order for determinism."""
        entries = parse_annotations(str(self.locale_file(lang)))
        return [
            {
                "text": self.separator.join(entries[emoji][f] for f in self.text_fields),
                "label": group,
                "lang": lang,
                "item_id": emoji,
            }
            for emoji, group in sorted(self.labelled_items(lang).items())
        ]

    def read(self, langs: Iterable[str]) -> Dataset:
        """All rows of ``langs`` as one Dataset with columns text, label, lang, item_id."""
        langs = list(dict.fromkeys(langs))
        if not langs:
            raise DataError("no CLDR locales given")
        rows = [row for lang in langs for row in self.rows(lang)]
        return Dataset.from_dict({column: [row[column] for row in rows] for column in COLUMNS})

    def item_splits(self, seed: int, test_fraction: float, dev_fraction: float,
                    reference_language: str) -> dict[str, Split]:
        """Split the emoji named in the reference locale, so the split never depends on
        which locales a run loads: a test emoji is a test emoji in every language."""
        return assign_item_splits(self.labelled_items(reference_language), seed, test_fraction, dev_fraction)
