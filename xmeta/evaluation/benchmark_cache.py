"""The benchmark's cache: what names each file (the fingerprint of everything that determines it) and where it lies.

A cell (method, target, K, seed), a trained model and a tuning choice are each stored under the
fingerprint of their settings: the card (less the lines that only group the report), the rows used,
the encoder's weights, the method's resolved flags, the budget, the adapt steps, the shot and test
items (by item id), the seeds and the xmeta version. A change of any of them names another file, so
a stale number is never served; the report reads the same names.
"""

from __future__ import annotations

import re
from dataclasses import asdict, replace
from pathlib import Path

from ..data import LanguageTask, TaskCard, sample_k_shot
from ..data.romanize import gets_romanized_copy
from ..encoders import resolve_encoder
from ..fileio import write_json
from ..meta.adapt_steps import SELECTION_EPISODES, SELECTION_LANGUAGES, selection_round, selection_shots
from ..meta.trainer import MetaTrainingArguments
from ..meta.warm_start import JointWarmStart
from ..train import EncoderArguments
from ..version import __version__
from .benchmark_plan import ALL_ROWS, Method, Plan
from .fingerprint import SHORT, fingerprint, rows_digest, weights_digest

JOINT_LR = 1e-3  # AdamW rate of B1 and the oracle
PROBE_C_GRID = (0.01, 0.1, 1.0)


def write_record(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, obj)


# settings added after models were cached whose value here reproduces those models exactly: left out of the
# fingerprint at that value, so adding an option does not retrain every cached model (any other value counts)
NEUTRAL_SETTINGS = {"source_mixer": "attention", "adapter_generator": "off", "generator_dim": 16, "generator_lr": 0.0,
                    "min_k_shot": 0, "routing_self": "off", "romanized_copies": "off", "prior_within": "sources",
                    "prototype_metric": "euclidean", "prototype_source_rows": 8,
                    "prototype_centre": "support", "metric_selection": "fold"}
REPORT_ONLY_CARD_KEYS = re.compile(r"^\s*report_separately:.*\n", re.M)  # decide how cells are grouped, not their numbers


def card_identity(path: Path) -> str:
    """The card's text as it determines the numbers: lines that only group the report are left out."""
    return REPORT_ONLY_CARD_KEYS.sub("", path.read_text(encoding="utf-8"))


