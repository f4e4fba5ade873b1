"""What each `xmeta` subcommand does, given its parsed argument dataclasses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from .arguments import (
    DEFAULT_TASK,
    AdaptCommand,
    BenchmarkCommand,
    CoverageCommand,
    DataArguments,
    EvaluateCommand,
    ExplainCommand,
    PredictCommand,
    PrepareEncoderCommand,
    int_list,
    split_list,
)
from .data import (
    Columns,
    LabelMap,
    LanguageTask,
    available_tasks,
    load_language_tasks,
    load_task_card,
)
from .data.files import file_columns, file_tasks
from .data.readers import read_lines, read_texts
from .data.preflight import raise_problems, shot_problems
from .errors import ArgumentError, DataError
from .fileio import atomic_directory
from .data.romanize import check_setting, plain_strings, romanize_texts
from .data.tagging_task import TaggingTask
from .modeling import META_ADAPTER, XMetaForTokenClassification
from .modeling.auto import load_any
from .modeling.sequence_classification import check_language_code
from .modeling.serialization import read_config
from .train import refuse_existing


def check_fits(task: LanguageTask | TaggingTask, model, where: str, model_dir: str) -> None:
    """Tagged data needs a tagger and text data a text classifier: say which mismatch, before any work."""
    if isinstance(task, TaggingTask) != isinstance(model, XMetaForTokenClassification):
        raise DataError(f"{where}: {'tagged' if isinstance(task, TaggingTask) else 'text'} data, "
                        f"but {model_dir} is a {type(model).__name__}")


def task_name(data: DataArguments, model_dir: str = "", flag: str = "--train") -> str:
    """--task, else the card the model was meta-trained on, else cldr-emoji. A model meta-trained on
    the user's own file has no card to draw from: the error names the file flag to give instead."""
    if data.task:
        return data.task
    trained_on = read_config(Path(model_dir)).task if model_dir else None
    if not trained_on:
        return DEFAULT_TASK
    if trained_on not in available_tasks():
        raise DataError(f"{model_dir} was meta-trained on {trained_on!r}, not a task card: give {flag} FILE (or --task)")
    return trained_on


def task_language(data: DataArguments, lang: str, split: str, label_map: LabelMap, model_dir: str = "",
                  flag: str = "--train") -> LanguageTask:
    card = load_task_card(task_name(data, model_dir, flag))
    task = load_language_tasks(card, [lang], split)[lang]
    if task.label_map != label_map:
        raise DataError(f"task {card.name}: its labels ({', '.join(task.label_map.names)}) differ from the model's")
    return task


def model_label_map(model_dir: str) -> LabelMap:
    """The model's labels, read from its config alone: data errors surface before any weights load."""
    return LabelMap(tuple(read_config(Path(model_dir)).labels))


def prepare_encoder(cmd: PrepareEncoderCommand) -> int:
    from .encoders import embedded_encoder_path

    print(embedded_encoder_path(force=cmd.force))
    return 0


def adapt(cmd: AdaptCommand, data: DataArguments) -> int:
    check_language_code(cmd.lang)  # names the flag's value before it is looked up in any file
    if cmd.romanize:
        check_setting(cmd.romanize)
    refuse_existing(cmd.out, cmd.overwrite)
    target_text = read_lines(cmd.target_text) if cmd.target_text else []
    label_map = model_label_map(cmd.model)
    if cmd.shots < 0:
        raise ArgumentError(f"--shots must not be negative (got {cmd.shots})")
    if cmd.train:
        task = file_tasks(cmd.train, data, label_map, lang=cmd.lang).get(cmd.lang)
        if task is None:
            raise DataError(f"{cmd.train}: no rows for language '{cmd.lang}'")
        rows = task.shots(cmd.shots, cmd.seed) if cmd.shots else range(len(task))
    else:
        task = task_language(data, cmd.lang, "train", label_map, cmd.model, "--train")
        rows = task.shots(cmd.shots or 4, cmd.seed)
    model = load_any(cmd.model)
    model.config.romanize = cmd.romanize or model.config.romanize
    check_fits(task, model, cmd.train or task_name(data, cmd.model), cmd.model)
    result = model.adapt(task.examples(rows), lang=cmd.lang, steps=cmd.steps or None, lr=cmd.lr or None, seed=cmd.seed,
                         train_meta_embedding=cmd.meta_embedding_adapt or None, target_text=target_text,
                         allow_missing_labels=cmd.allow_missing_labels)
    model.save_pretrained(cmd.out, overwrite=cmd.overwrite)
    print(f"adapted {cmd.lang} on {result.examples} examples in {result.seconds:.1f} s "
          f"({result.steps} steps, support loss {result.support_loss:.3f}); saved {cmd.out}")
    return 0


def _file_language(path: str, data: DataArguments, label_map: LabelMap, lang: str) -> LanguageTask | TaggingTask:
    """``lang``'s rows of a labelled file (``lang`` also fills a missing language column)."""
    task = file_tasks(path, data, label_map, lang).get(lang)
    if task is None:
        raise DataError(f"{path}: no rows for language '{lang}'")
    return task


