"""Models: the frozen encoder, LoRA adapters per language and the classification head."""

from transformers import AutoConfig, AutoModelForSequenceClassification

from ..config import XMetaConfig
from .sequence_classification import META_ADAPTER, XMetaForSequenceClassification

AutoConfig.register("xmeta", XMetaConfig, exist_ok=True)
AutoModelForSequenceClassification.register(XMetaConfig, XMetaForSequenceClassification, exist_ok=True)

__all__ = ["META_ADAPTER", "XMetaConfig", "XMetaForSequenceClassification"]
