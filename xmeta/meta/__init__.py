"""Meta-learning: first-order MAML over language episodes."""

from .batch import LabelledBatch
from .fomaml import FirstOrderMAML, InnerLoop, batch_loss

__all__ = ["FirstOrderMAML", "InnerLoop", "LabelledBatch", "MetaTrainer", "MetaTrainingArguments", "batch_loss"]


def __getattr__(name: str) -> object:
    """The trainer on first use, not on import: its settings take the flags of the registered components,
    which import steps from this package (`bank`, `source_prototypes`) while they register."""
    if name in ("MetaTrainer", "MetaTrainingArguments"):
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
