"""Models: the frozen encoder, LoRA adapters per language and the classification head."""

from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedTokenizerFast,
)

from ..config import XMetaConfig
from ..errors import ModelFolderError
from .sequence_classification import META_ADAPTER, XMetaForSequenceClassification
from .token_classification import XMetaForTokenClassification

AutoConfig.register("xmeta", XMetaConfig, exist_ok=True)
AutoModelForSequenceClassification.register(XMetaConfig, XMetaForSequenceClassification, exist_ok=True)
AutoModelForTokenClassification.register(XMetaConfig, XMetaForTokenClassification, exist_ok=True)


class XMetaFolderTokenizer(PreTrainedTokenizerFast):
    """What `AutoTokenizer` finds for an xmeta folder (``pipeline(model=<xmeta folder>)``): a pointer to
    ``export_merged``, whose folder holds the prefixed tokenizer a pipeline needs (instead of transformers'
    misleading "need sentencepiece or tiktoken")."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):  # noqa: ANN001, ANN206
        raise ModelFolderError(
            f"{pretrained_model_name_or_path}: an xmeta model folder holds adapters, not a pipeline model; "
            "write one with model.export_merged(DIR) and use pipeline(model=DIR)")


AutoTokenizer.register(XMetaConfig, tokenizer_class=XMetaFolderTokenizer, exist_ok=True)

__all__ = ["META_ADAPTER", "XMetaConfig", "XMetaForSequenceClassification", "XMetaForTokenClassification"]
