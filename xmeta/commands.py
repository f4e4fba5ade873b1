"""What each `xmeta` subcommand does, given its parsed argument dataclasses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from .arguments import (
    DEFAULT_TASK,
    RESUME_DEFAULT,
    AdaptCommand,
    BenchmarkCommand,
    CoverageCommand,
    DataArguments,
    EncoderArguments,
    EvaluateCommand,
    ExplainCommand,
    MetaTrainCommand,
    PredictCommand,
    PrepareEncoderCommand,
    int_list,
    split_list,
)
from .data import (
    Columns,
    EpisodeSampler,
    LabelMap,
    LanguageTask,
    available_tasks,
    load_language_tasks,
    load_task_card,
    read_file,
    tasks_from_dataset,
)
from .data.readers import read_lines, read_texts
from .data.sampler import episode_languages
from .data.preflight import raise_problems, shot_problems
from .errors import ArgumentError, DataError
from .distributed import Processes
from .fileio import atomic_directory, check_output_folder
from .meta.bank import finalize_bank, init_source_keys
from .meta.source_prototypes import fold_source_prototypes
from .meta.trainer import MetaTrainer, MetaTrainingArguments
from .data.romanize import check_setting, plain_strings, romanization_needed, romanize_texts
from .meta.warm_start import JointWarmStart
from .data.tagging import CONLL_SUFFIXES, CONLLU_SUFFIXES, TagColumns, read_tagged_file
from .data.tagging_task import SentenceEpisodeSampler, TaggingTask, tagging_tasks_from_dataset
from .modeling import META_ADAPTER, XMetaForSequenceClassification, XMetaForTokenClassification
from .modeling.auto import load_any
from .modeling.sequence_classification import check_language_code
from .modeling.serialization import read_config


BANK_SHOTS = 8  # examples per class (sentences, for tagging) for the final adaptation of each source-bank slot


def _columns(data: DataArguments) -> Columns:
    return Columns(text=data.text_column, label=data.label_column, lang=data.lang_column,
                   text_pair=data.text_pair_column or None)


def _tagged(path: str, data: DataArguments) -> bool:
    """Tagging data: a CoNLL(-U) file, or JSONL whose first row has the word-list column."""
    suffix = Path(path).suffix
    if suffix in CONLL_SUFFIXES + CONLLU_SUFFIXES:
        return True
    if suffix != ".jsonl" or not Path(path).is_file():
        return False
    with open(path, "rb") as handle:  # bytes: the reader reports encoding errors with their line
        first = next((line for line in handle if line.strip()), b"")
    return f'"{data.tokens_column}"'.encode() in first


def _refuse_existing(out: str, overwrite: bool) -> None:
    """Fail before hours of work, not after (a file, an existing folder, a read-only parent): the final write checks again."""
    if out:
        check_output_folder(out, overwrite)


def file_tasks(path: str, data: DataArguments, label_map: LabelMap | None, lang: str | None = None) -> dict[str, LanguageTask]:
    """The languages of a user's labelled (or tagged) file (``lang`` fills a missing language column)."""
    if _tagged(path, data):
        index = data.conll_tag_index if Path(path).suffix not in CONLLU_SUFFIXES or data.conll_tag_index != -1 else None
        columns = TagColumns(tokens=data.tokens_column, tags=data.tag_column, lang=data.lang_column, tag_index=index)
        return tagging_tasks_from_dataset(read_tagged_file(path, columns, lang or None), label_map, origin=path)
    return tasks_from_dataset(read_file(path, _columns(data), lang=lang or None), label_map, origin=path)


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


