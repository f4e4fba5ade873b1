"""Which encoder to use and how: resolve a name to a checkpoint, its LoRA targets and its prefix.

Everything downstream (LoRA, meta-embedding, data collators) only needs an ``EncoderSettings``;
the embedded default keeps xmeta usable offline with no hub access.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import transformers
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from xmeta.encoders.embedded import embedded_encoder_path
from xmeta.errors import EncoderError

EMBEDDED = "embedded"
E5_PREFIX = "query: "

# Attention projections per model_type: LoRA goes on query/key/value, as in the LoRA paper.
_BERT_QKV = ["query", "key", "value"]
_T5_QKV = ["q", "k", "v"]
LORA_TARGETS: dict[str, list[str]] = {
    "bert": _BERT_QKV,
    "roberta": _BERT_QKV,
    "xlm-roberta": _BERT_QKV,
    "xlm-roberta-xl": _BERT_QKV,
    "camembert": _BERT_QKV,
    "electra": _BERT_QKV,
    "ernie": _BERT_QKV,
    "rembert": _BERT_QKV,
    "data2vec-text": _BERT_QKV,
    "mpnet": _T5_QKV,
    "distilbert": ["q_lin", "k_lin", "v_lin"],
    "deberta-v2": ["query_proj", "key_proj", "value_proj"],
    "t5": _T5_QKV,
    "mt5": _T5_QKV,
    "umt5": _T5_QKV,
}
# Encoder-decoder families: AutoModel would build the decoder too, so load the encoder half.
_ENCODER_ONLY_CLASS = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


@dataclass
class EncoderSettings:
    """A resolved encoder: where to load it from and how xmeta should feed and adapt it."""

    name_or_path: str
    prefix: str
    lora_target_modules: list[str]
    max_length: int = 128


def lora_target_modules(model_type: str) -> list[str]:
    """The attention projection module names LoRA should wrap for ``model_type``."""
    if model_type not in LORA_TARGETS:
        known = ", ".join(sorted(LORA_TARGETS))
        raise EncoderError(f"unsupported encoder model_type {model_type!r} (supported: {known})")
    return list(LORA_TARGETS[model_type])


def resolve_encoder(name: str = EMBEDDED) -> EncoderSettings:
    """Resolve ``"embedded"``, a local folder or a hub id to ``EncoderSettings``.

    Only the config is read (no weights), so this is cheap; a hub id is contacted only when the
    user names one that is not in the local HF cache.
    """
    if name == EMBEDDED:
        return EncoderSettings(str(embedded_encoder_path()), E5_PREFIX, lora_target_modules("bert"))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise EncoderError(f"encoder folder {path} has no config.json")
        source = str(path)
    elif _HUB_ID.fullmatch(name) and ".." not in name:
        source = name
    else:
        raise EncoderError(f"encoder path not found: {name}")
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise EncoderError(f"cannot load encoder config from {source!r}: {_first_line(exc)}") from exc
    targets = lora_target_modules(config.model_type)
    prefix = E5_PREFIX if "e5" in Path(name).name.lower() else ""  # the model's own name, not its parent folders
    return EncoderSettings(source, prefix, targets)


def load_encoder(settings: EncoderSettings) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the encoder model (encoder half for T5-like models) and its tokenizer."""
    source = settings.name_or_path
    try:
        config = AutoConfig.from_pretrained(source)
        encoder_class = _ENCODER_ONLY_CLASS.get(config.model_type)
        if encoder_class is None:
            model = AutoModel.from_pretrained(source)
        else:
            model = getattr(transformers, encoder_class).from_pretrained(source)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise EncoderError(f"cannot load encoder from {source!r}: {_first_line(exc)}") from exc
    return model, tokenizer


def _first_line(exc: BaseException) -> str:
    """Transformers errors span several lines; the CLI prints one."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
