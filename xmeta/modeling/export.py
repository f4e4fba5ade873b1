"""`export_merged`: an adapted xmeta classifier as a plain transformers model.

transformers' BERT/RoBERTa classification heads read the [CLS] token through a tanh pooler, so
they cannot express xmeta's mean-pooled linear head. XLM's architecture can: its layers are the
same post-LayerNorm blocks (attention, GELU FFN of 4x width), and its ``SequenceSummary`` with
``summary_type="mean"`` is a mean over positions followed by a linear layer. The merged encoder is
therefore rewritten as ``XLMForSequenceClassification``: ``AutoModelForSequenceClassification`` and
``pipeline("text-classification")`` load it with no xmeta installed, and its logits equal xmeta's
for unpadded inputs (XLM averages over padding positions too, so pad-free batches, e.g. the
pipeline's default batch size 1, are exact). The encoder's input prefix ("query: ") is baked into
the exported tokenizer's normaliser, so plain users get it without knowing about it.

A tagger (`XMetaForTokenClassification`) becomes ``XLMForTokenClassification``: the same merged
encoder with its linear head on every token, for ``AutoModelForTokenClassification`` and
``pipeline("token-classification")``. xmeta reads a word's tag at its first sub-token; the plain
model scores every token, and at those positions its logits equal xmeta's.

With the meta-embedding on, every vocabulary id's meta-embedding (subword vector mixed with the
character n-gram view of its piece string) is precomputed into the exported embedding matrix,
which is exact for every known piece. ``<unk>`` tokens cannot be precomputed: in xmeta their
character view comes from the text they replaced, which a fixed matrix row cannot see. The
exported ``<unk>`` row is the pretrained ``<unk>`` vector (what the layer gives a token without
characters), so exported logits equal xmeta's only for texts without ``<unk>`` tokens; texts
with them lose the character view there and can score differently.

A language adapted with its own target view (`xmeta.modeling.target_view`) is exported the same
way: xmeta segments a known piece with the language's unigram model from the piece's own
characters, so each row adds that view's correction exactly; ``<unk>`` loses it like the rest.

A language xmeta reads romanised (`xmeta.data.romanize`) cannot be romanised by a tokenizer
(uroman is Python rules, not a normaliser), so the export says so: ``"romanize": true`` in its
config.json and a README.md note with the one line of pre-processing plain users must run.
`exported_inputs` applies it (``xmeta predict`` on an export folder does).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from peft.tuners.lora import LoraLayer
from tokenizers import normalizers
from transformers import PreTrainedTokenizerFast, XLMConfig, XLMForSequenceClassification, XLMForTokenClassification

from ..data.romanize import romanize_texts
from ..errors import ArgumentError, ModelFolderError
from ..fileio import atomic_directory
from .language_codes import META_ADAPTER

if TYPE_CHECKING:
    from .base import XMetaModelBase

EXPORTABLE = ("bert", "xlm-roberta", "roberta", "camembert")
_LAYER_MAP = {
    "attention.self.query": "attentions.{i}.q_lin",
    "attention.self.key": "attentions.{i}.k_lin",
    "attention.self.value": "attentions.{i}.v_lin",
    "attention.output.dense": "attentions.{i}.out_lin",
    "attention.output.LayerNorm": "layer_norm1.{i}",
    "intermediate.dense": "ffns.{i}.lin1",
    "output.dense": "ffns.{i}.lin2",
    "output.LayerNorm": "layer_norm2.{i}",
}


def merged_encoder_state(model: XMetaModelBase, adapter: str) -> dict[str, torch.Tensor]:
    """The encoder's weights with ``adapter``'s LoRA deltas added, under the plain encoder's names."""
    encoder = model.peft.base_model.model.encoder
    state: dict[str, torch.Tensor] = {}
    for name, module in encoder.named_modules():
        if isinstance(module, LoraLayer):
            weight = module.get_base_layer().weight.detach()
            if adapter in module.lora_A:
                weight = weight + module.get_delta_weight(adapter).detach()
            state[f"{name}.weight"] = weight
    for name, tensor in encoder.state_dict().items():
        if "lora_" in name:
            continue
        plain = name.replace(".base_layer.", ".")
        state.setdefault(plain, tensor.detach())
    return state


def _positions(state: dict[str, torch.Tensor], model_type: str, pad_id: int) -> torch.Tensor:
    """XLM counts positions from 0; RoBERTa-style models from ``pad_id + 1``. Token type 0 is folded in."""
    table = state["embeddings.position_embeddings.weight"]
    if model_type != "bert":
        table = table[pad_id + 1 :]
    return table + state["embeddings.token_type_embeddings.weight"][0]


def to_xlm_state(state: dict[str, torch.Tensor], model_type: str, pad_id: int, layers: int) -> dict[str, torch.Tensor]:
    out = {
        "transformer.embeddings.weight": state["embeddings.word_embeddings.weight"],
        "transformer.position_embeddings.weight": _positions(state, model_type, pad_id),
        "transformer.layer_norm_emb.weight": state["embeddings.LayerNorm.weight"],
        "transformer.layer_norm_emb.bias": state["embeddings.LayerNorm.bias"],
    }
    for i in range(layers):
        for src, dst in _LAYER_MAP.items():
            for kind in ("weight", "bias"):
                out[f"transformer.{dst.format(i=i)}.{kind}"] = state[f"encoder.layer.{i}.{src}.{kind}"]
    return out


