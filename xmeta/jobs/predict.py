"""`xmeta predict`: labels and scores (or tags) for texts, from an xmeta model or a plain exported one."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..arguments import PredictCommand
from ..data.readers import Columns, read_texts
from ..errors import ArgumentError
from ..modeling import XMetaForTokenClassification
from ..modeling.auto import load_any
from ..modeling.export import exported_inputs


def predict_rows(cmd: PredictCommand) -> list[dict]:
    """One row per text of ``cmd.text`` and ``cmd.file``: ``{text, label, score}``, or ``{tokens, tags}`` from a tagger
    (a text is its whitespace-separated words)."""
    texts = list(cmd.text) + (read_texts(cmd.file, Columns(text=cmd.text_column)) if cmd.file else [])
    if not texts:
        raise ArgumentError("give --text or --file")
    if is_export_folder(cmd.model):
        return predict_exported(cmd.model, texts)
    model = load_any(cmd.model, lang=cmd.lang or None)  # default: the only adapted language, else θ (as the API)
    lang = model.active_language
    if isinstance(model, XMetaForTokenClassification):
        sentences = [text.split() for text in texts]
        return [{"tokens": words, "tags": tags} for words, tags in zip(sentences, model.predict(sentences, lang=lang))]
    rows = []
    for text, probs in zip(texts, model.predict_proba(texts, lang=lang).tolist()):
        best = max(range(len(probs)), key=probs.__getitem__)
        rows.append({"text": text, "label": model.config.id2label[best], "score": round(probs[best], 4)})
    return rows


def is_export_folder(folder: str) -> bool:
    """An `export_merged` folder: a plain XLM model, not an xmeta one."""
    config = Path(folder) / "config.json"
    try:
        return config.is_file() and json.loads(config.read_text(encoding="utf-8")).get("model_type") == "xlm"
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False  # read_config names the corruption


def predict_exported(folder: str, texts: list[str]) -> list[dict]:
    """`predict_rows` through an exported text classifier, with the input pre-processing its config asks for
    (one text per forward pass: the export is exact on unpadded input)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    if model.config.architectures != [type(model).__name__]:
        raise ArgumentError(f"{folder}: an exported tagger; predict reads exported text classifiers "
                            f"(load it with pipeline('token-classification') on xmeta.exported_inputs)")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    rows = []
    for text, model_text in zip(texts, exported_inputs(folder, texts)):
        with torch.inference_mode():
            probs = model(**tokenizer(model_text, return_tensors="pt")).logits.softmax(-1)[0]
        best = int(probs.argmax())
        rows.append({"text": text, "label": model.config.id2label[best], "score": round(float(probs[best]), 4)})
    return rows
