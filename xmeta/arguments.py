"""Command-line arguments as dataclasses (parsed by transformers' `HfArgumentParser`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from .errors import ArgumentError

DEFAULT_TASK = "cldr-emoji"  # the task card when neither --task nor the model names one
RESUME_DEFAULT = "OUT.checkpoint"  # `--resume` with no folder: the run's own checkpoint


def require_number(flag: str, value: float, zero_ok: bool = False) -> None:
    """``--flag`` must be a finite positive number (``zero_ok``: non-negative), else one `ArgumentError` naming it."""
    if not (math.isfinite(value) and (value >= 0 if zero_ok else value > 0)):
        raise ArgumentError(f"--{flag} must be a {'non-negative' if zero_ok else 'positive'} number (got {value})")


def split_list(value: str, flag: str) -> list[str]:
    """``"de,fr, es"`` -> ``["de", "fr", "es"]``; an empty item names the flag."""
    items = [v.strip() for v in value.split(",")] if value else []
    if any(not v for v in items):
        raise ArgumentError(f"{flag}: empty item in {value!r}")
    return items


def int_list(value: str, flag: str) -> list[int]:
    try:
        numbers = [int(v) for v in split_list(value, flag)]
    except ValueError as err:
        raise ArgumentError(f"{flag}: expected comma-separated whole numbers, got {value!r}") from err
    if any(n < 0 for n in numbers):
        raise ArgumentError(f"{flag}: values must not be negative (got {value!r})")
    return numbers


@dataclass
class DataArguments:
    """Where labelled data comes from: a task card, or the user's own files."""

    task: str = field(default="", metadata={"help": "task card name (tasks/*.yaml) or path to a .yaml card "
                                                     "(default: the model's card; meta-train: cldr-emoji)"})
    text_column: str = field(default="text", metadata={"help": "text column in --train/--test files"})
    label_column: str = field(default="label", metadata={"help": "label column in --train/--test files"})
    lang_column: str = field(default="lang", metadata={"help": "language column in --train/--test files"})
    text_pair_column: str = field(default="", metadata={"help": "second text of a pair (e.g. NLI hypothesis) in --train/--test files"})
    tokens_column: str = field(default="tokens", metadata={"help": "word list in tagged JSONL files (a file with it is tagging data)"})
    tag_column: str = field(default="tags", metadata={"help": "tag list in tagged JSONL files"})
    conll_tag_index: int = field(default=-1, metadata={"help": "tag column number in .conll files (-1: last; .conllu: UPOS)"})


