"""Meta-learning: first-order MAML over language episodes."""

from .batch import LabelledBatch
from .fomaml import FirstOrderMAML, InnerLoop, batch_loss
from .trainer import MetaTrainer, MetaTrainingArguments

__all__ = ["FirstOrderMAML", "InnerLoop", "LabelledBatch", "MetaTrainer", "MetaTrainingArguments", "batch_loss"]
