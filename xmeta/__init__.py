"""xmeta: cross-lingual meta-transfer with first-order MAML over LoRA adapters."""

from .config import XMetaConfig
from .errors import XMetaError
from .modeling import XMetaForSequenceClassification, XMetaForTokenClassification
from .modeling.export import exported_inputs
from .version import __version__

__all__ = ["XMetaConfig", "XMetaError", "XMetaForSequenceClassification", "XMetaForTokenClassification", "__version__",
           "exported_inputs"]
