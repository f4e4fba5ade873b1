"""`Component`: the protocol an optional part of an xmeta model follows (peft tuners style).

Source attention, the meta-embedding, learned inner rates and the prototype head each declare
their `meta-train` flags (`ComponentFlags`) and the config fields those set, switch on from the
config, build their modules, and then answer the same calls from the model, the trainer,
checkpoints, model folders and export. Every hook has a do-nothing default, so a component
implements only what it takes part in, and the parser, the run, the model and the trainer loop
over the registered components without naming any (`xmeta.modeling.components` registers them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:
    from ...config import XMetaConfig
    from ...meta.source_prior import LanguageMeans
    from ..base import XMetaModelBase


class ComponentFlags:
    """A component's command-line flags: subclass it as a dataclass whose fields carry their help (and
    Literal choices). `xmeta.modeling.components.with_component_flags` adds the fields to `meta-train`'s
    argument groups, so the composite instance is ``self`` here and in `config_fields`."""

    def validate(self) -> None:
        """Raise an `ArgumentError` naming the flag at fault."""

    def config_fields(self) -> dict[str, Any]:
        """The config fields the flags set (``--source_attention on`` → ``{"source_attention": True}``)."""
        return {}


@dataclass
class MetaTrainingRun:
    """What a component's meta-training hooks see of the run (`xmeta.train.meta_train`)."""

    tasks: Mapping[str, Any]  # the source languages' training tasks (LanguageTask or TaggingTask)
    seed: int
    adapt_steps: int  # inner steps of a full adaptation: the model's, or the default where it has none (0, auto)
    # each source language's class means and centre, where a part read them (the adapt-step selection's priors)
    language_means: dict[str, LanguageMeans] | None = None
    dev_tasks: Mapping[str, Any] | None = None  # the source languages' dev tasks, where the run has them


