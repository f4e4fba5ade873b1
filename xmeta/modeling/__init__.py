"""Models: the frozen encoder, LoRA adapters per language and the classification head."""

from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification

from ..config import XMetaConfig
from .sequence_classification import META_ADAPTER, XMetaForSequenceClassification
from .token_classification import XMetaForTokenClassification

AutoConfig.register("xmeta", XMetaConfig, exist_ok=True)
AutoModelForSequenceClassification.register(XMetaConfig, XMetaForSequenceClassification, exist_ok=True)
AutoModelForTokenClassification.register(XMetaConfig, XMetaForTokenClassification, exist_ok=True)

__all__ = ["META_ADAPTER", "XMetaConfig", "XMetaForSequenceClassification", "XMetaForTokenClassification"]
