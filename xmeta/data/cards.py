"""Task cards: one YAML file says where a task's data lives, which fields make the
text, which labels exist and which languages train, test or are excluded.

Cards ship inside the wheel (``xmeta.tasks``) so ``--task cldr-emoji`` works from
any directory; a path to a ``.yaml`` file works too, for the user's own tasks.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from xmeta.errors import TaskCardError

KINDS = ("sequence-classification", "token-classification")
SOURCE_TYPES = ("cldr-annotations", "hf-datasets", "gnome-help")
SPLIT_BY = ("item_id", "hub", "page")  # hub: the data set's own splits; page: all items of a page in one split
_TOP_KEYS = ("name", "kind", "description", "source", "text", "labels", "split", "languages")


@dataclass(frozen=True)
class SplitSpec:
    """How rows become train/dev/test: by item so an item never leaks across splits."""

    by: str = "item_id"
    seed: int = 0
    test_fraction: float = 0.4
    dev_fraction: float = 0.15
    reference_language: str = "en"


@dataclass(frozen=True)
class TaskCard:
    """A parsed, validated task card."""

    name: str
    kind: str
    source_type: str
    source_options: dict[str, str]
    text_fields: tuple[str, ...]
    text_separator: str
    labels: tuple[str, ...]
    split: SplitSpec
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    excluded: dict[str, str] = field(default_factory=dict)
    report_separately: tuple[str, ...] = ()  # targets the benchmark reports outside the target mean
    description: str = ""
    path: Path | None = None

    def with_source_options(self, **options: str | Path | None) -> TaskCard:
        """A copy reading its data elsewhere (e.g. another CLDR checkout); None keeps a value."""
        unknown = sorted(set(options) - set(self.source_options))
        if unknown:
            raise TaskCardError(
                f"{self.path or self.name}: unknown source option '{unknown[0]}' "
                f"(known: {', '.join(sorted(self.source_options))})"
            )
        merged = dict(self.source_options)
        merged.update({k: str(v) for k, v in options.items() if v is not None})
        return dataclasses.replace(self, source_options=merged)


def _tasks_dir() -> Path:
    """The packaged cards; in a source checkout without install, the repo's tasks/."""
    try:
        return Path(str(importlib.resources.files("xmeta.tasks")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "tasks"


def available_tasks() -> list[str]:
    """Names of the cards shipped with xmeta."""
    return sorted(p.stem for p in _tasks_dir().glob("*.yaml"))


def load_task_card(name_or_path: str | Path) -> TaskCard:
    """Load a shipped card by name (``cldr-emoji``) or any card by its ``.yaml`` path."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or Path(text).is_file():
        path = Path(text)
        if not path.is_file():
            raise TaskCardError(f"{path}: task card file not found")
    else:
        path = _tasks_dir() / f"{text}.yaml"
        if not path.is_file():
            raise TaskCardError(
                f"unknown task '{text}' (available: {', '.join(available_tasks()) or 'none'}; "
                "or give a path to a .yaml card)"
            )
    return parse_task_card(path.read_text(encoding="utf-8"), path)


def parse_task_card(text: str, path: Path) -> TaskCard:
    """Parse card YAML; every mistake names the file and the key (or line:column)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise TaskCardError(f"{where}: malformed YAML: {problem}") from None
    reader = _Keys(raw, path, "")
    reader.reject_unknown(_TOP_KEYS)
    source = reader.section("source")
    text_spec = reader.section("text")
    split = reader.section("split")
    split.reject_unknown(tuple(f.name for f in dataclasses.fields(SplitSpec)))
    languages = reader.section("languages")
    languages.reject_unknown(("sources", "targets", "excluded", "report_separately"))
    text_spec.reject_unknown(("fields", "separator"))
    defaults = SplitSpec()
    card = TaskCard(
        name=reader.get("name", str),
        kind=reader.choice("kind", KINDS),
        source_type=source.choice("type", SOURCE_TYPES),
        source_options={k: str(v) for k, v in source.raw.items() if k != "type"},
        text_fields=text_spec.strings("fields"),
        text_separator=text_spec.get("separator", str),
        labels=reader.strings("labels"),
        split=SplitSpec(
            by=split.choice("by", SPLIT_BY, defaults.by),
            seed=split.get("seed", int, defaults.seed),
            test_fraction=split.fraction("test_fraction", defaults.test_fraction),
            dev_fraction=split.fraction("dev_fraction", defaults.dev_fraction),
            reference_language=split.get("reference_language", str, defaults.reference_language),
        ),
        sources=languages.strings("sources"),
        targets=languages.strings("targets", ()),
        excluded={str(k): str(v) for k, v in languages.get("excluded", dict, {}).items()},
        report_separately=languages.strings("report_separately", ()),
        description=reader.get("description", str, ""),
        path=path,
    )
    _check_languages(card)
    return card


def _check_languages(card: TaskCard) -> None:
    """A language is either a source, a target or excluded, never two of these."""
    for a, b in (("sources", "targets"), ("sources", "excluded"), ("targets", "excluded")):
        both = sorted(set(getattr(card, a)) & set(getattr(card, b)))
        if both:
            raise TaskCardError(f"{card.path}: language '{both[0]}' is in both languages.{a} and languages.{b}")
    stray = sorted(set(card.report_separately) - set(card.targets))
    if stray:
        raise TaskCardError(f"{card.path}: language '{stray[0]}' in languages.report_separately is not a target")
    if not card.labels or len(set(card.labels)) != len(card.labels):
        raise TaskCardError(f"{card.path}: key 'labels' must list distinct label names")


@dataclass
class _Keys:
    """One mapping of the card, with its dotted key prefix for error messages."""

    raw: Any
    path: Path
    prefix: str

    def __post_init__(self) -> None:
        if not isinstance(self.raw, dict):
            where = f"key '{self.prefix.rstrip('.')}'" if self.prefix else "the card"
            raise TaskCardError(f"{self.path}: {where} must be a mapping of keys")

    def get(self, key: str, kind: type, default: Any = dataclasses.MISSING) -> Any:
        if key not in self.raw:
            if default is dataclasses.MISSING:
                raise TaskCardError(f"{self.path}: missing key '{self.prefix}{key}'")
            return default
        value = self.raw[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise TaskCardError(
                f"{self.path}: key '{self.prefix}{key}' must be a {kind.__name__}, got {value!r}"
            )
        return value

    def section(self, key: str) -> _Keys:
        return _Keys(self.get(key, dict), self.path, f"{self.prefix}{key}.")

    def choice(self, key: str, allowed: tuple[str, ...], default: str | object = dataclasses.MISSING) -> str:
        value = self.get(key, str, default)
        if value not in allowed:
            raise TaskCardError(
                f"{self.path}: key '{self.prefix}{key}' is '{value}'; expected one of {', '.join(allowed)}"
            )
        return value

    def fraction(self, key: str, default: float) -> float:
        value = self.get(key, float, default)
        if not 0.0 < value < 1.0:
            raise TaskCardError(f"{self.path}: key '{self.prefix}{key}' must be between 0 and 1, got {value}")
        return value

    def strings(self, key: str, default: tuple[str, ...] | object = dataclasses.MISSING) -> tuple[str, ...]:
        """A list of strings; YAML turns a bare ``no`` (Norwegian) into False, so say to quote it."""
        values = self.get(key, list, default)
        for value in values:
            if not isinstance(value, str):
                raise TaskCardError(
                    f"{self.path}: key '{self.prefix}{key}' has {value!r}, not a string (quote it)"
                )
        return tuple(values)

    def reject_unknown(self, known: tuple[str, ...]) -> None:
        for key in self.raw:
            if key not in known:
                raise TaskCardError(
                    f"{self.path}: unknown key '{self.prefix}{key}' (known: {', '.join(known)})"
                )
