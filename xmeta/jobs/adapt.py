"""`xmeta adapt`: a meta-trained model adapted to a new language on labelled examples, saved to a new folder."""

from __future__ import annotations

from ..adapt import AdaptationResult
from ..arguments import AdaptCommand, DataArguments
from ..data.resolve import language_task, task_name
from ..data.romanize import check_setting
from ..errors import ArgumentError
from ..modeling.base import XMetaModelBase
from ..modeling.language_codes import check_language_code
from ..train import refuse_existing
from .model_folder import load_for_task, read_model_data, target_texts

CARD_SHOTS = 4  # examples per class drawn from the task card when --shots is not given


def adapt_model(cmd: AdaptCommand, data: DataArguments) -> tuple[XMetaModelBase, AdaptationResult]:
    """Adapt ``cmd.model`` to ``cmd.lang`` on every row of ``cmd.train`` (or its ``cmd.shots`` per class),
    else on shots of the task's train split; save it to ``cmd.out``."""
    check_language_code(cmd.lang)  # names the flag's value before it is looked up in any file
    if cmd.romanize:
        check_setting(cmd.romanize)
    refuse_existing(cmd.out, cmd.overwrite)
    _, model_data = read_model_data(cmd.model)
    if cmd.shots < 0:
        raise ArgumentError(f"--shots must not be negative (got {cmd.shots})")
    task = language_task(data, cmd.lang, "train", model_data, cmd.train, "--train")
    target_text = target_texts(cmd.target_text, task)
    if not cmd.train and not cmd.shots and (cmd.generate or (target_text and not cmd.meta_embedding_adapt)):
        rows = []  # zero-shot: the generated adapter, or θ's head centred on the language's text
    else:
        rows = range(len(task)) if cmd.train and not cmd.shots else task.shots(cmd.shots or CARD_SHOTS, cmd.seed)
    model = load_for_task(cmd.model, task, cmd.train or task_name(data, model_data), romanize=cmd.romanize)
    result = model.adapt(task.examples(rows), lang=cmd.lang, steps=cmd.steps or None, lr=cmd.lr or None, seed=cmd.seed,
                         train_meta_embedding=cmd.meta_embedding_adapt or None, target_text=target_text,
                         allow_missing_labels=cmd.allow_missing_labels, init="generated" if cmd.generate else None)
    model.save_pretrained(cmd.out, overwrite=cmd.overwrite)
    return model, result
