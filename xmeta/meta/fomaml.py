"""First-order MAML with functional fast weights.

The fast weights φ are the active adapter's LoRA and head tensors. Each inner step evaluates the
model through ``torch.func.functional_call`` with φ substituted and takes ``torch.autograd.grad``
with respect to φ only: no module copies, and no graph is kept from one step to the next (which
is exactly the first-order approximation). The meta-gradient of a language is the query-loss
gradient at the adapted φ_T, applied to θ; every other trainable tensor (slow weights) gets its
ordinary query-loss gradient.

With learned inner rates (first-order Meta-SGD, `xmeta.modeling.inner_rates`) group g steps with
its own α_g, so φ_T = φ_0 − α_g Σ_t ∇_g L_S(φ_t) on that group. Holding the inner gradients
constant (the first-order assumption) gives ∂L_Q/∂α_g = −Σ_t ⟨∇_g L_Q(φ_T), ∇_g L_S(φ_t)⟩, exact
for T = 1; the rates are stored as log-scales s, so their gradient is α_g ∂L_Q/∂α_g.

The model's components may move the start of the inner loop (`Component.start_inner_loop`): with a
prototype head (`xmeta.modeling.prototype_head`) the head starts from the support's class prototypes
(added to θ's head); a component's first-order gradient for its own slow weights comes from what its
start recorded (`Component.start_gradients`). The head steps at ``head_lr_scale`` times the rate.
A component may also add the gradient of its own auxiliary loss on the query pass
(`Component.query_pass`, e.g. source attention's routing loss).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import torch
from torch.func import functional_call
from tqdm.auto import tqdm

from ..modeling.inner_rates import InnerRates
from ..modeling.prototype_head import is_head_tensor
from .batch import LabelledBatch

FastWeights = dict[str, torch.Tensor]
PROGRESS_MIN_STEPS = 30  # adaptations shorter than this finish in seconds: no bar


def batch_loss(model: torch.nn.Module, weights: FastWeights, batch: LabelledBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and logits (in chunk order) of ``model`` run with ``weights`` in place of its own."""
    logits = torch.cat([functional_call(model, weights, args=(), kwargs=inputs).logits for inputs, _ in batch.chunks])
    return torch.nn.functional.cross_entropy(logits, batch.labels), logits


def query_accuracy(model: torch.nn.Module, inner: InnerLoop, support: LabelledBatch, query: LabelledBatch) -> float:
    """Accuracy on ``query`` after ``inner`` adapted the model's fast weights on ``support`` (θ unchanged)."""
    with torch.enable_grad():
        fast = inner.run(model, support)
    with torch.inference_mode():
        _, logits = batch_loss(model, fast, query)
    return (logits.argmax(-1) == query.labels).float().mean().item()


@dataclass
class InnerLoop:
    """T plain SGD steps on a support set, starting from the model's current fast weights (as the
    model's components move them first, e.g. the prototype head); with ``rates``, each group of
    fast weights steps with its learned rate instead of ``lr``; the head's rate is ``head_lr_scale`` times its own."""

    lr: float
    steps: int
    rates: InnerRates | None = None
    head_lr_scale: float = 1.0
    progress: str | None = None  # a progress bar's label (adaptation runs long); None: no bar (meta-training)

    @classmethod
    def meta_learned(cls, model: torch.nn.Module, lr: float, steps: int, head_lr_scale: float = 1.0) -> InnerLoop:
        """The inner loop with what ``model`` meta-learned about it: its learned rates, if it has them."""
        return cls(lr=lr, steps=steps, rates=getattr(model, "inner_rates", None), head_lr_scale=head_lr_scale)

    def step_sizes(self, names: Iterable[str]) -> dict[str, float | torch.Tensor]:
        """The SGD step size of each fast tensor (constants: the inner loop never differentiates them)."""
        if self.rates is None:
            sizes = dict.fromkeys(names, self.lr)
        else:
            per_group = self.rates.rates(self.lr).detach()
            sizes = {n: per_group[self.rates.index(n)] for n in names}
        return {n: size * self.head_lr_scale if is_head_tensor(n) else size for n, size in sizes.items()}

    def run(self, model: torch.nn.Module, support: LabelledBatch, start: FastWeights | None = None) -> FastWeights:
        return self.trace(model, support, start)[0]

    def trace(self, model: torch.nn.Module, support: LabelledBatch,
              start: FastWeights | None = None) -> tuple[FastWeights, FastWeights | None, dict[str, object]]:
        """φ_T; with learned rates, Σ_t ∇L_S(φ_t) per tensor (what the rates' meta-gradient needs);
        what each component that moved the start recorded, by name (e.g. the prototype head it added)."""
        fast = {n: p.detach() for n, p in (start or model.fast_parameters()).items()}
        starts = {}
        for name, component in model.components.items():
            fast, record = component.start_inner_loop(model, fast, support)
            if record is not None:
                starts[name] = record
        sizes = self.step_sizes(fast)
        summed = {n: torch.zeros_like(w) for n, w in fast.items()} if self.rates is not None else None
        steps = tqdm(range(self.steps), desc=self.progress, unit="step", dynamic_ncols=True, leave=False,
                     disable=self.progress is None or self.steps < PROGRESS_MIN_STEPS)
        for _ in steps:
            fast = {n: w.requires_grad_(True) for n, w in fast.items()}
            loss, _ = batch_loss(model, fast, support)
            grads = torch.autograd.grad(loss, list(fast.values()))
            if summed is not None:
                for name, grad in zip(fast, grads):
                    summed[name] += grad
            fast = {n: (w - sizes[n] * g).detach() for (n, w), g in zip(fast.items(), grads)}
        return fast, summed, starts

    def rate_gradient(self, query_grads: FastWeights, support_grads: FastWeights) -> torch.Tensor:
        """∂L_Q/∂s per group: α_g · (−Σ_t ⟨∇_g L_Q(φ_T), ∇_g L_S(φ_t)⟩)."""
        d_alpha = torch.zeros_like(self.rates.log_scale)
        for name, grad in query_grads.items():
            head = self.head_lr_scale if is_head_tensor(name) else 1.0  # the head steps at α_g · head_lr_scale
            d_alpha[self.rates.index(name)] -= head * (grad * support_grads[name]).sum()
        return self.rates.rates(self.lr).detach() * d_alpha


