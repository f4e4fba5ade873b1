"""Shared fixtures: a tiny random BERT encoder folder (with a real tokenizer) and toy data."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
TOY_WORDS = {
    "animal": ["cat", "dog", "cow", "owl", "bee"],
    "food": ["rice", "bread", "pie", "soup", "tea"],
    "travel": ["car", "ship", "train", "road", "map"],
}


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A sentencepiece-style unigram tokenizer over letters and whole toy words."""
    pieces = [(t, 0.0) for t in SPECIALS]
    words = sorted({w for ws in TOY_WORDS.values() for w in ws} | {"query", "xyz"})
    pieces += [(f"▁{w}", -2.0) for w in words]
    pieces += [(c, -5.0) for c in string.ascii_lowercase + ":|,."]
    pieces += [(f"▁{c}", -5.5) for c in string.ascii_lowercase] + [("▁", -6.0)]
    backend = Tokenizer(models.Unigram(pieces, unk_id=3))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
    )


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT with random weights and an XLM-R-like tokenizer, saved as an HF folder."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=64, pad_token_id=1)
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def toy_rows(lang: str, per_class: int, seed: int) -> list[dict[str, str]]:
    """Texts whose label is readable from their words; ``lang`` shifts the word mix a little."""
    rng = random.Random(f"{lang}-{seed}")
    rows = []
    for label, words in TOY_WORDS.items():
        for _ in range(per_class):
            text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 3)))
            rows.append({"text": f"{text} {lang}", "label": label, "lang": lang})
    rng.shuffle(rows)
    return rows


def toy_batch(model, lang: str, seed: int):
    """A labelled batch of 3 toy rows per class of ``lang``."""
    from xmeta.meta import LabelledBatch

    rows = toy_rows(lang, 3, seed)
    return LabelledBatch.build(model, [r["text"] for r in rows], [model.config.label2id[r["label"]] for r in rows])


def source_bank_model(encoder_dir: Path, sources: list[str], lora_layers: int = 1, **options):
    """A tiny model with source attention over ``sources``, keys initialised and every bank slot holding its
    language's own inner-loop result, as in meta-training."""
    from xmeta import XMetaForSequenceClassification
    from xmeta.meta import InnerLoop

    torch.manual_seed(0)
    model = XMetaForSequenceClassification.for_labels(
        list(TOY_WORDS), encoder=str(encoder_dir), lora_r=4, lora_layers=lora_layers, classifier_dropout=0.0,
        source_languages=sources, source_attention=True, **options)
    model.components["source_attention"].init_keys(model, {lang: [r["text"] for r in toy_rows(lang, 2, 0)] for lang in sources})
    for i, lang in enumerate(sources):
        model.remember_source(lang, InnerLoop(lr=0.5, steps=3).run(model, toy_batch(model, lang, i)))
    return model


@pytest.fixture
def toy_jsonl(tmp_path: Path):
    """Write toy rows of some languages to a JSONL file and return its path."""

    def write(langs: list[str], per_class: int = 8, seed: int = 0, name: str = "toy.jsonl") -> Path:
        path = tmp_path / name
        rows = [row for lang in langs for row in toy_rows(lang, per_class, seed)]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return path

    return write


@pytest.fixture
def tiny_model(tiny_encoder_dir: Path):
    from xmeta import XMetaForSequenceClassification

    torch.manual_seed(0)
    return XMetaForSequenceClassification.for_labels(list(TOY_WORDS), encoder=str(tiny_encoder_dir), lora_r=4, max_length=32)