def meta_train(cmd: MetaTrainCommand, data: DataArguments, enc: EncoderArguments, train: MetaTrainingArguments) -> int:
    enc.validate()
    train.validate()
    _refuse_existing(cmd.out, cmd.overwrite)
    if cmd.adapt_steps < 1:
        raise ArgumentError(f"--adapt_steps must be at least 1 (got {cmd.adapt_steps})")
    if cmd.train_file:
        tasks = file_tasks(cmd.train_file, data, None)
        if cmd.sources:
            wanted = split_list(cmd.sources, "--sources")
            missing = [lang for lang in wanted if lang not in tasks]
            if missing:
                raise DataError(f"{cmd.train_file}: no rows for language '{missing[0]}'")
            tasks = {lang: tasks[lang] for lang in wanted}
        dev_tasks, labels, trained_on = None, next(iter(tasks.values())).label_map.names, Path(cmd.train_file).name
    else:
        card = load_task_card(data.task or DEFAULT_TASK)
        sources = split_list(cmd.sources, "--sources") if cmd.sources else list(card.sources)
        if not sources:
            raise DataError(f"task {card.name}: zero source languages left")
        tasks = load_language_tasks(card, sources, "train")
        dev_tasks = load_language_tasks(card, sources, "dev")
        labels, trained_on = card.labels, card.name
    n_way = train.n_way or None
    tagging = isinstance(next(iter(tasks.values())), TaggingTask)
    if not tagging:  # a language that cannot make an episode is skipped with a warning (not the whole run)
        tasks = episode_languages(tasks, n_way, train.k_shot, train.k_query)
        dev_tasks = episode_languages(dev_tasks, n_way, train.k_shot, train.k_query, "dev") if dev_tasks else None
    if tagging:  # episodes of K sentences; n_way does not apply
        sampler = SentenceEpisodeSampler(tasks, train.k_shot, train.k_query, seed=train.seed)
        dev_sampler = SentenceEpisodeSampler(dev_tasks, train.k_shot, train.k_query, seed=train.seed + 1) if dev_tasks else None
    else:
        sampler = EpisodeSampler(tasks, n_way, train.k_shot, train.k_query, seed=train.seed)
        dev_sampler = EpisodeSampler(dev_tasks, n_way, train.k_shot, train.k_query, seed=train.seed + 1) if dev_tasks else None
    if train.meta_batch > len(tasks):
        raise ArgumentError(f"--meta_batch {train.meta_batch} exceeds the {len(tasks)} source languages")
    torch.manual_seed(train.seed)  # the LoRA A and head initialisation
    model_class = XMetaForTokenClassification if tagging else XMetaForSequenceClassification
    model = model_class.for_labels(
        labels, encoder=enc.encoder, lora_r=enc.lora_r, lora_alpha=enc.lora_alpha, lora_dropout=enc.lora_dropout,
        max_length=enc.max_length, task=trained_on, source_languages=list(tasks), adapt_steps=cmd.adapt_steps,
        lora_layers=enc.lora_layers, source_attention=enc.source_attention == "on", attention_top_k=enc.attention_top_k,
        meta_embedding=enc.meta_embedding == "on", inner_lr_learned=train.learn_inner_lr, romanize=enc.romanize,
        prototype_head=enc.prototype_head == "on",
    )
    model.config.romanized_languages = [lang for lang, task in tasks.items()
                                        if romanization_needed(enc.romanize, model.tokenizer, lang, task.texts)]
    if model.source_transfer is not None:
        init_source_keys(model, tasks)
    warm_start = None
    if train.init == "joint" and not cmd.resume:  # a resumed run finds the stage's θ and record in its checkpoint
        warm_start = JointWarmStart(steps=train.joint_steps, seed=train.seed).run(model, tasks, dev_tasks)
    processes = Processes.start()
    try:
        trainer = MetaTrainer(model, sampler, train, dev_sampler, processes)
        checkpoint = Path(f"{cmd.out}.checkpoint")
        if cmd.resume:
            trainer.resume(checkpoint if cmd.resume == RESUME_DEFAULT else Path(cmd.resume))
        elif warm_start is not None:
            trainer.warm_start = warm_start
            trainer.checkpoint(checkpoint)  # step 0: the joint stage is never run twice
        history = trainer.train(checkpoint_dir=checkpoint)
    finally:
        processes.close()
    if not processes.is_main:
        return 0
    if model.source_transfer is not None:
        finalize_bank(model, tasks, shots=BANK_SHOTS, steps=cmd.adapt_steps, seed=train.seed)
    if model.prototype_mix is not None:  # θ alone predicts at K=0 (see xmeta.meta.source_prototypes)
        fold_source_prototypes(model, tasks, seed=train.seed)
    best = trainer.best
    model.config.scores = {"dev": {"episode_accuracy": round(best.score, 4), "best_step": best.step}} if best else {}
    if trainer.warm_start is not None:
        model.config.scores["warm_start"] = trainer.warm_start
    model.save_pretrained(cmd.out, overwrite=cmd.overwrite)
    step_seconds = sorted(h.seconds for h in history)[len(history) // 2]
    print(f"saved {cmd.out}  ({len(history)} meta-step{'s' * (len(history) != 1)}, median {step_seconds:.2f} s/step)")
    return 0


def adapt(cmd: AdaptCommand, data: DataArguments) -> int:
    check_language_code(cmd.lang)  # names the flag's value before it is looked up in any file
    if cmd.romanize:
        check_setting(cmd.romanize)
    _refuse_existing(cmd.out, cmd.overwrite)
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

    _refuse_existing(cmd.out, cmd.overwrite)
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

    _refuse_existing(cmd.out, cmd.overwrite)
    config = read_config(Path(cmd.model))
    lang = cmd.lang or (config.adapted_languages[0] if len(config.adapted_languages) == 1 else "")
    if not lang:
        raise ArgumentError("--lang is required (the model has no single adapted language)")
    if not config.source_attention:
        raise ArgumentError(f"{cmd.model}: meta-trained without source attention (--source_attention on)")
    texts = read_texts(cmd.file, _columns(data)) if cmd.file else \
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