@dataclass
class EpisodeResult:
    lang: str
    query_loss: float
    query_accuracy: float


def _accumulate(param: torch.Tensor, grad: torch.Tensor) -> None:
    param.grad = grad.clone() if param.grad is None else param.grad + grad


class FirstOrderMAML:
    """Accumulates the averaged first-order meta-gradient of a meta-batch into ``.grad``."""

    def __init__(self, model: torch.nn.Module, inner: InnerLoop) -> None:
        self.model = model
        self.inner = inner

    def meta_gradient(self, episodes: Sequence[tuple[str, LabelledBatch, LabelledBatch]],
                      total: int | None = None) -> list[EpisodeResult]:
        """Add ∇φ L_Q(φ_T) (fast), ∇ L_Q (slow) and the rates' estimate / ``total`` into the parameters' ``.grad``.

        ``total`` (default ``len(episodes)``) is the whole meta-batch's size when ``episodes`` is
        only this process's share of it, so that the sum over processes is the mean."""
        theta = self.model.fast_parameters()
        rates = self.inner.rates
        own = set(rates.parameters()) if rates is not None else set()
        slow = {n: p for n, p in self.model.named_parameters() if p.requires_grad and n not in theta and p not in own}
        scale = total or len(episodes)
        replaced = {n for n in theta if any(c.replaces(n) for c in self.model.components.values())}
        results = []
        for lang, support, query in episodes:
            with self.model.transferring_into(lang):  # leave-one-language-out for source attention
                fast, support_grads, starts = self.inner.trace(self.model, support)
                fast = {n: w.requires_grad_(True) for n, w in fast.items()}
                with ExitStack() as stack:  # a component's auxiliary loss on the query pass (e.g. routing)
                    auxiliary = [stack.enter_context(c.query_pass(self.model)) for c in self.model.components.values()]
                    loss, logits = batch_loss(self.model, fast, query)
                grads = torch.autograd.grad(loss, list(fast.values()) + list(slow.values()), allow_unused=True)
            self.model.remember_source(lang, fast)
            for (name, param), grad in zip(list(theta.items()) + list(slow.items()), grads):
                if grad is not None and name not in replaced:
                    _accumulate(param, grad / scale)
            query_grads = dict(zip(fast, grads[: len(fast)]))
            if rates is not None:
                _accumulate(rates.log_scale, self.inner.rate_gradient(query_grads, support_grads) / scale)
            for param, grad in (pair for pairs in auxiliary for pair in pairs):
                _accumulate(param, grad / scale)
            for name, record in starts.items():
                for param, grad in self.model.components[name].start_gradients(query_grads, record):
                    _accumulate(param, grad / scale)
            accuracy = (logits.argmax(-1) == query.labels).float().mean().item()
            results.append(EpisodeResult(lang, loss.item(), accuracy))
        return results
