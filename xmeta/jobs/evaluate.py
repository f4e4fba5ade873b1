"""`xmeta evaluate`: score a model on a language's test rows, or run the K-shot protocol on it."""

from __future__ import annotations

from pathlib import Path

from ..arguments import DataArguments, EvaluateCommand, int_list
from ..config import XMetaConfig
from ..data.preflight import raise_problems, shot_problems
from ..data.resolve import ModelData, language_task, task_name
from ..data.romanize import check_setting
from ..errors import ArgumentError
from ..evaluation import LanguageEvaluation, few_shot_evaluation, score_task, write_report
from ..fileio import atomic_directory, write_json
from ..modeling import META_ADAPTER
from ..train import refuse_existing
from .model_folder import job_language, load_for_task, read_model_data, target_texts


def _evaluated(cmd: EvaluateCommand) -> tuple[XMetaConfig, ModelData, str]:
    """The model's config and data, and the language scored, after the checks every evaluation makes."""
    refuse_existing(cmd.out, cmd.overwrite)
    if cmd.romanize:
        check_setting(cmd.romanize)
    config, model_data = read_model_data(cmd.model)
    return config, model_data, job_language(cmd.lang, config)


def run_protocol(cmd: EvaluateCommand, data: DataArguments) -> LanguageEvaluation:
    """For each K of ``cmd.shots`` and each seed: adapt a scratch copy of θ on K shots, score the test rows
    (results.json/.md and the plot in ``cmd.out`` if given)."""
    _, model_data, lang = _evaluated(cmd)
    shots = int_list(cmd.shots, "--shots")
    if cmd.seeds < 1:
        raise ArgumentError(f"--seeds must be at least 1 (got {cmd.seeds})")
    train = language_task(data, lang, "train", model_data, cmd.train_file, "--train_file")
    test = language_task(data, lang, "test", model_data, cmd.test, "--test")
    raise_problems(shot_problems([train], "train", max(shots), f"K={max(shots)} shots"))
    target_text = target_texts(cmd.target_text, train)
    task = cmd.train_file or task_name(data, model_data)
    model = load_for_task(cmd.model, train, task, lang=META_ADAPTER, romanize=cmd.romanize)
    evaluation = few_shot_evaluation(model, train, test, shots, list(range(cmd.seeds)), adapt_steps=cmd.steps or None,
                                     target_text=target_text)
    if cmd.out:
        settings = {"model": cmd.model, "task": task, "shots": shots, "seeds": cmd.seeds,
                    "target_text": cmd.target_text or "none"}
        write_report(Path(cmd.out), [evaluation], settings, overwrite=cmd.overwrite)
    return evaluation


def score_model(cmd: EvaluateCommand, data: DataArguments) -> dict:
    """The scores of ``cmd.lang``'s adapter (θ if it has none) on its test rows (results.json in ``cmd.out`` if given)."""
    config, model_data, lang = _evaluated(cmd)
    if cmd.target_text:
        raise ArgumentError("--target_text is read by adaptation: it needs --shots")
    test = language_task(data, lang, "test", model_data, cmd.test, "--test")
    adapter = lang if lang in config.adapted_languages else META_ADAPTER
    model = load_for_task(cmd.model, test, cmd.test or task_name(data, model_data), lang=adapter, romanize=cmd.romanize)
    model.decide_romanization(lang, test.texts)  # θ on a language not adapted yet: decided from the texts at hand
    report = {"model": cmd.model, "lang": lang, "adapter": adapter, "n": len(test), **score_task(model, test, lang=adapter)}
    if cmd.out:
        with atomic_directory(Path(cmd.out), overwrite=cmd.overwrite) as tmp:
            write_json(tmp / "results.json", report)
    return report
