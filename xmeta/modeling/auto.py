"""Which xmeta class a model folder holds (its config's ``architectures``), for code that loads any folder."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelFolderError
from .base import XMetaModelBase
from .sequence_classification import XMetaForSequenceClassification
from .serialization import read_config
from .token_classification import XMetaForTokenClassification

MODEL_CLASSES: dict[str, type[XMetaModelBase]] = {
    cls.__name__: cls for cls in (XMetaForSequenceClassification, XMetaForTokenClassification)
}


def model_class(model_dir: str | Path) -> type[XMetaModelBase]:
    """The class that wrote ``model_dir`` (folders without ``architectures`` are sequence classifiers)."""
    config = read_config(Path(model_dir))
    name = (config.architectures or [XMetaForSequenceClassification.__name__])[0]
    if name not in MODEL_CLASSES:
        raise ModelFolderError(f"{model_dir}: unknown xmeta architecture {name!r} (known: {', '.join(MODEL_CLASSES)})")
    return MODEL_CLASSES[name]


def load_any(model_dir: str | Path, lang: str | None = None) -> XMetaModelBase:
    """Load a model folder with the class that wrote it, ``lang``'s adapter active (default: `default_language`)."""
    return model_class(model_dir).from_pretrained(model_dir, lang=lang)
