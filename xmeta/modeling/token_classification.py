"""`XMetaForTokenClassification`: NER/POS tagging with the same adapters, bank and meta-learning.

A sentence is a list of words; a word's tag is read at its first sub-token (the others carry
none), the usual convention for BIO tagging with subword encoders. The forward pass returns
logits for the tagged positions only, flattened to ``[n_words, num_labels]`` in sentence order,
so the meta-learning code (`LabelledBatch`, `batch_loss`) treats a word like a classified text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from transformers.modeling_outputs import TokenClassifierOutput

from ..data.collate import encode_words, flat_words
from ..errors import DataError
from .base import XMetaModelBase
from .classifier import PooledClassifier

OUTSIDE = "O"  # the tag of a word outside every entity (BIO); also the tag of words cut by max_length


class TokenTagger(PooledClassifier):
    """Encoder -> dropout -> linear at each word's first sub-token (the encoder plumbing is shared)."""

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                lower_hidden: torch.Tensor | None = None, lower_layers: int = 0,
                char_ngrams: torch.Tensor | None = None, word_starts: torch.Tensor | None = None) -> torch.Tensor:
        if word_starts is None:
            raise ValueError("the tagger needs word_starts: tokenise with model.encode()")
        hidden = self.hidden(input_ids, attention_mask, lower_hidden, lower_layers, char_ngrams)
        return self.classifier(self.dropout(hidden[word_starts]))


class XMetaForTokenClassification(XMetaModelBase):
    """Word tagger (NER, POS) whose fast weights (LoRA + head) are one peft adapter per language."""

    network_class = TokenTagger
    tags_words = True
    passthrough_inputs = ("word_starts",)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        lower_hidden: torch.Tensor | None = None,
        lower_layers: int = 0,
        char_ngrams: torch.Tensor | None = None,
        word_starts: torch.Tensor | None = None,
        **_: object,
    ) -> TokenClassifierOutput:
        """``labels``: one id per tagged word, in ``word_starts`` order; logits are ``[n_words, C]``."""
        logits = self.network_logits(input_ids, attention_mask, lower_hidden, lower_layers, char_ngrams,
                                     word_starts=word_starts)
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return TokenClassifierOutput(loss=loss, logits=logits)

    def tokenize(self, texts: Sequence[Sequence[str]], offsets: bool) -> tuple[dict[str, torch.Tensor], list[str]]:
        c = self.config
        sentences = [_words(s) for s in texts]
        return encode_words(self.tokenizer, sentences, c.encoder_prefix, c.max_length, offsets=offsets), \
            flat_words(sentences, c.encoder_prefix)

    def labelled_examples(self, examples: Sequence, where: str) -> tuple[list[list[str]], list[list[int]]]:
        """(words, tags) tuples or dicts with tokens and tags -> sentences, tag ids per word."""
        sentences, tag_ids = [], []
        known = self.config.label2id
        for i, ex in enumerate(examples):
            words, tags = (ex.get("tokens"), ex.get("tags")) if isinstance(ex, Mapping) else ex
            if words is None or tags is None:
                raise DataError(f"{where}: example {i} needs 'tokens' and 'tags' (got keys {sorted(ex)})")
            words, tags = _words(words), [str(t) for t in tags]
            if len(words) != len(tags):
                raise DataError(f"{where}: example {i} has {len(words)} words but {len(tags)} tags")
            unknown = next((t for t in tags if t not in known), None)
            if unknown is not None:
                raise DataError(f"{where}: example {i}: tag {unknown!r} is not one of the model's tags "
                                f"({', '.join(self.config.labels)})")
            sentences.append(words)
            tag_ids.append([known[t] for t in tags])
        return sentences, tag_ids

    @torch.inference_mode()
    def predict_logits(self, sentences: Sequence[Sequence[str]], lang: str | None = None,
                       batch_size: int = 32, language: str | None = None) -> list[torch.Tensor]:
        """Per sentence, ``[kept words, C]`` logits through ``lang``'s adapter (None: the active one; "meta": θ).
        ``language``: the sentences' language when the adapter is not named by it (θ, a scratch adapter)."""
        out: list[torch.Tensor] = []
        with self.evaluating(lang, language) as language:
            for i in range(0, len(sentences), batch_size):
                inputs = self.encode(sentences[i : i + batch_size], language)
                logits = self(**inputs).logits
                out += list(logits.split(inputs["word_starts"].sum(1).tolist()))
        return out

    def predict(self, sentences: Sequence[Sequence[str]], lang: str | None = None, batch_size: int = 32,
                language: str | None = None) -> list[list[str]]:
        """One tag per word; words past ``max_length`` tokens are tagged ``O`` (the first label without one)."""
        filler = OUTSIDE if OUTSIDE in self.config.label2id else self.config.labels[0]
        tags = []
        for words, logits in zip(sentences, self.predict_logits(sentences, lang, batch_size, language)):
            kept = [self.config.id2label[i] for i in logits.argmax(-1).tolist()]
            tags.append(kept + [filler] * (len(words) - len(kept)))
        return tags

    def evaluate(self, sentences: Sequence[Sequence[str]], tags: Sequence[Sequence[str]], lang: str | None = None,
                 batch_size: int = 32) -> dict[str, float]:
        """Entity-level precision/recall/F1 (seqeval) and token accuracy on tagged sentences."""
        from ..evaluation.metrics import tagging_scores  # seqeval loads only when a tagger is scored

        return tagging_scores([list(map(str, t)) for t in tags], self.predict(sentences, lang, batch_size))


def _words(sentence: Sequence[str]) -> list[str]:
    """A sentence as a list of non-empty words (a bare string is a common mistake)."""
    if isinstance(sentence, str):
        raise DataError(f"a tagging input is a list of words, got the string {sentence[:40]!r}")
    words = [str(w) for w in sentence]
    if not words or any(not w.strip() for w in words):
        raise DataError(f"empty sentence or empty word in {words[:8]!r}")
    return words