def _prefixed_tokenizer(model: XMetaModelBase) -> PreTrainedTokenizerFast:
    """A copy of the tokenizer whose normaliser starts by prepending the encoder prefix.

    Prepending before normalisation makes ``tokenize(text)`` the same as xmeta's
    ``tokenize(prefix + text)``, whatever the tokenizer's pre-tokeniser does with the prefix.
    """
    tok = model.tokenizer
    backend = type(tok.backend_tokenizer).from_str(tok.backend_tokenizer.to_str())
    prefix = model.config.encoder_prefix
    if prefix:
        steps = [normalizers.Prepend(prefix)] + ([backend.normalizer] if backend.normalizer is not None else [])
        backend.normalizer = normalizers.Sequence(steps)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=tok.bos_token,
        eos_token=tok.eos_token,
        unk_token=tok.unk_token,
        sep_token=tok.sep_token,
        cls_token=tok.cls_token,
        pad_token=tok.pad_token,
        mask_token=tok.mask_token,
        model_input_names=["input_ids", "attention_mask"],
        model_max_length=model.config.max_length,
    )


def export_merged(
    model: XMetaModelBase, directory: Path, lang: str | None = None, overwrite: bool = True
) -> Path:
    """Write ``lang``'s adapted classifier (default: the active adapter) as ``XLMForSequenceClassification``
    (a tagger: ``XLMForTokenClassification``)."""
    tagger = model.tags_words

    adapter = lang or model.active_language or META_ADAPTER
    if adapter not in model.peft.peft_config:
        raise ArgumentError(f"export: language {adapter!r} has no adapter (adapted: {', '.join(model.languages()) or 'none'})")
    enc_config = model.peft.base_model.model.encoder.config
    if enc_config.model_type not in EXPORTABLE:
        raise ArgumentError(f"export: encoder type {enc_config.model_type!r} is not exportable (supported: {', '.join(EXPORTABLE)})")
    if enc_config.intermediate_size != 4 * enc_config.hidden_size:
        raise ArgumentError("export: the encoder's FFN is not 4x its width, which XLM's layout requires")
    pad_id = enc_config.pad_token_id if enc_config.pad_token_id is not None else 1
    state = to_xlm_state(merged_encoder_state(model, adapter), enc_config.model_type, pad_id, enc_config.num_hidden_layers)
    for component in model.components.values():  # e.g. the meta-embedding: exact for known pieces (module docstring)
        component.export(model, adapter, state)
    head = model.peft.base_model.model.classifier.modules_to_save[adapter]
    head_name = "classifier" if tagger else "sequence_summary.summary"
    state[f"{head_name}.weight"] = head.weight.detach()
    state[f"{head_name}.bias"] = head.bias.detach()
    labels = model.config.labels
    xlm_config = XLMConfig(
        vocab_size=enc_config.vocab_size,
        emb_dim=enc_config.hidden_size,
        n_layers=enc_config.num_hidden_layers,
        n_heads=enc_config.num_attention_heads,
        max_position_embeddings=state["transformer.position_embeddings.weight"].shape[0],
        layer_norm_eps=enc_config.layer_norm_eps,
        gelu_activation=True,
        sinusoidal_embeddings=False,
        causal=False,
        asm=False,
        n_langs=1,
        use_lang_emb=False,
        pad_index=pad_id,
        pad_token_id=pad_id,
        dropout=0.0,
        attention_dropout=0.0,
        summary_type="mean",
        summary_use_proj=True,
        summary_proj_to_labels=True,
        summary_activation=None,
        summary_first_dropout=0.0,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        romanize=adapter in model.config.romanized_languages,
    )
    plain = (XLMForTokenClassification if tagger else XLMForSequenceClassification)(xlm_config)
    plain.load_state_dict({k: v.contiguous().clone() for k, v in state.items()}, strict=True)
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        plain.save_pretrained(tmp)
        _prefixed_tokenizer(model).save_pretrained(tmp)
        (tmp / "README.md").write_text(export_note(adapter, xlm_config.romanize, tagger), encoding="utf-8")
    return directory


def export_note(adapter: str, romanize: bool, tagger: bool) -> str:
    """The export folder's README: how to load it and which input pre-processing it expects."""
    auto = "AutoModelForTokenClassification" if tagger else "AutoModelForSequenceClassification"
    romanized = (
        "## Input pre-processing: romanise first\n\n"
        f"xmeta read `{adapter}` romanised (config.json: `\"romanize\": true`): its script is mostly `<unk>` to this "
        "tokenizer. Romanise every text (each word, for a tagger) with uroman before tokenizing, exactly as xmeta did:\n\n"
        "```python\nimport uroman\ntext = uroman.Uroman().romanize_string(text)\n```\n\n"
        "or `xmeta.exported_inputs(folder, texts)`, which reads the flag and does it.\n"
        if romanize else
        "## Input pre-processing\n\nNone (config.json: `\"romanize\": false`): pass texts as they are.\n")
    return (f"# xmeta export: `{adapter}`\n\nA plain transformers model (LoRA merged); load it with `{auto}` and "
            f"`AutoTokenizer` (the encoder's input prefix is already in the tokenizer).\n\n{romanized}")


def exported_inputs(directory: str | Path, texts: Sequence) -> list:
    """``texts`` as an exported model expects them: romanised when its config.json says ``"romanize": true``."""
    config = Path(directory) / "config.json"
    if not config.is_file():
        raise ModelFolderError(f"{directory}: not an exported model folder (no config.json)")
    try:
        romanize = json.loads(config.read_text(encoding="utf-8")).get("romanize", False)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFolderError(f"{config}: corrupt config ({err})") from err
    return romanize_texts(texts) if romanize else list(texts)
