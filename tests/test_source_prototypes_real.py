"""Source prototypes on the embedded multilingual-e5-small and real CLDR data."""

from __future__ import annotations

import pytest
import torch

from xmeta import XMetaForSequenceClassification
from xmeta.data import load_language_tasks, load_task_card
from xmeta.meta.source_prototypes import fold_source_prototypes, stratified_rows

pytestmark = pytest.mark.real


def test_source_prototypes_make_theta_a_zero_shot_classifier(tmp_path):
    card = load_task_card("cldr-emoji")
    torch.manual_seed(0)
    model = XMetaForSequenceClassification.for_labels(card.labels, task=card.name, prototype_head=True)
    sources = load_language_tasks(card, ["de", "ru", "zh"], "train")
    test = load_language_tasks(card, ["es"], "test")["es"]
    texts, gold = test.texts[:48], torch.tensor(test.labels[:48])
    before = (model.predict_proba(texts, lang="meta").argmax(-1) == gold).float().mean().item()
    assert fold_source_prototypes(model, sources, per_class=4).rows == 3 * 8 * 4
    after = model.predict_proba(texts, lang="meta")
    accuracy = (after.argmax(-1) == gold).float().mean().item()
    assert accuracy > before + 0.15, (before, accuracy)  # θ's random head alone is near chance (1/8)
    model.save_pretrained(tmp_path / "m")
    loaded = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    assert torch.equal(loaded.predict_proba(texts, lang="meta"), after)


def test_sources_metric_is_chosen_on_the_sources_and_kept_by_the_folder(tmp_path):
    """On the real encoder's features the sources' covariance beats Euclidean distance on held-out sources."""
    card = load_task_card("cldr-emoji")
    torch.manual_seed(0)
    model = XMetaForSequenceClassification.for_labels(card.labels, task=card.name, prototype_head=True,
                                                     prototype_metric="sources")
    sources = load_language_tasks(card, ["de", "ru", "zh", "fr"], "train")
    test = load_language_tasks(card, ["es"], "test")["es"]
    texts, gold = test.texts[:48], torch.tensor(test.labels[:48])
    choice = fold_source_prototypes(model, sources, per_class=8).metric
    assert choice.shrinkage < 1 and choice.scores[choice.shrinkage] > choice.scores[1.0], choice.scores
    after = model.predict_proba(texts, lang="meta")
    assert (after.argmax(-1) == gold).float().mean().item() > 0.3  # chance: 1/8
    model.save_pretrained(tmp_path / "m")
    loaded = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    assert loaded.config.prototype_metric_shrinkage == choice.shrinkage
    assert torch.equal(loaded.predict_proba(texts, lang="meta"), after)


def test_shrunk_centre_is_nearer_a_held_out_languages_centre_than_a_k1_supports_own():
    """Real features: the centre of a K=1 support (8 single rows) shrunk toward the sources' mean centre lies
    nearer the language's centre (from all its rows) than the support's own mean does, on average over draws."""
    from xmeta.meta.batch import LabelledBatch
    from xmeta.modeling.prototype_head import class_means

    card = load_task_card("cldr-emoji")
    torch.manual_seed(0)
    model = XMetaForSequenceClassification.for_labels(card.labels, task=card.name, prototype_head=True,
                                                     prototype_centre="shrunk")
    fold_source_prototypes(model, load_language_tasks(card, ["de", "ru", "zh", "fr"], "train"), per_class=8)
    mix = model.prototype_mix
    test = load_language_tasks(card, ["sw"], "test")["sw"]
    batch = LabelledBatch.build(model, test.texts[:240], test.labels[:240], language="sw")
    features = mix.features(model, {n: p.detach() for n, p in model.fast_parameters().items()}, batch)
    labels, classes = batch.labels, len(card.labels)
    _, truth, _ = class_means(features, labels, classes)
    errors = {"own": [], "shrunk": []}
    for seed in range(8):
        rows = torch.tensor(stratified_rows(labels.tolist(), classes, per_class=1, seed=seed))
        _, centre, counts = class_means(features[rows], labels[rows], classes)
        errors["own"].append(float(((centre - truth) ** 2).mean()))
        errors["shrunk"].append(float(((mix.shrunk_centre(centre, counts, None) - truth) ** 2).mean()))
    assert sum(errors["shrunk"]) < sum(errors["own"]), errors
