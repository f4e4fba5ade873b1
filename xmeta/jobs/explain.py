"""`xmeta explain`: which source languages a target draws on, through the model's source attention."""

from __future__ import annotations

from pathlib import Path

from ..arguments import DataArguments, ExplainCommand
from ..data.files import file_columns
from ..data.readers import read_texts
from ..data.resolve import language_task
from ..errors import ArgumentError
from ..evaluation.explain import Explanation, explain_generator, explain_sources, write_explanation
from ..modeling import META_ADAPTER, XMetaForTokenClassification
from ..modeling.auto import load_any
from ..train import refuse_existing
from .model_folder import job_language, read_model_data


def explain_model(cmd: ExplainCommand, data: DataArguments) -> Explanation:
    """The source attention profile of ``cmd.lang`` (its adapter if adapted, else θ) and the generator's input for it,
    over its texts: ``cmd.file``, else the task's train split (explain.json/.md and the plot in ``cmd.out`` if given)."""
    refuse_existing(cmd.out, cmd.overwrite)
    config, model_data = read_model_data(cmd.model)
    lang = job_language(cmd.lang, config)
    if not config.source_attention and not config.adapter_generator:
        raise ArgumentError(f"{cmd.model}: meta-trained with neither source attention (--source_attention on) "
                            "nor an adapter generator (--adapter_generator on)")
    texts = read_texts(cmd.file, file_columns(data)) if cmd.file else \
        language_task(data, lang, "train", model_data, flag="--file").texts
    model = load_any(cmd.model, lang=lang if lang in config.adapted_languages else META_ADAPTER)
    if cmd.file and isinstance(model, XMetaForTokenClassification):  # a line is its whitespace-separated words
        texts = [line.split() for line in texts]
    adapter = lang if lang in model.languages() else META_ADAPTER
    model.decide_romanization(lang, texts)  # kept if made before (adapt); else from the texts at hand, as evaluate does
    texts = texts[: cmd.max_texts]
    explanation = Explanation(lang, adapter, len(texts),
                              explain_sources(model, texts, lang, adapter) if config.source_attention else None,
                              explain_generator(model, texts, lang) if config.adapter_generator else None)
    if cmd.out:
        write_explanation(explanation, Path(cmd.out), overwrite=cmd.overwrite)
    return explanation
