"""`TrainerState`: how a model folder came to be, in ``trainer_state.json`` next to ``config.json`` (as
transformers' Trainer keeps it). Scores and the meta-training log only: nothing here is needed to rebuild
or run the model, which is the config's job."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .errors import ModelFolderError
from .fileio import write_json

TRAINER_STATE_NAME = "trainer_state.json"


@dataclass
class TrainerState:
    """A model's run records; ``model.trainer_state``."""

    dev: dict = field(default_factory=dict)  # the best θ's dev episode accuracy and its step ({}: no dev episodes)
    adapt_steps: dict[str, float] = field(default_factory=dict)  # dev query accuracy per candidate (--adapt_steps auto)
    adapt_steps_by_shots: dict[str, dict[str, float]] = field(default_factory=dict)  # the same per support size
    prototype_metric: dict[str, float] = field(default_factory=dict)  # held-out source accuracy per shrinkage α
    source_rows: int = 0  # source rows the prototype head's fold read (0: no fold)
    warm_start: dict | None = None  # the joint warm-start stage's record (--init joint): its budget counts
    language_scores: dict[str, dict[str, float]] = field(default_factory=dict)  # test scores per adapted language
    log_history: list[dict] = field(default_factory=list)  # one record per meta-step (loss, accuracy, seconds)

    @classmethod
    def from_legacy_scores(cls, scores: dict) -> TrainerState:
        """A folder written before this file existed kept these records in ``config.json``'s ``scores``:
        the meta-training ones under their names, test scores under language codes."""
        records = {f.name for f in fields(cls)} - {"language_scores", "log_history"}
        return cls(**{k: v for k, v in scores.items() if k in records},
                   language_scores={k: v for k, v in scores.items() if k not in records})

    @classmethod
    def read(cls, folder: Path) -> TrainerState | None:
        """``folder``'s trainer state (None: the folder has none); a corrupt file is one `ModelFolderError`."""
        path = folder / TRAINER_STATE_NAME
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(**raw)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as err:
            raise ModelFolderError(f"{path}: corrupt trainer state ({err})") from err

    def write(self, folder: Path) -> None:
        write_json(folder / TRAINER_STATE_NAME, asdict(self))
