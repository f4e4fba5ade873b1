"""Few-shot adaptation to a new language: the meta-learned inner loop, run longer, on the user's examples."""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import median

import torch

from .data.romanize import romanize_texts
from .errors import ArgumentError, DataError
from .meta.batch import LabelledBatch
from .meta.fomaml import InnerLoop, batch_loss
from .modeling.language_codes import check_language_code
from .modeling.target_view import attach_target_view, plain_text


INITS = ("meta", "generated")  # where an adapter starts: θ, or θ plus the generator's update
CENTRE_TEXTS = 512  # unlabelled texts a language's centre is read from (a seeded sample of more)


@dataclass
class AdaptationResult:
    lang: str
    examples: int
    steps: int
    seconds: float
    support_loss: float


def steps_for_support(by_shots: Mapping[str, int], rows_per_class: float, default: int) -> int:
    """The steps chosen for the largest support size at or below ``rows_per_class`` (the smallest size's
    below all of them); ``default`` without a choice per size."""
    sizes = sorted(int(k) for k in by_shots)
    if not sizes:
        return default
    fitting = [k for k in sizes if k <= rows_per_class]
    return by_shots[str(fitting[-1] if fitting else sizes[0])]


def centre_texts(texts: Sequence[str], seed: int = 0) -> list[str]:
    """The texts a language's centre is read from: all, or `CENTRE_TEXTS` of them drawn by ``seed``."""
    if len(texts) <= CENTRE_TEXTS:
        return list(texts)
    rows = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed))[:CENTRE_TEXTS]
    return [texts[i] for i in sorted(rows.tolist())]


@torch.no_grad()
def text_centre(model, start: dict[str, torch.Tensor], texts: Sequence[str], language: str | None,
                seed: int = 0) -> torch.Tensor:
    """The mean of what the head reads from `centre_texts` under ``start`` (the adapter's start, where its
    support's prototypes are read too): the language's centre for its prototypes (`PrototypeMix.centred_on`)."""
    texts = centre_texts(texts, seed)
    batch = LabelledBatch.build(model, texts, [0] * len(texts), language=language)
    return model.prototype_mix.features(model, start, batch).mean(0)


