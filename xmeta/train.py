"""One meta-training run, from settings to a saved model folder: what `xmeta meta-train` and the benchmark both run."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from peft import LoraConfig

from .arguments import DEFAULT_TASK, RESUME_DEFAULT, BaseEncoderArguments, DataArguments, MetaTrainCommand, split_list
from .data import EpisodeSampler, load_language_tasks, load_task_card
from .data.files import file_tasks
from .data.romanize import romanization_needed, romanized_copies
from .data.sampler import episode_languages
from .data.tagging_task import SentenceEpisodeSampler, TaggingTask
from .distributed import Processes
from .errors import ArgumentError, DataError
from .fileio import check_output_folder
from .meta.adapt_steps import DEFAULT_ADAPT_STEPS, select_adapt_steps, selection_shots
from .meta.trainer import MetaTrainer, MetaTrainingArguments, meta_training_arguments
from .meta.warm_start import JointWarmStart
from .modeling import XMetaForSequenceClassification, XMetaForTokenClassification
from .modeling import components as registry
from .modeling.components import MetaTrainingRun


def encoder_arguments() -> type:
    """`BaseEncoderArguments` with the model flags of every component registered now."""
    return registry.with_component_flags("EncoderArguments", BaseEncoderArguments, "model", __name__)


EncoderArguments = encoder_arguments()


def meta_train_arguments() -> tuple[type, ...]:
    """`meta-train`'s argument groups, with the flags of every component registered now."""
    return MetaTrainCommand, DataArguments, encoder_arguments(), meta_training_arguments()


def refuse_existing(out: str, overwrite: bool) -> None:
    """Fail before hours of work, not after (a file, an existing folder, a read-only parent): the final write checks again."""
    if out:
        check_output_folder(out, overwrite)


def adapt_steps_setting(value: str, config_fields: dict) -> int | None:
    """``--adapt_steps``: a number of steps, or None for auto (chosen on source dev episodes). 0 needs a
    component that makes a head without steps (the prototype head) on in ``config_fields``."""
    if value == "auto":
        return None
    try:
        steps = int(value)
    except ValueError:
        raise ArgumentError(f"--adapt_steps must be a number of steps or auto (got {value!r})") from None
    stepless = [cls for cls in registry.COMPONENTS if cls.adapts_without_steps]
    zero_ok = any(config_fields.get(cls.flag) for cls in stepless)
    if steps < (0 if zero_ok else 1):
        needs = " or ".join(f"--{cls.flag} on" for cls in stepless)
        raise ArgumentError(f"--adapt_steps must be at least {0 if zero_ok else 1} "
                            f"{'' if zero_ok else f'(0 needs {needs}) '}(got {value})")
    return steps


def meta_train(cmd: MetaTrainCommand, data: DataArguments, enc: EncoderArguments, train: MetaTrainingArguments) -> int:
    enc.validate()
    train.validate()
    refuse_existing(cmd.out, cmd.overwrite)
    components = {**enc.config_fields(), **train.config_fields()}  # the config fields the components' flags set
    adapt_steps = adapt_steps_setting(cmd.adapt_steps, components)
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
    if train.romanized_copies == "on":  # before the episode check: a copy has its language's rows
        tasks |= romanized_copies(tasks)
        dev_tasks = dev_tasks | romanized_copies(dev_tasks) if dev_tasks else None
    n_way = train.n_way or None
    tagging = isinstance(next(iter(tasks.values())), TaggingTask)
    if not tagging:  # a language that cannot make an episode is skipped with a warning (not the whole run)
        tasks = episode_languages(tasks, n_way, train.k_shot, train.k_query)
        dev_tasks = episode_languages(dev_tasks, n_way, train.k_shot, train.k_query, "dev") if dev_tasks else None
    if tagging:  # episodes of K sentences; n_way does not apply
        sampler = SentenceEpisodeSampler(tasks, train.k_shot, train.k_query, seed=train.seed, min_k_shot=train.min_k_shot)
        dev_sampler = SentenceEpisodeSampler(dev_tasks, train.k_shot, train.k_query, seed=train.seed + 1) if dev_tasks else None
    else:
        sampler = EpisodeSampler(tasks, n_way, train.k_shot, train.k_query, seed=train.seed, min_k_shot=train.min_k_shot)
        dev_sampler = EpisodeSampler(dev_tasks, n_way, train.k_shot, train.k_query, seed=train.seed + 1) if dev_tasks else None
    if train.meta_batch > len(tasks):
        raise ArgumentError(f"--meta_batch {train.meta_batch} exceeds the {len(tasks)} source languages")
    torch.manual_seed(train.seed)  # the LoRA A and head initialisation
    model_class = XMetaForTokenClassification if tagging else XMetaForSequenceClassification
    model = model_class.for_labels(
        labels, encoder=enc.encoder, lora=LoraConfig(r=enc.lora_r, lora_alpha=enc.lora_alpha, lora_dropout=enc.lora_dropout),
        max_length=enc.max_length, task=trained_on, source_languages=list(tasks), adapt_steps=DEFAULT_ADAPT_STEPS if adapt_steps is None else adapt_steps,
        lora_layers=enc.lora_layers, romanize=enc.romanize, **components,
    )
    model.config.romanized_languages = [lang for lang, task in tasks.items()
                                        if romanization_needed(enc.romanize, model.tokenizer, lang, task.texts)]
    run = MetaTrainingRun(tasks, train.seed, model.config.adapt_steps or DEFAULT_ADAPT_STEPS, dev_tasks=dev_tasks)
    for component in model.components.values():
        component.before_meta_training(model, run)
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
    for component in model.components.values():
        component.after_meta_training(model, run)
    best, state = trainer.best, model.trainer_state
    state.dev = {"episode_accuracy": round(best.score, 4), "best_step": best.step} if best else {}
    state.log_history = [asdict(log) for log in history]
    if adapt_steps is None and dev_sampler is not None:  # auto: chosen on source dev episodes
        samplers = {train.k_shot: dev_sampler}
        if not tagging:  # one choice per support size (rows per class); a tagging episode is K sentences
            samplers |= {k: EpisodeSampler(dev_tasks, n_way, k, train.k_query, seed=train.seed + 1 + k)
                         for k in selection_shots(train.k_shot) if k != train.k_shot}
        choices = {k: select_adapt_steps(model, s, run.language_means, chunk_size=train.chunk_size)
                   for k, s in sorted(samplers.items())}
        model.config.adapt_steps, accuracy = choices[train.k_shot]
        model.config.adapt_steps_by_shots = {str(k): best for k, (best, _) in choices.items()} if len(choices) > 1 else {}
        state.adapt_steps = {str(s): round(a, 4) for s, a in accuracy.items()}
        state.adapt_steps_by_shots = {str(k): {str(s): round(a, 4) for s, a in acc.items()}
                                      for k, (_, acc) in choices.items()}
    state.warm_start = trainer.warm_start
    model.save_pretrained(cmd.out, overwrite=cmd.overwrite)
    step_seconds = sorted(h.seconds for h in history)[len(history) // 2]
    print(f"saved {cmd.out}  ({len(history)} meta-step{'s' * (len(history) != 1)}, median {step_seconds:.2f} s/step)")
    return 0