@dataclass
class BaseEncoderArguments:
    """The encoder's and its LoRA's flags; `xmeta.train.EncoderArguments` adds each registered component's
    model flags (`xmeta.modeling.components.with_component_flags`)."""

    encoder: str = field(default="embedded", metadata={"help": "'embedded' (multilingual-e5-small), a hub id or a local HF folder"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.0, metadata={"help": "dropout on LoRA's input in training and adaptation"})
    max_length: int = field(default=64, metadata={"help": "longest input in tokens"})
    lora_layers: int = field(default=0, metadata={"help": "LoRA in the top N encoder layers (0: all, the default)"})
    romanize: Literal["auto", "on", "off"] = field(
        default="auto", metadata={"help": "read a language's texts romanised (uroman): auto = where more than 5%% of its "
                                          "tokens are <unk>; decided once per language and kept in the model"})

    def validate(self) -> None:
        if self.lora_layers < 0:
            raise ArgumentError(f"--lora_layers must not be negative (got {self.lora_layers})")
        if self.lora_r < 1:
            raise ArgumentError(f"--lora_r must be at least 1 (got {self.lora_r})")
        if self.lora_alpha < 1:
            raise ArgumentError(f"--lora_alpha must be at least 1 (got {self.lora_alpha})")
        if not 0 <= self.lora_dropout < 1:
            raise ArgumentError(f"--lora_dropout must be in [0, 1) (got {self.lora_dropout})")
        if self.max_length < 8:
            raise ArgumentError(f"--max_length must be at least 8 (got {self.max_length})")


@dataclass
class MetaTrainCommand:
    out: str = field(metadata={"help": "output model folder"})
    sources: str = field(default="", metadata={"help": "comma-separated source languages; empty: the task card's (or every language of --train_file)"})
    train_file: str = field(default="", metadata={"help": "JSONL/CSV/TSV with text,label,lang instead of a task card"})
    adapt_steps: str = field(default="auto", metadata={
        "help": "default SGD steps when adapting to a new language: a number (0: the prototypes alone, with the "
                "prototype head), or auto = the best of 0,1,3,10 on source dev episodes after meta-training (one per "
                "source language), chosen for 1 and k_shot examples per class (10 without a dev split)"})
    overwrite: bool = field(default=False, metadata={"help": "replace --out if it exists"})
    resume: str = field(default="", metadata={"nargs": "?", "const": RESUME_DEFAULT,
                                              "help": "continue from OUT.checkpoint (or the checkpoint folder given)"})


@dataclass
class AdaptCommand:
    model: str = field(metadata={"help": "meta-trained model folder"})
    lang: str = field(metadata={"help": "code of the new language (names its adapter)"})
    out: str = field(metadata={"help": "output model folder (the model plus the new adapter)"})
    train: str = field(default="", metadata={"help": "labelled examples (JSONL/CSV/TSV); else --shots from the task's train split"})
    shots: int = field(default=0, metadata={"help": "K examples per class drawn (by --seed) from --train, or from the "
                                                     "task's train split (0: every row of --train; 4 from the task)"})
    allow_missing_labels: bool = field(default=False, metadata={
        "help": "adapt even if the examples lack some of the model's labels (the adapter then rarely predicts them)"})
    seed: int = field(default=0, metadata={"help": "seed for drawing shots and for adaptation"})
    steps: int = field(default=0, metadata={"help": "adaptation SGD steps (0: the model's default)"})
    lr: float = field(default=0.0, metadata={"help": "adaptation learning rate (0: the meta-learned inner rate)"})
    meta_embedding_adapt: bool = field(default=False, metadata={
        "help": "also adapt a target-language view of the meta-embedding (a unigram model of the language's text)"})
    target_text: str = field(default="", metadata={
        "help": "unlabelled UTF-8 text of the language, one text a line, or 'train' (the texts of --train, else of "
                "the task's train split; labels unused): a prototype head is centred on its mean feature (without "
                "--train/--shots: zero-shot), and --meta_embedding_adapt learns its unigram model from it"})
    romanize: str = field(default="", metadata={
        "help": "auto|on|off for a language the model has not decided yet (default: the model's own setting)"})
    generate: bool = field(default=False, metadata={
        "help": "start from the adapter the model's generator makes for --lang (a model meta-trained with "
                "--adapter_generator on does so anyway); without --train or --shots, that adapter alone (zero-shot)"})
    overwrite: bool = field(default=False, metadata={"help": "replace --out if it exists"})


@dataclass
class EvaluateCommand:
    model: str = field(metadata={"help": "model folder"})
    lang: str = field(default="", metadata={"help": "language to score (adapter and task language)"})
    test: str = field(default="", metadata={"help": "labelled test file; else the task's test split of --lang"})
    shots: str = field(default="", metadata={"help": "few-shot protocol: comma-separated K per class, e.g. 0,4,16"})
    train_file: str = field(default="", metadata={"help": "labelled file the protocol draws its K shots from "
                                                          "(default: the task's train split of --lang)"})
    seeds: int = field(default=3, metadata={"help": "shot seeds per K in the few-shot protocol"})
    steps: int = field(default=0, metadata={"help": "adaptation steps in the protocol (0: the model's default)"})
    romanize: str = field(default="", metadata={
        "help": "auto|on|off for a language the model has not decided yet (default: the model's own setting)"})
    target_text: str = field(default="", metadata={
        "help": "with --shots: unlabelled text of the language that every adaptation reads, K=0 too (a prototype "
                "head's centre, as adapt --target_text): a UTF-8 file, one text a line, or 'train' (the texts of "
                "the split the shots are drawn from, labels unused)"})
    out: str = field(default="", metadata={"help": "folder for results.json (with --shots also results.md and the plot)"})
    overwrite: bool = field(default=False, metadata={"help": "replace --out if it exists"})


@dataclass
class PredictCommand:
    model: str = field(metadata={"help": "model folder"})
    text: list[str] = field(default_factory=list, metadata={"help": "text(s) to classify"})
    file: str = field(default="", metadata={"help": ".txt with one text per line, or the text column of a JSONL/CSV/TSV file"})
    text_column: str = field(default="text", metadata={"help": "text column of a JSONL/CSV/TSV --file"})
    lang: str = field(default="", metadata={"help": "adapter to use (default: the only adapted language, else θ)"})


@dataclass
class PrepareEncoderCommand:
    force: bool = field(default=False, metadata={"help": "convert again even if the cache is complete"})


@dataclass
class ExplainCommand:
    model: str = field(metadata={"help": "model folder meta-trained with --source_attention on or --adapter_generator on"})
    lang: str = field(default="", metadata={"help": "target language (its adapter if adapted, else θ)"})
    file: str = field(default="", metadata={"help": "texts of the language: .txt, one per line, or the text column of "
                                                    "JSONL/CSV/TSV (default: the task's train split)"})
    max_texts: int = field(default=256, metadata={"help": "use at most this many texts"})
    out: str = field(default="", metadata={"help": "folder for explain.json, explain.md and source_attention.png"})
    overwrite: bool = field(default=False, metadata={"help": "replace --out if it exists"})


@dataclass
class CoverageCommand:
    lang: str = field(default="", metadata={"help": "comma-separated languages of the task (default: its sources and targets)"})
    file: str = field(default="", metadata={"help": "texts instead: .txt (one per line, language --lang) or JSONL/CSV/TSV"})
    encoder: str = field(default="embedded", metadata={"help": "whose tokenizer: 'embedded', a hub id or a local HF folder"})


@dataclass
class BenchmarkCommand:
    out: str = field(default="", metadata={"help": "folder for results.json/.md/.png, the cache and the trained models "
                                                  "(default: runs/benchmark, or runs/benchmark-quick with --quick)"})
    task: str = field(default="cldr-emoji", metadata={"help": "task card"})
    encoder: str = field(default="embedded", metadata={"help": "'embedded', a hub id or a local HF folder"})
    targets: str = field(default="", metadata={"help": "held-out targets (default: the card's, minus --extra_targets)"})
    extra_targets: str = field(default="card", metadata={
        "help": "targets reported separately, outside the mean (card: the card's languages.report_separately; empty: none)"})
    sources: str = field(default="", metadata={
        "help": "comma-separated source languages every method trains on (default: the card's languages.sources)"})
    methods: str = field(default="", metadata={"help": "comma-separated methods (default: all but the extra joint-ft-2x and xmeta-2x)"})
    shots: str = field(default="0,1,4,16", metadata={"help": "K examples per class"})
    ablation_shots: str = field(default="0,4", metadata={"help": "K for the ablation rows (xmeta+sa, +me, +lr)"})
    seeds: int = field(default=5, metadata={"help": "shot seeds per K"})
    meta_steps: int = field(default=40, metadata={"help": "meta-steps of every xmeta variant (B1 gets the same example budget)"})
    budgets: str = field(default="1", metadata={"help": "multiples of that budget at which B1/B2 and every xmeta row "
                                                         "are trained and scored at the ablation shots (budget.md/.png)"})
    test_per_class: int = field(default=25, metadata={"help": "test rows per class and target (stratified subsample)"})
    training_seed: int = field(default=0, metadata={
        "help": "seed of every trained model (xmeta's meta-training, B1's and B3's initialisation and batches): "
                "another seed measures how much a row owes to one training run (shots and test rows stay the same)"})
    romanize: Literal["auto", "on", "off"] = field(default="auto", metadata={
        "help": "romanise a target's texts for every method (auto: where over 5%% of its tokens are <unk>); "
                "use another --out per setting"})
    target_text: str = field(default="none", metadata={
        "help": "unlabelled target text for every method that can read it (the meta-embedding rows): "
                "none, or train (the target's training texts, labels unused)"})
    quick: bool = field(default=False, metadata={"help": "smoke run: one target, K in {0,4}, one seed, 2 meta-steps"})
    speed: bool = field(default=False, metadata={"help": "run the speed benchmark instead: a deepcopy reference, then one "
                                                          "speed-up at a time up to xmeta's meta-step (and learn2learn), each in its own process"})
    speed_steps: int = field(default=5, metadata={"help": "timed meta-steps per variant in --speed (after 1 warm-up)"})
    speed_variants: str = field(default="", metadata={
        "help": "comma-separated variants for --speed beside xmeta's default, e.g. xmeta+generate (default: all)"})
    report_only: bool = field(default=False, metadata={"help": "rebuild results.json/.md/.png from the cache; run nothing"})
    update_readme: str = field(default="", metadata={"help": "README to rewrite between its benchmark markers"})

