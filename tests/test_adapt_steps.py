"""Adaptation steps chosen on source dev episodes after meta-training (`--adapt_steps auto`)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.test_prototype_head import _model
from tests.test_source_prototypes import _tasks, _trained_like
from xmeta.data import EpisodeSampler
from xmeta.adapt import steps_for_support
from xmeta.meta.adapt_steps import leave_one_out, select_adapt_steps, selection_episodes, selection_shots
from xmeta.meta.source_prior import LanguageMeans
from xmeta.meta.source_prototypes import fold_source_prototypes


def test_leave_one_out_prior_pools_the_other_languages():
    means = {"aa": LanguageMeans(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), torch.tensor([9.0, 9.0])),
             "bb": LanguageMeans(torch.tensor([[0.0, 3.0], [0.0, -3.0]]), torch.tensor([1.0, 0.0])),
             "cc": LanguageMeans(torch.tensor([[2.0, 1.0], [-2.0, -1.0]]), torch.tensor([3.0, 2.0]))}
    held_out = leave_one_out(means, "aa")
    assert torch.allclose(held_out.centred, torch.tensor([[1.0, 2.0], [-1.0, -2.0]]))
    assert torch.allclose(held_out.centre, torch.tensor([2.0, 1.0]))  # the others' mean centre: aa's is left out
    assert leave_one_out(means, "zz") is None and leave_one_out({"aa": means["aa"]}, "aa") is None


def test_selection_episodes_take_every_language_once_per_round():
    from collections import Counter

    dev = EpisodeSampler(_tasks(("aa", "bb", "cc"), per_class=6), None, 2, 2, seed=1)
    assert Counter(e.lang for e in selection_episodes(dev, 3)) == {"aa": 1, "bb": 1, "cc": 1}
    assert Counter(e.lang for e in selection_episodes(dev, 4)) == {"aa": 2, "bb": 2, "cc": 2}  # whole rounds


def test_a_selection_round_holds_at_most_the_cap_of_distinct_languages(monkeypatch):
    from xmeta.meta import adapt_steps

    monkeypatch.setattr(adapt_steps, "SELECTION_LANGUAGES", 2)
    dev = EpisodeSampler(_tasks(("aa", "bb", "cc"), per_class=6), None, 2, 2, seed=1)
    episodes = selection_episodes(dev, 3)  # rounds of 2 (the cap), at least 3 episodes: two rounds
    assert len(episodes) == 4 and all(len({e.lang for e in episodes[i:i + 2]}) == 2 for i in (0, 2))
    assert adapt_steps.selection_round(3) == 2 and adapt_steps.selection_round(1) == 1


def test_selection_scores_every_candidate_and_restores_the_prior(tiny_encoder_dir):
    model = _trained_like(tiny_encoder_dir)
    tasks = _tasks(("aa", "bb", "cc"), per_class=6)
    fold = fold_source_prototypes(model, tasks, per_class=2)
    prior = model.prototype_mix.source_means.clone()
    centre = model.prototype_mix.source_centre.clone()
    theta = {n: p.detach().clone() for n, p in model.fast_parameters().items()}
    dev = EpisodeSampler(tasks, None, 2, 2, seed=1)
    best, scores = select_adapt_steps(model, dev, fold.language_means, episodes=3)
    assert set(scores) == {0, 1, 3, 10} and best in scores and all(0 <= a <= 1 for a in scores.values())
    assert scores[best] == max(scores.values())
    assert torch.equal(model.prototype_mix.source_means, prior)  # the leave-one-out priors were temporary
    assert torch.equal(model.prototype_mix.source_centre, centre)
    assert all(torch.equal(p, theta[n]) for n, p in model.fast_parameters().items())  # θ untouched
    again = select_adapt_steps(model, EpisodeSampler(tasks, None, 2, 2, seed=1), fold.language_means, episodes=3)
    assert again == (best, scores)  # deterministic
    # without a prototype head, 0 steps is no candidate
    plain = _model(tiny_encoder_dir)
    _, plain_scores = select_adapt_steps(plain, EpisodeSampler(tasks, None, 2, 2, seed=1), episodes=2)
    assert set(plain_scores) == {1, 3, 10}


def test_zero_adapt_steps_need_a_prototype_head(tiny_encoder_dir):
    from xmeta.errors import ArgumentError

    examples = [("cat dog", "animal"), ("ship train", "travel"), ("bread soup", "food")]
    proto = _model(tiny_encoder_dir, prototype_head=True)
    assert proto.adapt(examples, lang="yo", steps=0).steps == 0
    with pytest.raises(ArgumentError, match="at least 1"):
        _model(tiny_encoder_dir).adapt(examples, lang="yo", steps=0)


@pytest.mark.parametrize(("value", "message"), [("x", "a number of steps or auto"), ("-1", "at least 0")])
def test_bad_adapt_steps_is_one_line_error(tmp_path, tiny_encoder_dir, toy_jsonl, capsys, value, message):
    from xmeta.cli import main

    train = toy_jsonl(["aa", "bb"], per_class=4, name="train.jsonl")
    assert main(["meta-train", "--train_file", str(train), "--encoder", str(tiny_encoder_dir),
                 "--out", str(tmp_path / "m"), "--adapt_steps", value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and not (tmp_path / "m").exists()


def test_meta_train_on_a_card_chooses_the_adapt_steps_on_dev(tmp_path, tiny_encoder_dir, monkeypatch):
    from tests.test_benchmark import small_card
    from xmeta.cli import main
    from xmeta.meta import source_prototypes

    given = []
    chosen = source_prototypes.choose_metric
    monkeypatch.setattr(source_prototypes, "choose_metric",
                        lambda *args, **kwargs: given.append(kwargs["held_out"]) or chosen(*args, **kwargs))
    card = small_card(tmp_path, "emoji-a", "en, de, fr, es")
    assert main(["meta-train", "--task", str(card), "--encoder", str(tiny_encoder_dir), "--out", str(tmp_path / "m"),
                 "--steps", "1", "--meta_batch", "2", "--eval_every", "0", "--lora_r", "2"]) == 0
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    state = json.loads((tmp_path / "m" / "trainer_state.json").read_text())
    scores = {int(steps): accuracy for steps, accuracy in state["adapt_steps"].items()}
    assert set(scores) == {0, 1, 3, 10}
    assert config["adapt_steps"] == max(scores, key=lambda steps: (scores[steps], -steps))  # ties: fewer steps
    # one choice per support size up to the meta-training k_shot (4): 1 and 4 rows per class
    by_shots = state["adapt_steps_by_shots"]
    assert set(by_shots) == {"1", "4"} and by_shots["4"] == state["adapt_steps"]
    assert config["prototype_metric_selection"] == "dev" and state["prototype_metric"]
    assert given and all(rows is not None for rows in given[0])  # the metric was scored on every source's dev rows
    for k, accuracy in by_shots.items():
        assert config["adapt_steps_by_shots"][k] == int(max(accuracy, key=lambda s: (accuracy[s], -int(s))))


def test_support_sizes_chosen_for():
    assert selection_shots(4) == [1, 4] and selection_shots(1) == [1] and selection_shots(2) == [1, 2]


def test_adapt_takes_the_steps_chosen_for_its_support_size():
    by_shots = {"1": 0, "4": 3}
    assert steps_for_support(by_shots, 1, 10) == 0
    assert steps_for_support(by_shots, 2.5, 10) == 0  # the largest size at or below: 1
    assert steps_for_support(by_shots, 4, 10) == 3 and steps_for_support(by_shots, 16, 10) == 3
    assert steps_for_support({"2": 1, "4": 3}, 1, 10) == 1  # below every size: the smallest size's
    assert steps_for_support({}, 16, 10) == 10  # no choice per size (older folders, --adapt_steps N)


def test_adapt_uses_the_choice_for_its_rows_per_class(tiny_encoder_dir):
    model = _model(tiny_encoder_dir, prototype_head=True)
    model.config.adapt_steps, model.config.adapt_steps_by_shots = 3, {"1": 0, "2": 1}
    one = [("cat dog", "animal"), ("ship train", "travel"), ("bread soup", "food")]
    two = one + [("cow hen", "animal"), ("car bus", "travel"), ("rice tea", "food")]
    assert model.adapt(one, lang="yo").steps == 0
    assert model.adapt(two, lang="ig").steps == 1
    assert model.adapt(two, lang="zu", steps=5).steps == 5  # an explicit number wins
