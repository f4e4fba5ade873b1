"""How many SGD steps `adapt` takes, chosen on the source languages' dev rows after meta-training.

θ is meta-learned for ``inner_steps`` steps, but a new language's K examples may deserve fewer
(a good prototype start over-fits one example per class in ten steps) or more. Like the baselines'
adaptation tuning, the choice is made on held-out source data only: episodes of source languages'
dev rows (K = the meta-training k_shot per class, scored on k_query others per class), each adapted
with every candidate and scored in eval mode. With a prototype head, 0 steps (the shrunk prototypes
alone) is a candidate, and each episode's language is left out of the prior its prototypes shrink
toward (and of the sources' centre its own is shrunk toward), as it would be for a new language.

Every source language gives one episode per round, in whole rounds up to at least ``SELECTION_EPISODES``
(leave-one-language-out over all of them, as in meta-training). The candidates' scores are often within
a point of each other, and with 8 random episodes (256 query rows at K=4) the choice flipped between
re-scorings of the same θ; a round of all of them (19-29 here) cuts that noise by a third to a half and
weighs each language once. A round holds at most ``SELECTION_LANGUAGES`` languages, drawn by the seeded
dev sampler where there are more: with 91 CLDR sources and their romanised copies (130 languages) the fold
and a round of every language took 23 of meta-training's 28 minutes on 2 cores, where rounds of 19-29 already
steadied the choice. The best mean wins (ties to fewer steps). The one-standard-error rule (the
fewest steps within one paired standard error of the best) was measured and under-adapts: its error, from
32 query rows per episode, hides a gain that every candidate shows in turn (gnome-help: 0.808, 0.811,
0.814, 0.816 for 0, 1, 3, 10 steps).

The best number of steps depends on how many examples there are: one example per class over-fits in
steps that four examples per class still gain from (cldr-emoji source dev, 16 episodes: 0 steps 0.773
vs 3 steps 0.750 at K=1, flat at K=4). So the choice is made for every support size in
``SELECTION_SHOTS`` up to the meta-training k_shot (more rows per class than that would need dev rows the
sources may lack), and `adapt` uses the choice of the largest size at or below its examples' rows per class
(`xmeta.adapt.steps_for_support`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import mean

import torch

from ..data.sampler import Episode, EpisodeSampler
from .fomaml import InnerLoop, query_accuracy
from .source_prior import LanguageMeans, pool_languages
from .trainer import episode_batches

ADAPT_STEP_CANDIDATES = (0, 1, 3, 10)  # 0: prototypes only (prototype head)
DEFAULT_ADAPT_STEPS = 10  # without source dev rows to choose on
SELECTION_EPISODES = 16  # at least; drawn in whole rounds of every dev language
SELECTION_LANGUAGES = 32  # at most, per round (a seeded draw of that many distinct languages where there are more)
SELECTION_SHOTS = (1,)  # support sizes (rows per class) chosen for besides the meta-training k_shot


def selection_shots(k_shot: int) -> list[int]:
    """The support sizes whose adaptation steps are chosen on source dev episodes of that size."""
    return sorted({k for k in SELECTION_SHOTS if k < k_shot} | {k_shot})


def selection_round(languages: int) -> int:
    """Episodes (distinct languages) in a selection round among ``languages`` dev languages."""
    return min(languages, SELECTION_LANGUAGES)


def selection_episodes(dev: EpisodeSampler, episodes: int) -> list[Episode]:
    """Whole rounds of one episode per dev language (distinct languages within a round; `selection_round` of them),
    at least ``episodes``."""
    per_round = selection_round(len(dev.langs))
    rounds = -(-episodes // per_round)
    return [episode for _ in range(rounds) for episode in dev.sample_meta_batch(per_round)]


def leave_one_out(language_means: Mapping[str, LanguageMeans], lang: str) -> LanguageMeans | None:
    """The other source languages' pooled means and mean centre (None: nothing left, or ``lang`` not a source)."""
    others = [m for other, m in language_means.items() if other != lang]
    if lang not in language_means or not others:
        return None
    return pool_languages(others)


@torch.no_grad()
def select_adapt_steps(model, dev: EpisodeSampler, language_means: Mapping[str, LanguageMeans] | None = None,
                       candidates: Sequence[int] = ADAPT_STEP_CANDIDATES, episodes: int = SELECTION_EPISODES,
                       chunk_size: int = 16) -> tuple[int, dict[int, float]]:
    """(best steps, mean dev query accuracy per candidate over ``selection_episodes``); ties go to fewer steps."""
    mix = model.prototype_mix
    candidates = [s for s in candidates if s > 0 or mix is not None]
    prior = (mix.source_means.clone(), mix.source_centre.clone()) if mix is not None else None
    inner = {s: InnerLoop.meta_learned(model, model.config.inner_lr, s, model.config.head_lr_scale) for s in candidates}
    scores: dict[int, list[float]] = {s: [] for s in candidates}
    try:
        with model.evaluating(None):
            for episode in selection_episodes(dev, episodes):
                lang, support, query = episode_batches(model, episode, chunk_size)
                held_out = leave_one_out(language_means or {}, lang)
                if held_out is not None:
                    mix.source_means.copy_(held_out.centred)
                    mix.source_centre.copy_(held_out.centre)
                with model.transferring_into(lang):
                    for steps, loop in inner.items():
                        scores[steps].append(query_accuracy(model, loop, support, query))
    finally:
        if prior is not None:
            mix.source_means.copy_(prior[0])
            mix.source_centre.copy_(prior[1])
    means = {s: mean(v) for s, v in scores.items()}
    return max(candidates, key=lambda s: (round(means[s], 4), -s)), means