def evaluate(cmd: EvaluateCommand, data: DataArguments) -> int:
    from .evaluation import few_shot_evaluation, markdown_table, score_task, write_report

    refuse_existing(cmd.out, cmd.overwrite)
    if cmd.romanize:
        check_setting(cmd.romanize)
    label_map = model_label_map(cmd.model)
    adapted = read_config(Path(cmd.model)).adapted_languages
    lang = cmd.lang or (adapted[0] if len(adapted) == 1 else "")
    if not lang:
        raise ArgumentError("--lang is required (the model has no single adapted language)")
    if cmd.shots:
        shots = int_list(cmd.shots, "--shots")
        if cmd.seeds < 1:
            raise ArgumentError(f"--seeds must be at least 1 (got {cmd.seeds})")
        train = _file_language(cmd.train_file, data, label_map, lang) if cmd.train_file else \
            task_language(data, lang, "train", label_map, cmd.model, "--train_file")
        test = _file_language(cmd.test, data, label_map, lang) if cmd.test else \
            task_language(data, lang, "test", label_map, cmd.model, "--test")
        raise_problems(shot_problems([train], "train", max(shots), f"K={max(shots)} shots"))
        model = load_any(cmd.model, lang=META_ADAPTER)
        model.config.romanize = cmd.romanize or model.config.romanize
        check_fits(train, model, cmd.train_file or task_name(data, cmd.model), cmd.model)
        evaluation = few_shot_evaluation(model, train, test, shots, list(range(cmd.seeds)), adapt_steps=cmd.steps or None)
        table = markdown_table([evaluation])
        if cmd.out:
            write_report(Path(cmd.out), [evaluation], {"model": cmd.model, "task": cmd.train_file or task_name(data, cmd.model),
                                                      "shots": shots,
                                                      "seeds": cmd.seeds}, overwrite=cmd.overwrite)
        print(table, end="")
        return 0
    test = _file_language(cmd.test, data, label_map, lang) if cmd.test else \
        task_language(data, lang, "test", label_map, cmd.model, "--test")
    adapter = lang if lang in adapted else META_ADAPTER
    model = load_any(cmd.model, lang=adapter)
    model.config.romanize = cmd.romanize or model.config.romanize
    check_fits(test, model, cmd.test or task_name(data, cmd.model), cmd.model)
    model.decide_romanization(lang, test.texts)  # θ on a language not adapted yet: decided from the texts at hand
    scores = score_task(model, test, lang=adapter)
    report = {"model": cmd.model, "lang": lang, "adapter": adapter, "n": len(test), **scores}
    if cmd.out:
        from .fileio import write_json

        with atomic_directory(Path(cmd.out), overwrite=cmd.overwrite) as tmp:
            write_json(tmp / "results.json", report)
    print(json.dumps(report))
    return 0


def predict(cmd: PredictCommand) -> int:
    texts = list(cmd.text) + (read_texts(cmd.file, Columns(text=cmd.text_column)) if cmd.file else [])
    if not texts:
        raise ArgumentError("give --text or --file")
    if is_export_folder(cmd.model):
        return predict_exported(cmd.model, texts)
    model = load_any(cmd.model, lang=cmd.lang or None)  # default: the only adapted language, else θ (as the API)
    lang = model.active_language
    if isinstance(model, XMetaForTokenClassification):  # a text is its whitespace-separated words
        sentences = [text.split() for text in texts]
        for words, tags in zip(sentences, model.predict(sentences, lang=lang)):
            sys.stdout.write(json.dumps({"tokens": words, "tags": tags}, ensure_ascii=False) + "\n")
        return 0
    probs = model.predict_proba(texts, lang=lang)
    for text, row in zip(texts, probs.tolist()):
        best = max(range(len(row)), key=row.__getitem__)
        sys.stdout.write(json.dumps({"text": text, "label": model.config.id2label[best], "score": round(row[best], 4)},
                                    ensure_ascii=False) + "\n")
    return 0


def is_export_folder(folder: str) -> bool:
    """An `export_merged` folder: a plain XLM model, not an xmeta one."""
    config = Path(folder) / "config.json"
    try:
        return config.is_file() and json.loads(config.read_text(encoding="utf-8")).get("model_type") == "xlm"
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False  # read_config names the corruption


