"""`xmeta coverage`: how well an encoder's tokenizer covers each language's texts, as read and romanised."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from ..arguments import DEFAULT_TASK, CoverageCommand, DataArguments, split_list
from ..coverage import Coverage, measure_coverage
from ..data import load_language_tasks, load_task_card
from ..data.files import file_tasks
from ..data.readers import read_lines
from ..data.romanize import plain_strings, romanize_texts
from ..encoders import resolve_encoder


def coverage_texts(cmd: CoverageCommand, data: DataArguments) -> dict[str, list[str]]:
    """Language → texts: a .txt file (one language: --lang or its name), a labelled file's languages, or the task's
    train split of --lang (default: the card's sources and targets)."""
    if cmd.file:
        path = Path(cmd.file)
        if path.suffix == ".txt":
            return {cmd.lang or path.stem: read_lines(path)}
        return {lang: task.texts for lang, task in file_tasks(cmd.file, data, None, cmd.lang or None).items()}
    card = load_task_card(data.task or DEFAULT_TASK)
    langs = split_list(cmd.lang, "--lang") if cmd.lang else list(dict.fromkeys([*card.sources, *card.targets]))
    return {lang: task.texts for lang, task in load_language_tasks(card, langs, "train").items()}


def measure_languages(cmd: CoverageCommand, data: DataArguments) -> tuple[list[Coverage], list[Coverage]]:
    """Each language's coverage by ``cmd.encoder``'s tokenizer, then the same for its texts romanised."""
    texts = coverage_texts(cmd, data)
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(cmd.encoder).name_or_path)
    texts = {lang: plain_strings(rows) for lang, rows in texts.items()}
    return ([measure_coverage(tokenizer, lang, rows) for lang, rows in texts.items()],
            [measure_coverage(tokenizer, lang, romanize_texts(rows)) for lang, rows in texts.items()])
