"""`XMetaForSequenceClassification`: frozen encoder + peft LoRA per language + mean-pooled head.

The shared machinery (adapters per language, components, encoding, save/load, export) lives in
`xmeta.modeling.base` and `xmeta.modeling.adapters`; the names below stay importable from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from transformers.modeling_outputs import SequenceClassifierOutput

from ..data.collate import encode_texts, flat_texts
from ..data.texts import checked_label, checked_text, text_batch
from ..errors import DataError
from .adapters import is_adapter_tensor
from .base import XMetaModelBase, XMetaPreTrainedModel
from .classifier import PooledClassifier
from .language_codes import META_ADAPTER, check_language_code

__all__ = ["META_ADAPTER", "XMetaForSequenceClassification", "XMetaPreTrainedModel", "check_language_code",
           "is_adapter_tensor"]


class XMetaForSequenceClassification(XMetaModelBase):
    """Sentence (or sentence-pair) classifier whose fast weights (LoRA + head) are one peft adapter per language.

    Adapter ``meta`` holds the meta-learned initialisation θ; ``adapt`` copies it into a new
    adapter named by the language code and fine-tunes that copy on the user's few examples.
    A text is a string or a ``(text, text_pair)`` tuple (e.g. NLI premise and hypothesis).
    """

    network_class = PooledClassifier

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        lower_hidden: torch.Tensor | None = None,
        lower_layers: int = 0,
        char_ngrams: torch.Tensor | None = None,
        **_: object,
    ) -> SequenceClassifierOutput:
        logits = self.network_logits(input_ids, attention_mask, lower_hidden, lower_layers, char_ngrams)
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def tokenize(self, texts: Sequence, offsets: bool) -> tuple[dict[str, torch.Tensor], list[str]]:
        c = self.config
        inputs = encode_texts(self.tokenizer, list(texts), c.encoder_prefix, c.max_length, offsets=offsets)
        return inputs, flat_texts(texts, c.encoder_prefix)

    def labelled_examples(self, examples: Sequence, where: str) -> tuple[list, list[int]]:
        """(text, label), (text, text_pair, label) or dicts with text[, text_pair] and label -> inputs, label ids.
        Texts and labels pass the readers' check (`xmeta.data.texts`): None or blank is refused, naming the example."""
        texts, labels = [], []
        for i, ex in enumerate(examples):
            at = f"{where}: example {i}"
            if isinstance(ex, Mapping):
                if "text" not in ex or "label" not in ex:
                    raise DataError(f"{at}: needs 'text' and 'label' (got keys {sorted(ex)})")
                parts, label = [ex["text"]] + ([ex["text_pair"]] if ex.get("text_pair") is not None else []), ex["label"]
            elif isinstance(ex, (tuple, list)) and len(ex) in (2, 3):
                *parts, label = ex
            else:
                raise DataError(f"{at}: expected (text, label) or (text, text_pair, label), got {str(ex)[:40]!r}")
            parts = [checked_text(part, at) for part in parts]
            texts.append(parts[0] if len(parts) == 1 else tuple(parts))
            labels.append(checked_label(label, at))
        unknown = sorted(set(labels) - set(self.config.label2id))
        if unknown:
            raise DataError(f"{where}: label {unknown[0]!r} is not one of the model's labels ({', '.join(self.config.labels)})")
        return texts, [self.config.label2id[label] for label in labels]

    @torch.inference_mode()
    def predict_proba(self, texts: str | Sequence, lang: str | None = None, batch_size: int = 64,
                      language: str | None = None) -> torch.Tensor:
        """Class probabilities ``[len(texts), C]`` through ``lang``'s adapter (None: the active one, which
        `from_pretrained` sets to the only adapted language; "meta": θ). A single string is one text: ``[C]``.
        ``language``: the texts' language when the adapter is not named by it (θ, a scratch adapter)."""
        rows, single = text_batch(texts)
        with self.evaluating(lang, language) as language:
            chunks = [
                self(**self.encode(rows[i : i + batch_size], language)).logits.softmax(-1)
                for i in range(0, len(rows), batch_size)
            ]
        probs = torch.cat(chunks) if chunks else torch.empty(0, self.config.num_labels)
        return probs[0] if single else probs

    def predict(self, texts: str | Sequence, lang: str | None = None, batch_size: int = 64,
                language: str | None = None) -> list[str] | str:
        """Label names for ``texts``; a single string is one text and gets one label (not a list)."""
        ids = self.predict_proba(texts, lang=lang, batch_size=batch_size, language=language).argmax(-1).tolist()
        return self.config.id2label[ids] if isinstance(ids, int) else [self.config.id2label[i] for i in ids]