class BenchmarkCache:
    """Fingerprints, cache paths and records of a benchmark run into ``out`` (``out/cache``: numbers;
    ``out/models``: trained models). `Benchmark` loads the data below, then calls `identify`."""

    plan: Plan
    out: Path
    encoder: str
    card: TaskCard
    labels: list[str]
    langs: list[str]  # the targets
    sources: list[str]
    train: dict[str, LanguageTask]  # each target's training rows (where shots come from)
    test: dict[str, LanguageTask]  # each target's test rows (a stratified subset of its test split)
    test_rows: dict[str, list[int]]  # their rows in the full test split
    source_train: dict[str, LanguageTask]
    source_dev: dict[str, LanguageTask]
    copied_sources: int  # set by `identify`

    def identify(self) -> None:
        """What every fingerprint starts from: the card, the encoder's weights, the source rows; and each target's rows."""
        self.identity = {"xmeta": __version__, "card": card_identity(self.card.path), "encoder": self.encoder,
                         "weights": weights_digest(resolve_encoder(self.encoder).name_or_path),
                         "source_rows": rows_digest({**{f"train/{k}": v for k, v in self.source_train.items()},
                                                     **{f"dev/{k}": v for k, v in self.source_dev.items()}}),
                         # named only where --sources differs from the card's (their order picks the baselines' tuning languages)
                         **({"sources": self.sources} if self.sources != list(self.card.sources) else {})}
        self.target_rows = {lang: rows_digest({"train": self.train[lang], "test": self.test[lang]}) for lang in self.langs}
        # sources meta-training copies romanised (`romanized_copies`), each a dev language of its own
        self.copied_sources = sum(map(gets_romanized_copy, self.source_dev.values()))

    def tuning_langs(self) -> list[str]:
        """The source languages whose dev rows tune the baselines' adaptation (pseudo-targets)."""
        return self.sources[:: max(1, len(self.sources) // self.plan.pseudo_targets)][: self.plan.pseudo_targets]

    def n_way(self) -> int:
        return len(self.labels)

    def model_settings(self, method: Method) -> dict:
        """What determines the model (or probe setup) a method's cells are scored with. A warm-start row's
        joint stage and meta-training together get the example passes of B1 at the same budget."""
        p, base = self.plan, {"identity": self.identity, "adapt_steps": self.plan.adapt_steps,
                         "seed": self.plan.training_seed}
        flags = {"flags": method.encoder_flags} if method.encoder_flags else {}  # a baseline's model flags
        if method.kind in ("joint", "joint-ft", "oracle"):
            return {**base, "kind": "joint", "steps": p.joint_steps(self.n_way(), self.joint_multiple(method)),
                    "batch": p.joint_batch, "lr": JOINT_LR, "dev_per_class": p.dev_per_class, **flags}
        if method.kind == "xmeta":
            steps = {"meta_steps": p.meta_steps_at(method.multiple)}
            if method.warm_start:
                steps = dict(zip(("joint_steps", "meta_steps"), p.warm_split(self.n_way(), method.multiple)))
            return {**base, "kind": "xmeta", **steps, "adapt_steps": p.xmeta_adapt_steps,
                    "adapt_selection_shots": selection_shots(p.k_shot),
                    "adapt_selection_episodes": SELECTION_EPISODES, **self.selection_cap(method),
                    "meta_batch": p.meta_batch, "k_shot": p.k_shot,
                    "k_query": p.k_query, "inner_steps": p.inner_steps,
                    "flags": without_neutral({**method.encoder_flags, **method.training_flags}),
                    # every setting, defaults included: a changed default is a different model
                    "resolved": resolved_settings(EncoderArguments(encoder=self.encoder, **method.encoder_flags),
                                                  MetaTrainingArguments(**method.training_flags))}
        if method.kind == "probe":  # nothing in it is seeded: its fingerprint keeps the seed it always had
            return {**base, "seed": 0, "kind": "probe", "per_class": p.probe_per_class, "dev_per_class": p.dev_per_class,
                    "c_grid": PROBE_C_GRID}
        return {**base, "kind": method.kind, **flags}

    def selection_cap(self, method: Method) -> dict:
        """`SELECTION_LANGUAGES`, named only where it binds: a model whose dev languages (romanised copies
        included) all fit in one selection round is the model cached before the cap existed."""
        langs = len(self.source_dev)
        if MetaTrainingArguments(**method.training_flags).romanized_copies == "on":
            langs += self.copied_sources
        return {} if selection_round(langs) == langs else {"adapt_selection_languages": SELECTION_LANGUAGES}

    @staticmethod
    def joint_multiple(method: Method) -> float:
        """The budget of the B1 model a row builds on (the oracle always on budget 1's)."""
        return 1.0 if method.kind == "oracle" else method.multiple

    def example_passes(self, method: Method) -> int:
        """Examples a trained row's model saw in training (a warm start's joint stage included)."""
        s = self.model_settings(method)
        if s["kind"] == "joint":
            return s["steps"] * s["batch"]
        return s.get("joint_steps", 0) * JointWarmStart.batch_size + \
            s["meta_steps"] * self.plan.passes_per_meta_step(self.n_way())

    # ---------------------------------------------------------- fingerprints
    def model_fingerprint(self, method: Method) -> str:
        return fingerprint(self.model_settings(method))

    def tuning_fingerprint(self, method: Method) -> str | None:
        if method.kind not in self.plan.tuning_grid:
            return None
        return fingerprint({"model": self.model_fingerprint(method), "lr": self.plan.tuning_grid[method.kind],
                            "steps": self.plan.tuning_steps, "pseudo_targets": self.tuning_langs(),
                            "k": self.plan.tuning_k})

    def tuning_file(self, method: Method) -> Path:
        return self.out / "cache" / method.label / f"tuning-{self.tuning_fingerprint(method)[:SHORT]}.json"

    def cell_settings(self, method: Method, lang: str, k: int, seed: int) -> dict:
        """What determines one number: the model, its tuning, the shots and test rows it saw."""
        shots = self.shots(lang, k, seed) if k not in (0, ALL_ROWS) else []
        return {"method": method.name, "budget": method.multiple, "model": self.model_fingerprint(method),
                "tuning": self.tuning_fingerprint(method), "lang": lang, "k": k, "seed": seed,
                "target_rows": self.target_rows[lang],
                "shot_items": self.item_ids(lang, shots), "test_items": self.test_items(lang),
                "target_text": self.target_text(method),
                "oracle_epochs": self.plan.oracle_epochs if method.kind == "oracle" else None}

    def target_text(self, method: Method) -> str:
        """The unlabelled target text a method's cells read: the training texts (``train``) or ``none``."""
        return "train" if method.centres_on_text else self.plan.target_text if method.reads_target_text else "none"

    def cell_fingerprint(self, method: Method, lang: str, k: int, seed: int) -> str:
        return fingerprint(self.cell_settings(method, lang, k, seed))

    # ------------------------------------------------------------------ cache
    def cell_stem(self, method: str, lang: str, k: int, seed: int) -> Path:
        """The cell's path without its fingerprint: every version of the cell starts with it."""
        return self.out / "cache" / method / lang / f"k{'all' if k == ALL_ROWS else k}-s{seed}"

    def cache_file(self, method: Method, lang: str, k: int, seed: int) -> Path:
        stem = self.cell_stem(method.label, lang, k, seed)
        return stem.with_name(f"{stem.name}-{self.cell_fingerprint(method, lang, k, seed)[:SHORT]}.json")

    def record(self, method: Method, lang: str, k: int, seed: int, scores: dict, **extra: object) -> None:
        settings = self.cell_settings(method, lang, k, seed)
        write_record(self.cache_file(method, lang, k, seed), {
            "method": method.label, "budget": method.multiple, "lang": lang, "k": k, "seed": seed, **scores, **extra,
            "fingerprint": fingerprint(settings), "model_fingerprint": settings["model"],
            "target_text": settings["target_text"], "shot_items": settings["shot_items"],
            "test_items": settings["test_items"]})

    def cells(self, method: Method, lang: str) -> list[tuple[int, int]]:
        """The (K, seed) runs of a method on a target (K=0 and all-rows runs need one seed)."""
        return [(k, s) for k in self.plan.shots_for(method)
                for s in (self.plan.seeds[:1] if k in (0, ALL_ROWS) else self.plan.seeds)]

    def pending(self, method: Method, lang: str) -> list[tuple[int, int]]:
        return [(k, s) for k, s in self.cells(method, lang) if not self.cache_file(method, lang, k, s).exists()]

    def model_name(self, method: Method) -> str:
        """The trained model (and train record) a method's cells use: B2 and the oracle build on B1."""
        if method.kind in ("joint", "joint-ft", "oracle"):
            b1 = method.name if method.kind == "joint" else method.model_of or "joint"
            return self.joint_name(self.joint_multiple(method), b1)
        return replace(method, name=method.model_of).label if method.model_of else method.label

    def train_record(self, method: Method) -> Path:
        return self.out / "cache" / self.model_name(method) / f"train-{self.model_fingerprint(method)[:SHORT]}.json"

    def model_dir(self, method: Method) -> Path:
        return self.out / "models" / f"{self.model_name(method)}-{self.model_fingerprint(method)[:SHORT]}"

    @staticmethod
    def joint_name(multiple: float, base: str = "joint") -> str:
        """The B1 model (and its train record) a method with this budget builds on (``base``: that B1's row)."""
        return base if multiple == 1 else f"{base}-{multiple:g}x"

    # ------------------------------------------------------------------- shots and test items
    def shots(self, lang: str, k: int, seed: int) -> list[int]:
        return list(range(len(self.train[lang]))) if k == ALL_ROWS else sample_k_shot(self.train[lang], k, seed)

    def item_ids(self, lang: str, rows: list[int]) -> list[str] | list[int]:
        """Shot sets are saved as item (emoji) ids, which name the same rows in any later run."""
        ids = self.train[lang].item_ids
        return rows if ids is None else [ids[i] for i in rows]

    def test_items(self, lang: str) -> list[str] | list[int]:
        ids = self.test[lang].item_ids
        return self.test_rows[lang] if ids is None else ids


def resolved_settings(*arguments) -> dict:
    """Every setting of these argument dataclasses, defaults included (a changed default is a different
    model), less those at their `NEUTRAL_SETTINGS` value."""
    return without_neutral({k: v for a in arguments for k, v in asdict(a).items()})


def without_neutral(settings: dict) -> dict:
    """``settings`` less those at their `NEUTRAL_SETTINGS` value: a row that names such a value (an ablation that
    turns a later default off) is the model cached before that option existed."""
    return {k: v for k, v in settings.items() if NEUTRAL_SETTINGS.get(k, object()) != v}