def adapt_language(
    model,
    examples: Sequence[tuple] | Sequence[Mapping],
    lang: str,
    steps: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    train_meta_embedding: bool | None = None,
    target_text: Sequence[str] = (),
    language: str | None = None,
    allow_missing_labels: bool = False,
    init: str | None = None,
    centre_on_text: bool = True,
) -> AdaptationResult:
    """Copy θ into a new adapter for ``lang`` and fine-tune it on ``examples`` (text, label name; or as the head reads them).

    Uses the same SGD inner loop the model was meta-trained with (same learning rate, or the
    learned per-group rates unless ``lr`` is given; with ``config.prototype_head``, the head starts from
    the examples' class prototypes), for the steps meta-training chose on source dev episodes with as many
    examples per class (``config.adapt_steps_by_shots``, else ``config.adapt_steps``) unless told otherwise:
    θ was learned to be a good start for exactly this procedure.

    ``train_meta_embedding`` (default ``config.meta_embedding_adapt``) gives ``lang`` its own target
    view of the meta-embedding, a unigram model trained on the examples' text plus ``target_text``
    (unlabelled), adapted together with the LoRA fast weights (`xmeta.modeling.target_view`).

    ``target_text`` also gives a prototype head the language's centre (``centre_on_text``; classification):
    the mean feature of those texts, on which the support's prototypes are centred (`text_centre`,
    `PrototypeMix.centred_on`). With no examples, the adapter is then θ with its head the source prototypes
    centred there (zero-shot for the language's own offset).

    ``language`` is the examples' language when the adapter is not named by it (a scratch adapter):
    it decides romanisation (`XMetaModelBase.decide_romanization`, made here if not made before).

    Examples that lack some of the model's labels are refused (the adapter would learn never to
    predict them) unless ``allow_missing_labels``; tagging examples are not checked (few sentences
    rarely hold every tag).

    ``init``: where the adapter starts. ``"generated"`` (the default for a model meta-trained with an
    adapter generator, whose inner loops all started there): θ plus the update the generator makes from
    the language's representation (`xmeta.modeling.generator`); with no examples, that is the adapter
    (zero-shot). ``"meta"``: θ.
    """
    check_language_code(lang)  # before any check of the examples names a language that cannot be one
    generator = model.components.get("adapter_generator")
    init = init or ("generated" if generator is not None else "meta")
    if init not in INITS:
        raise ArgumentError(f"init must be one of {', '.join(INITS)} (got {init!r})")
    if init == "generated" and generator is None:
        raise ArgumentError("--generate (init='generated') needs a model meta-trained with --adapter_generator on")
    texts, labels = model.labelled_examples(examples, f"adapt {lang}")  # the head knows its example shape
    mix = model.prototype_mix
    centring = bool(target_text) and centre_on_text and mix is not None and not model.tags_words
    if not texts and init != "generated" and not centring:
        raise DataError(f"adapt {lang}: no examples given (zero-shot needs --target_text and a prototype head, "
                        "or --generate)")
    given = set(labels) if texts and all(isinstance(label, int) for label in labels) else None  # None: tagging (tag lists)
    missing = [name for i, name in enumerate(model.config.labels) if given is not None and i not in given]
    if missing and not allow_missing_labels:
        raise DataError(f"adapt {lang}: no examples of label(s) {', '.join(missing)}; give examples of every label "
                        "or pass --allow_missing_labels (allow_missing_labels=True)")
    if steps is None:  # the steps meta-training chose for this many rows per class (tagging: its one choice)
        per_class = median(Counter(labels).values()) if given is not None else 0
        steps = steps_for_support(model.config.adapt_steps_by_shots, per_class, model.config.adapt_steps)
    rates = model.inner_rates if lr is None else None
    lr = model.config.inner_lr if lr is None else lr
    if steps < (0 if model.prototype_mix is not None else 1):  # 0 steps: the shrunk prototypes alone
        raise ArgumentError(f"--steps must be at least {0 if model.prototype_mix is not None else 1} (got {steps})")
    if not lr > 0:
        raise ArgumentError(f"--lr must be positive (got {lr})")
    train_meta_embedding = model.config.meta_embedding_adapt if train_meta_embedding is None else train_meta_embedding
    if train_meta_embedding and not texts and not target_text:
        raise ArgumentError("--meta_embedding_adapt needs examples or --target_text to learn the target view from")
    if train_meta_embedding and not model.config.meta_embedding:
        raise ArgumentError("--meta_embedding_adapt needs a model meta-trained with --meta_embedding on")
    if target_text and not train_meta_embedding and not centring:
        raise ArgumentError("--target_text is read by a classification model's prototype head or by "
                            "--meta_embedding_adapt; this model has neither")
    language = language or lang
    if texts or target_text:
        model.decide_romanization(language, list(texts) or list(target_text))
    torch.manual_seed(seed)
    start = time.perf_counter()
    model.start_language(lang)
    if train_meta_embedding:  # the view's pieces are learned from the text as the model reads it
        view_text = [plain_text(t) for t in texts] + list(target_text)
        romanized = language in model.config.romanized_languages
        attach_target_view(model, lang, romanize_texts(view_text) if romanized else view_text)
    model.train()
    representation = generator.representation_for(model, language, texts)[0] if init == "generated" else None
    with model.reading(language):  # e.g. the nearest-source mixer borrows for the examples' language
        begin = {n: p.detach() for n, p in model.fast_parameters().items()}
        if init == "generated" and (centring or not texts):  # inner loops start there and read prototypes there
            begin = generator.start_at(model, begin, representation)
        centre = text_centre(model, begin, target_text, language, seed) if centring else None
        with generator.generating(representation) if generator is not None else contextlib.nullcontext(), \
                mix.centred_on(centre) if mix is not None else contextlib.nullcontext():
            if texts:
                batch = LabelledBatch.build(model, texts, labels, language=language)
                fast = InnerLoop(lr=lr, steps=steps, rates=rates, head_lr_scale=model.config.head_lr_scale,
                                 progress=f"adapt {lang}").run(model, batch)
            else:  # zero-shot: the (generated) start, its head centred on the language's text if given
                steps = 0
                fast = mix.start_from(begin, *mix.text_linear())[0] if centre is not None else begin
        params = model.fast_parameters()
        with torch.no_grad():
            for name, value in fast.items():
                params[name].copy_(value)
            model.eval()
            loss = batch_loss(model, {}, batch)[0].item() if texts else math.nan
    return AdaptationResult(lang, len(texts), steps, time.perf_counter() - start, loss)
