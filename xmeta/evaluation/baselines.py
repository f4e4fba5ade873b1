"""What a careful practitioner would do without xmeta: the benchmark's baselines.

- supervised LoRA fine-tuning (joint training on the sources, the oracle on all target rows),
  with AdamW and model selection on held-out source data (`xmeta.meta.supervised`, re-exported
  here: meta-training's ``--init joint`` warm start runs the same code);
- a frozen-encoder probe: logistic regression on mean-pooled encoder features.

Both run on the same encoder, adapters and batching as xmeta itself, so differences in the
benchmark come from the method, not from the plumbing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..data.collate import encode_texts
from ..meta.supervised import FineTuneResult, score_batch, supervised_finetune  # noqa: F401  (re-exported)
from ..modeling.pooling import mean_pool
from .metrics import classification_scores


class FrozenEncoderProbe:
    """Logistic regression on the frozen encoder's mean-pooled output (features cached per text)."""

    def __init__(self, encoder, tokenizer, prefix: str, max_length: int = 64, batch_size: int = 64) -> None:
        self.encoder = encoder.eval()
        self.tokenizer = tokenizer
        self.prefix = prefix
        self.max_length = max_length
        self.batch_size = batch_size
        self._cache: dict[str, np.ndarray] = {}

    @torch.inference_mode()
    def features(self, texts: Sequence[str]) -> np.ndarray:
        missing = sorted({t for t in texts if t not in self._cache}, key=len)  # similar lengths pad little
        for i in range(0, len(missing), self.batch_size):
            chunk = missing[i : i + self.batch_size]
            inputs = encode_texts(self.tokenizer, chunk, self.prefix, self.max_length)
            hidden = self.encoder(**inputs).last_hidden_state
            for text, vector in zip(chunk, mean_pool(hidden, inputs["attention_mask"]).numpy()):
                self._cache[text] = vector
        return np.stack([self._cache[t] for t in texts])

    @staticmethod
    def fit(x: np.ndarray, y: Sequence[int], c: float, sample_weight: np.ndarray | None = None):
        classifier = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        return classifier.fit(x, np.asarray(y), logisticregression__sample_weight=sample_weight)

    @staticmethod
    def score(classifier, x: np.ndarray, y: Sequence[int]) -> dict[str, float]:
        return classification_scores(list(y), classifier.predict(x).tolist())