def predict_exported(folder: str, texts: list[str]) -> int:
    """`predict` through an exported text classifier, with the input pre-processing its config asks for
    (one text per forward pass: the export is exact on unpadded input)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from .modeling.export import exported_inputs

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    if model.config.architectures != [type(model).__name__]:
        raise ArgumentError(f"{folder}: an exported tagger; predict reads exported text classifiers "
                            f"(load it with pipeline('token-classification') on xmeta.exported_inputs)")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for text, model_text in zip(texts, exported_inputs(folder, texts)):
        with torch.inference_mode():
            probs = model(**tokenizer(model_text, return_tensors="pt")).logits.softmax(-1)[0]
        best = int(probs.argmax())
        sys.stdout.write(json.dumps({"text": text, "label": model.config.id2label[best], "score": round(float(probs[best]), 4)},
                                    ensure_ascii=False) + "\n")
    return 0


def explain(cmd: ExplainCommand, data: DataArguments) -> int:
    from .evaluation.explain import explain_sources, write_profile

    refuse_existing(cmd.out, cmd.overwrite)
    config = read_config(Path(cmd.model))
    lang = cmd.lang or (config.adapted_languages[0] if len(config.adapted_languages) == 1 else "")
    if not lang:
        raise ArgumentError("--lang is required (the model has no single adapted language)")
    if not config.source_attention:
        raise ArgumentError(f"{cmd.model}: meta-trained without source attention (--source_attention on)")
    texts = read_texts(cmd.file, file_columns(data)) if cmd.file else \
        task_language(data, lang, "train", LabelMap(tuple(config.labels)), cmd.model, "--file").texts
    model = load_any(cmd.model, lang=lang if lang in config.adapted_languages else META_ADAPTER)
    if cmd.file and isinstance(model, XMetaForTokenClassification):  # a line is its whitespace-separated words
        texts = [line.split() for line in texts]
    adapter = lang if lang in model.languages() else META_ADAPTER
    model.decide_romanization(lang, texts)  # kept if made before (adapt); else from the texts at hand, as evaluate does
    profile = explain_sources(model, texts[: cmd.max_texts], lang, adapter)
    if cmd.out:
        write_profile(profile, Path(cmd.out), overwrite=cmd.overwrite)
    print(profile.markdown(), end="")
    return 0


def coverage(cmd: CoverageCommand, data: DataArguments) -> int:
    from transformers import AutoTokenizer

    from .coverage import coverage_table, measure_coverage
    from .encoders import resolve_encoder

    if cmd.file:
        path = Path(cmd.file)
        if path.suffix == ".txt":
            texts = {cmd.lang or path.stem: read_lines(path)}
        else:
            texts = {lang: task.texts for lang, task in file_tasks(cmd.file, data, None, cmd.lang or None).items()}
    else:
        card = load_task_card(data.task or DEFAULT_TASK)
        langs = split_list(cmd.lang, "--lang") if cmd.lang else list(dict.fromkeys([*card.sources, *card.targets]))
        texts = {lang: task.texts for lang, task in load_language_tasks(card, langs, "train").items()}
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(cmd.encoder).name_or_path)
    texts = {lang: plain_strings(rows) for lang, rows in texts.items()}
    print(coverage_table([measure_coverage(tokenizer, lang, rows) for lang, rows in texts.items()],
                         [measure_coverage(tokenizer, lang, romanize_texts(rows)) for lang, rows in texts.items()]), end="")
    return 0


def reproducing_command(argv: list[str]) -> str:
    """The benchmark command as the report quotes it: without the flags that only (re)write the report."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--report_only":
            continue
        elif arg == "--update_readme":
            skip = True
        elif not arg.startswith("--update_readme="):
            kept.append(arg)
    return " ".join(["xmeta benchmark", *kept])


def benchmark(cmd: BenchmarkCommand) -> int:
    """Every baseline and xmeta variant on the same splits, shots and seeds (cached; re-run to resume)."""
    from .evaluation.benchmark import Benchmark
    from .evaluation.benchmark_plan import plan_from
    from .evaluation.benchmark_report import BenchmarkReport, update_readme

    out = Path(cmd.out or ("runs/benchmark-quick" if cmd.quick else "runs/benchmark"))
    if cmd.speed:
        from .evaluation.speed import speed_benchmark, speed_markdown

        if cmd.speed_steps < 1:
            raise ArgumentError(f"--speed_steps must be at least 1 (got {cmd.speed_steps})")
        print(speed_markdown(speed_benchmark(out, steps=cmd.speed_steps, task=cmd.task, encoder=cmd.encoder)), end="")
        return 0
    card = load_task_card(cmd.task)
    bench = Benchmark(plan_from(cmd, card.targets), out, cmd.task, cmd.encoder)
    if cmd.update_readme and not Path(cmd.update_readme).is_file():
        raise DataError(f"{cmd.update_readme}: file not found (--update_readme)")
    if not cmd.report_only:
        raise_problems(bench.preflight())
        bench.run()
    command = reproducing_command(sys.argv[2:] if sys.argv[1:2] == ["benchmark"] else [])
    report = BenchmarkReport(bench, command)
    report.write()
    print(f"{out}: {len(report.runs)} cells match the current settings; {report.stale} cached under other "
          "settings (stale) are not reported", file=sys.stderr)
    if cmd.update_readme:
        update_readme(Path(cmd.update_readme), report.markdown())
    print((out / "results.md").read_text(encoding="utf-8"), end="")
    return 0

