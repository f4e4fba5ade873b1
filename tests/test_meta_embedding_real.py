"""Meta-embedding on the embedded multilingual-e5-small with Cherokee text (XLM-R has no Cherokee pieces)."""

from __future__ import annotations

import pytest
import torch

from xmeta import XMetaForSequenceClassification
from xmeta.data import load_task_card

pytestmark = pytest.mark.real

CHEROKEE = ["ᎠᎪᏪᎳᏅᎢ | r | ᎠᎪᏪᎳᏅᎢ", "ᏔᎵᎭ ᏍᏓᏱ ᎤᏃᏴᎩ ᎤᏙᏪᎸ | ! | !!", "ᎠᎵᏱᏛᎢ ᎪᏪᎸ | tm"]


def _model(on: bool) -> XMetaForSequenceClassification:
    torch.manual_seed(0)
    return XMetaForSequenceClassification.for_labels(load_task_card("cldr-emoji").labels, max_length=64, meta_embedding=on)


def test_cherokee_unk_tokens_get_characters_and_logits_start_unchanged():
    on, off = _model(True), _model(False)
    inputs = on.encode(CHEROKEE)
    unk = inputs["input_ids"] == on.tokenizer.unk_token_id
    assert unk.float().mean() > 0.25, "XLM-R should map much of Cherokee to <unk>"
    assert (inputs["char_ngrams"][unk] > 0).any(-1).all()
    assert torch.equal(on.predict_proba(CHEROKEE), off.predict_proba(CHEROKEE))