class Component:
    """One optional part of a model; its modules hold the tensors, this object the protocol."""

    name: ClassVar[str]  # the registry key
    flag: ClassVar[str]  # the config field that switches the part on
    # the model attribute its module is reachable by (``model.<attribute>``, None when the part is off);
    # the module's tensors are saved with θ under this prefix. None: its module lives elsewhere
    attribute: ClassVar[str | None] = None
    in_network: ClassVar[bool] = False  # built into the network before peft wraps it (else after)
    reads_offsets: ClassVar[bool] = False  # `add_inputs` needs the tokenizer's offset mapping
    checkpoint_prefix: ClassVar[str] = ""  # key prefix of `checkpoint_state` in a training checkpoint ("": none)
    optional_state_keys: ClassVar[tuple[str, ...]] = ()  # θ tensors older model folders may lack
    # its `meta-train` flags that shape the model (parsed with the encoder's, `EncoderArguments`) and those
    # that only steer meta-training (parsed with the trainer's, `MetaTrainingArguments`)
    model_flags: ClassVar[type[ComponentFlags] | None] = None
    training_flags: ClassVar[type[ComponentFlags] | None] = None
    adapts_without_steps: ClassVar[bool] = False  # when on, 0 adaptation steps still make a new language's head

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module  # what holds the part's tensors

    # ---------------------------------------------------------------- building
    @classmethod
    def enabled(cls, config: XMetaConfig) -> bool:
        """Whether a model with ``config`` has this part."""
        return bool(getattr(config, cls.flag, False))

    @classmethod
    def build(cls, model: XMetaModelBase, network: torch.nn.Module) -> Component:
        """Create the part's modules and attach them to ``model`` (or ``network``, when `in_network`)."""
        raise NotImplementedError

    @classmethod
    def check_training(cls, config: XMetaConfig, args: Any) -> None:
        """Raise an `ArgumentError` when meta-training flags ``args`` disagree with how the model was built."""

    # ------------------------------------------------------------- training
    def before_meta_training(self, model: XMetaModelBase, run: MetaTrainingRun) -> None:
        """Once, on the fresh model before any training step (and before a joint warm start)."""

    def after_meta_training(self, model: XMetaModelBase, run: MetaTrainingRun) -> None:
        """Once, on the main process, on the final θ before the adapt steps are chosen and the model saved."""

    def param_groups(self, args: Any) -> list[dict]:
        """AdamW groups of the part's slow weights that take their own rate from ``args``
        (``{"params": [...], "lr": ...}``); any trainable tensor in none trains with θ at the outer rate."""
        return []

    @contextlib.contextmanager
    def meta_step(self) -> Iterator[None]:
        """Around the episodes of one outer step."""
        yield

    def synchronise(self, sum_: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Make non-parameter state agree across processes after a distributed outer step."""

    def start_inner_loop(self, model: XMetaModelBase, fast: dict[str, torch.Tensor],
                         support: Any) -> tuple[dict[str, torch.Tensor], Any]:
        """The fast weights an inner loop on ``support`` starts from, and what `start_gradients` will need
        (None: the start is unchanged)."""
        return fast, None

    def replaces(self, name: str) -> bool:
        """Whether `start_inner_loop` replaces fast tensor ``name`` outright (θ's value is never read, so it
        takes no meta-gradient)."""
        return False

    def start_gradients(self, query_grads: dict[str, torch.Tensor],
                        record: Any) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
        """First-order gradients of the part's slow weights from the query gradients at φ_T and the
        ``record`` of `start_inner_loop` (a meta-gradient autograd cannot see: the start is a constant)."""
        return []

    @contextlib.contextmanager
    def episode(self, lang: str) -> Iterator[None]:
        """Around an inner loop and query pass on ``lang``."""
        yield

    @contextlib.contextmanager
    def reading(self, language: str | None) -> Iterator[None]:
        """Around forward passes on texts of ``language`` (their language, whatever the adapter's name; None:
        unknown); an episode of ``lang`` reads ``lang`` too."""
        yield

    def outer_step(self, step: int, steps: int) -> None:
        """Outer step ``step`` (from 1) of ``steps`` begins (e.g. to anneal an auxiliary loss)."""

    @contextlib.contextmanager
    def query_pass(self, model: XMetaModelBase) -> Iterator[list[tuple[torch.nn.Parameter, torch.Tensor]]]:
        """Around an episode's query forward (inside `episode`): yields a list the part fills, when the pass
        ends, with the gradients of its own auxiliary loss on that pass (before the query loss's backward)."""
        yield []

    def remember(self, model: XMetaModelBase, lang: str, weights: dict[str, torch.Tensor],
                 momentum: float | None) -> None:
        """See an inner-loop result (fast weights) of source language ``lang``."""

    # ------------------------------------------------ adapters and forward passes
    def is_adapter_tensor(self, name: str, adapter: str) -> bool:
        """Whether a peft parameter name is the part's tensor that belongs to ``adapter`` (a fast weight of it)."""
        return False

    def is_shared_tensor(self, name: str) -> bool:
        """Whether a peft parameter name is the part's slow weight inside the network (trains with θ)."""
        return False

    def use_language(self, adapter: str) -> None:
        """``adapter`` became the active one."""

    def forget_language(self, lang: str) -> None:
        """``lang``'s adapter is being replaced or dropped."""

    def add_inputs(self, model: XMetaModelBase, inputs: dict[str, torch.Tensor], texts: list[str],
                   offsets: torch.Tensor | None) -> None:
        """Add the part's model inputs for tokenised ``texts`` (``offsets`` when `reads_offsets`)."""

    def caches_lower_layers(self, adapter: str) -> bool:
        """Whether the frozen lower layers' output may be reused across passes while ``adapter`` is active."""
        return True

    def new_pass(self) -> None:
        """A forward pass starts or ends: drop per-pass state."""

    # ------------------------------------------------- checkpoints, folders, export
    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """Non-parameter state a resumed run needs (keys without `checkpoint_prefix`)."""
        return {}

    def load_checkpoint_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore `checkpoint_state`."""

    def save(self, model: XMetaModelBase, folder: Path) -> None:
        """Write the part's files into a model folder (tensors under `attribute` are saved with θ already)."""

    def load(self, model: XMetaModelBase, folder: Path) -> None:
        """Read back what `save` wrote."""

    def export(self, model: XMetaModelBase, adapter: str, state: dict[str, torch.Tensor]) -> None:
        """Fold the part into ``state``, the plain exported model's tensors (XLM names), for ``adapter``."""
