"""What `xmeta benchmark` measures: its rows (methods) and the resolved settings of one run (plan)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from ..arguments import BenchmarkCommand, int_list, split_list
from ..errors import ArgumentError
from ..meta.trainer import MetaTrainingArguments
from ..meta.warm_start import JointWarmStart

ALL_ROWS = -1  # "K" of the oracle rows: every training row of the target
TARGET_TEXT = ("none", "train")  # unlabelled target text given to every method that can use it
BUDGET_KINDS = ("joint", "joint-ft", "xmeta")  # the rows trained once per --budgets multiple
WARM_META_SHARE = 0.5  # share of a warm-start row's example budget spent meta-training (the rest: its joint stage)
# The baselines' LoRA placement: the top 4 encoder layers, where B1/B2 score higher on both tasks than with LoRA in
# every layer (`joint-alllayers`, `joint-ft-alllayers`): the generous choice for the rows xmeta is compared with
BASELINE_LORA = {"lora_layers": 4}


@dataclass(frozen=True)
class Method:
    """One row of the benchmark: a baseline or an xmeta variant (its flags as plain data)."""

    name: str
    kind: str  # probe | joint | joint-ft | target-only | xmeta | oracle
    description: str
    encoder_flags: dict = field(default_factory=dict)
    training_flags: dict = field(default_factory=dict)
    ablation: bool = False  # scored at the ablation shots only
    budget_scale: int = 1  # this many times the plan's training budget (xmeta's meta-steps, B1's steps)
    by_default: bool = True  # run when --methods is not given
    budget: float = 1.0  # the --budgets multiple this copy of the row is trained at
    # reads each target's unlabelled training texts as its language's centre (xmeta: K=0 too; the probe: every
    # language's)
    centres_on_text: bool = False
    # the row whose trained model this row uses: an xmeta row adapts that row's model (same flags); a B2 or oracle
    # row names its B1 row (else "joint"); a B1 row is its own
    model_of: str = ""

    @property
    def reads_target_text(self) -> bool:
        """Only a meta-embedding can use unlabelled target text given by ``--target_text`` (its per-language
        target view); a row that centres on the text always reads it."""
        return self.encoder_flags.get("meta_embedding") == "on"

    @property
    def multiple(self) -> float:
        """Training budget in units of the plan's budget (the -2x rows' scale times the --budgets multiple)."""
        return self.budget_scale * self.budget

    @property
    def label(self) -> str:
        """The row's name in the cache and the records: the method's name, suffixed ``@<budget>x`` off budget 1."""
        return self.name if self.budget == 1 else f"{self.name}@{self.budget:g}x"

    @property
    def warm_start(self) -> bool:
        """An xmeta row whose meta-training starts from a joint stage (``meta-train --init joint``)."""
        return self.training_flags.get("init") == "joint"


METHODS = (
    Method("probe", "probe", "B4 frozen-encoder probe: logistic regression on mean-pooled features, sources + K target"),
    Method("probe+text", "probe", "B4 with every language's features centred on the mean feature of its training "
           "texts (labels unused): what the unlabelled text `xmeta+text` reads buys the probe", ablation=True,
           centres_on_text=True),
    Method("joint", "joint", "B1 joint LoRA fine-tuning on all source rows (zero-shot on the target); LoRA in the "
           "top 4 encoder layers", BASELINE_LORA),
    Method("joint-ft", "joint-ft", "B2 B1 + fine-tuning on the K target examples", BASELINE_LORA),
    Method("joint-ft-2x", "joint-ft", "B2 on a B1 trained twice as long (the budget of xmeta-2x)", BASELINE_LORA,
           ablation=True, budget_scale=2, by_default=False),
    Method("joint-alllayers", "joint", "B1 with LoRA in every encoder layer (`--lora_layers 0`), as `xmeta`",
           {"lora_layers": 0}, ablation=True, by_default=False),
    Method("joint-ft-alllayers", "joint-ft", "B2 on that B1: LoRA in every encoder layer (`--lora_layers 0`)",
           {"lora_layers": 0}, ablation=True, by_default=False, model_of="joint-alllayers"),
    Method("target-only", "target-only", "B3 LoRA fine-tuning on the K target examples only", BASELINE_LORA),
    Method("xmeta", "xmeta", "xmeta's default recipe (`xmeta meta-train`): first-order Proto-MAML (the head starts "
           "from the support's class prototypes, shrunk toward the source languages' prototypes by a weight "
           "estimated for each language; θ's head is the source prototypes for K=0), distances under the sources' "
           "within-class covariance (its shrinkage chosen on the sources' dev rows), each support's centre shrunk toward the sources' (James-Stein), with romanised "
           "copies of the sources in scripts other than Latin, LoRA in every encoder layer"),
    Method("xmeta+text", "xmeta", "xmeta's model given each target's unlabelled training texts (labels unused): "
           "their mean feature centres its prototypes, and at K=0 the source prototypes (`adapt --target_text`)",
           ablation=True, centres_on_text=True, model_of="xmeta"),
    Method("xmeta-2x", "xmeta", "the default recipe with twice the meta-steps (and twice B1's example budget)",
           ablation=True, budget_scale=2, by_default=False),
    Method("xmeta-romancopies", "xmeta", "no romanised copies of the sources (`--romanized_copies off`): θ meta-trains "
           "on the sources as written only (the default before the copies)", training_flags={"romanized_copies": "off"},
           ablation=True),
    Method("xmeta-owncentre", "xmeta", "each support's own centre (`--prototype_centre support --metric_selection "
           "fold`): the default before the shrunk centre", {"prototype_centre": "support", "metric_selection": "fold"}, ablation=True),
    Method("xmeta-euclidean", "xmeta", "Euclidean prototypes on the support's own centre (`--prototype_metric "
           "euclidean --prototype_centre support --metric_selection fold`): the default before the sources' covariance",
           {"prototype_metric": "euclidean", "prototype_centre": "support", "metric_selection": "fold"}, ablation=True),
    Method("xmeta-top4", "xmeta", "LoRA in the top 4 encoder layers only (`--lora_layers 4`): the default before "
           "LoRA in every layer", {"lora_layers": 4}, ablation=True),
    Method("xmeta-fomaml", "xmeta", "first-order MAML alone: no prototype head", {"prototype_head": "off"},
           ablation=True),
    Method("xmeta+mix", "xmeta", "the prototypes added to a meta-learned head (a learned mix), not the head alone",
           {"meta_head": "on"}, ablation=True),
    Method("xmeta-srcprior", "xmeta", "one prior weight for every language, estimated from the sources' scatter",
           {"prototype_prior": "sources"}, ablation=True),
    Method("xmeta+sa", "xmeta", "+ source attention", {"source_attention": "on"}, ablation=True),
    Method("xmeta+route", "xmeta", "+ source attention that routes: bank centring, the URIEL routing loss "
           "(weight 1) and the attention's own rate (0.05)",
           {"source_attention": "on", "bank_centering": "on", "routing_weight": 1.0}, {"attention_lr": 0.05},
           ablation=True),
    Method("xmeta+selfroute", "xmeta", "+ source attention with self-routing: bank centring, the URIEL routing loss "
           "(weight 10) read before the episode's own language is masked, toward a prior that includes it "
           "(`--routing_self on`), and the attention's own rate (0.05)",
           {"source_attention": "on", "bank_centering": "on", "routing_weight": 10.0, "routing_self": "on"},
           {"attention_lr": 0.05}, ablation=True),
    Method("xmeta+uniform", "xmeta", "+ the source bank mixed by a uniform average of its adapters (no attention)",
           {"source_attention": "on", "source_mixer": "uniform"}, ablation=True),
    Method("xmeta+nearest", "xmeta", "+ the source bank mixed by the source typologically nearest to the text's "
           "language (URIEL; every token of the text; in meta-training the nearest other source)",
           {"source_attention": "on", "source_mixer": "nearest"}, ablation=True),
    Method("xmeta+arrow", "xmeta", "+ the source bank mixed by peft's Arrow routing (top 3 sources per token)",
           {"source_attention": "on", "source_mixer": "arrow"}, ablation=True),
    Method("xmeta+generate", "xmeta", "+ generated adapters: a hypernetwork maps each language's URIEL prior over "
           "the sources to an update of θ, where every inner loop and adaptation (K=0 too) starts",
           {"adapter_generator": "on"}, ablation=True),
    Method("xmeta+shots", "xmeta", "variable-shot episodes: each meta-training episode draws 1 to k_shot support "
           "examples per class (`--min_k_shot 1`), so θ also learns to start from one example per class",
           training_flags={"min_k_shot": 1}, ablation=True),
    Method("xmeta+me", "xmeta", "+ meta-embedding", {"meta_embedding": "on"}, ablation=True),
    Method("xmeta+lr", "xmeta", "+ learned inner rates", training_flags={"learn_inner_lr": True}, ablation=True),
    Method("xmeta-full", "xmeta", "the default + source attention + meta-embedding + learned inner rates",
           {"source_attention": "on", "meta_embedding": "on"}, {"learn_inner_lr": True}, ablation=True),
    Method("xmeta+warm", "xmeta", "warm start: a B1-style joint stage, then the default recipe; the two stages "
           "split the row's example budget half/half", training_flags={"init": "joint"}, ablation=True),
    Method("oracle", "oracle", "ceiling: B1 + fine-tuning on all of the target's training rows", BASELINE_LORA),
)
METHOD_NAMES = tuple(m.name for m in METHODS)
DEFAULT_METHOD_NAMES = tuple(m.name for m in METHODS if m.by_default)


@dataclass
class Plan:
    """What one benchmark run measures (the resolved command-line settings)."""

    targets: list[str]
    extra_targets: list[str]
    shots: list[int]
    ablation_shots: list[int]
    seeds: list[int]
    methods: list[Method]
    meta_steps: int
    budgets: list[float] = field(default_factory=lambda: [1.0])  # multiples of the budget (B1/B2 and xmeta rows)
    target_text: str = "none"  # none | train: unlabelled target training texts for methods that read them
    meta_batch: int = MetaTrainingArguments.meta_batch
    k_shot: int = MetaTrainingArguments.k_shot  # the meta-training episode shape
    k_query: int = MetaTrainingArguments.k_query
    inner_steps: int = MetaTrainingArguments.inner_steps
    adapt_steps: int = 10  # B3's start (its steps are tuned) and the oracle's
    xmeta_adapt_steps: str = "auto"  # meta-train --adapt_steps: chosen on source dev episodes
    test_per_class: int = 25
    dev_per_class: int = 5
    probe_per_class: int = 20
    joint_batch: int = 32
    oracle_epochs: float = 2.0
    pseudo_targets: int = 3
    romanize: str = "auto"  # input preprocessing of the targets, the same for every method
    training_seed: int = 0  # seed of every trained model (the shot and test rows do not depend on it)
    sources: list[str] = field(default_factory=list)  # the source languages (empty: the card's)
    tuning_k: int = 4  # shots per class of the tuning's pseudo-targets (source dev rows)
    tuning_grid: dict = field(default_factory=lambda: {"joint-ft": [0.01, 0.03, 0.1, 0.3], "target-only": [0.03, 0.1, 0.3, 1.0]})
    tuning_steps: list[int] = field(default_factory=lambda: [10, 30])  # adaptation steps tried with every lr

    def passes_per_meta_step(self, n_way: int) -> int:
        """Examples one meta-step passes through the model:
        meta-batch × n_way classes × (inner steps × k_shot support rows + k_query query rows)."""
        return self.meta_batch * n_way * (self.inner_steps * self.k_shot + self.k_query)

    def meta_steps_at(self, multiple: float = 1.0) -> int:
        return max(1, round(self.meta_steps * multiple))

    def joint_steps(self, n_way: int, multiple: float = 1.0) -> int:
        """B1 sees as many examples as meta-training passes through the model at the same budget."""
        return max(1, self.meta_steps_at(multiple) * self.passes_per_meta_step(n_way) // self.joint_batch)

    def warm_split(self, n_way: int, multiple: float = 1.0) -> tuple[int, int]:
        """(joint-stage steps, meta-steps) of a warm-start row: together as many example passes as B1
        at the same budget (less than one joint batch short), ``WARM_META_SHARE`` of them meta-training."""
        total = self.joint_steps(n_way, multiple) * self.joint_batch
        meta = int(self.meta_steps_at(multiple) * WARM_META_SHARE)
        joint = (total - meta * self.passes_per_meta_step(n_way)) // JointWarmStart.batch_size
        if meta < 1 or joint < 1:
            raise ArgumentError(f"--budgets: at budget {multiple:g} the warm-start row gets {meta} meta-steps and "
                                f"{joint} joint steps (needs 1 each); raise --meta_steps or the budget")
        return joint, meta

    def runs(self) -> list[Method]:
        """Every row to run: the methods at budget 1, then the trained ones at each other --budgets multiple."""
        extra = [replace(m, budget=b) for b in self.budgets if b != 1 for m in self.methods
                 if m.kind in BUDGET_KINDS and m.budget_scale == 1]
        return [*self.methods, *extra]

    def shots_for(self, method: Method) -> list[int]:
        if method.kind == "joint":
            return [0]
        if method.kind == "oracle":
            return [ALL_ROWS]
        shots = self.ablation_shots if method.ablation or method.budget != 1 else self.shots
        if method.kind == "probe":  # cheap, and the issue's reference point: the probe with every target row
            return [*shots, ALL_ROWS]
        return [k for k in shots if not (k == 0 and method.kind == "target-only")]


def budget_list(value: str) -> list[float]:
    """``--budgets "0.5,1,2"`` -> sorted distinct positive multiples."""
    try:
        budgets = sorted({float(v) for v in split_list(value, "--budgets")})
    except ValueError as err:
        raise ArgumentError(f"--budgets: expected comma-separated numbers, got {value!r}") from err
    if not budgets or not all(b > 0 and math.isfinite(b) for b in budgets):
        raise ArgumentError(f"--budgets: multiples must be positive numbers (got {value!r})")
    return budgets


def check_budgets(plan: Plan, n_way: int) -> None:
    """Every budget multiple must train a model of its own (distinct meta-steps), and a warm-start row must
    get at least one step in each of its stages."""
    steps = [plan.meta_steps_at(b) for b in plan.budgets]
    if len(set(steps)) < len(steps):
        raise ArgumentError(f"--budgets {','.join(f'{b:g}' for b in plan.budgets)}: at --meta_steps {plan.meta_steps} "
                            f"two budgets round to the same meta-steps ({steps}); raise --meta_steps")
    for m in plan.runs():
        if m.kind == "xmeta" and m.warm_start:
            plan.warm_split(n_way, m.multiple)


def plan_from(cmd: BenchmarkCommand, card_targets: tuple[str, ...], card_separate: tuple[str, ...] = ()) -> Plan:
    extra = list(card_separate) if cmd.extra_targets == "card" else split_list(cmd.extra_targets, "--extra_targets")
    targets = split_list(cmd.targets, "--targets") if cmd.targets else [t for t in card_targets if t not in extra]
    sources = split_list(cmd.sources, "--sources") if cmd.sources else []
    held_out = [lang for lang in sources if lang in targets + extra]
    if held_out:
        raise ArgumentError(f"--sources: {held_out[0]!r} is also a target")
    names = split_list(cmd.methods, "--methods") if cmd.methods else list(DEFAULT_METHOD_NAMES)
    unknown = [n for n in names if n not in METHOD_NAMES]
    if unknown:
        raise ArgumentError(f"--methods: unknown method {unknown[0]!r} (choose from {', '.join(METHOD_NAMES)})")
    if cmd.seeds < 1:
        raise ArgumentError(f"--seeds must be at least 1 (got {cmd.seeds})")
    if cmd.target_text not in TARGET_TEXT:
        raise ArgumentError(f"--target_text must be one of {', '.join(TARGET_TEXT)} (got {cmd.target_text!r})")
    plan = Plan(targets=targets, extra_targets=extra, shots=int_list(cmd.shots, "--shots"),
                ablation_shots=int_list(cmd.ablation_shots, "--ablation_shots"), seeds=list(range(cmd.seeds)),
                methods=[m for m in METHODS if m.name in names], meta_steps=cmd.meta_steps,
                budgets=budget_list(cmd.budgets), target_text=cmd.target_text, test_per_class=cmd.test_per_class,
                romanize=cmd.romanize, training_seed=cmd.training_seed, sources=sources)
    if cmd.quick:  # the fewest meta-steps that leave every budget 2 (a warm-start row splits them)
        plan = replace(plan, targets=targets[:1], extra_targets=[], shots=[0, 4], ablation_shots=[0, 4], seeds=[0],
                       meta_steps=math.ceil(2 / min(plan.budgets)), adapt_steps=2, xmeta_adapt_steps="2", test_per_class=2, dev_per_class=1, probe_per_class=1,
                       oracle_epochs=0.1, pseudo_targets=1, tuning_grid={"joint-ft": [0.1], "target-only": [0.3]},
                       tuning_steps=[2])
    return plan
