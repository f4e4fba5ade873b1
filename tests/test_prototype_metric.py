"""The prototype head's metric: distances under the sources' shrunk within-class covariance, α chosen on the sources."""

from __future__ import annotations

import torch

from tests.test_source_prototypes import _tasks, _trained_like
from xmeta import XMetaForSequenceClassification
from xmeta.meta import LabelledBatch
from xmeta.meta.prototype_metric import SHRINKAGE_CANDIDATES, choose_metric, whitening, within_scatter_matrix
from xmeta.meta.source_prototypes import fold_source_prototypes
from xmeta.modeling.prototype_head import PrototypeMix, prototype_linear


def _spd(dims: int, seed: int) -> torch.Tensor:
    a = torch.randn(dims, dims, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T + 0.1 * torch.eye(dims, dtype=torch.float64)


def test_whitening_is_the_shrunk_covariances_inverse_root_and_the_identity_at_one():
    scatter, dof = _spd(6, 0) * 40, 40
    covariance = scatter / dof
    scale = float(torch.trace(covariance)) / 6
    assert torch.equal(whitening(scatter, dof, 1.0), torch.eye(6))
    for alpha in (0.0, 0.3):
        metric = whitening(scatter, dof, alpha).double()
        shrunk = (1 - alpha) * covariance + alpha * scale * torch.eye(6, dtype=torch.float64)
        assert torch.allclose(metric @ shrunk @ metric, scale * torch.eye(6, dtype=torch.float64), atol=1e-4)
        assert torch.allclose(metric, metric.T, atol=1e-6)


def test_prototype_head_under_a_metric_ranks_classes_by_mahalanobis_distance():
    """logit_c − logit_c' = ‖(x − μ_c')M‖² − ‖(x − μ_c)M‖² on the raw features (without a prior, a language
    centre moves no prototype: it only says what the prior's means are centred on)."""
    gen = torch.Generator().manual_seed(2)
    classes, dims = 3, 5
    mix = PrototypeMix(classes, dims, meta_head=False)
    mix.metric.copy_(whitening(_spd(dims, 1) * 30, 30, 0.2))
    support, labels = torch.randn(6, dims, generator=gen), torch.tensor([0, 1, 2, 0, 1, 2])
    x = torch.randn(4, dims, generator=gen)
    means = torch.stack([support[labels == c].mean(0) for c in range(classes)])
    for centre in (None, torch.randn(dims, generator=gen)):
        with mix.centred_on(centre):
            weight, bias = mix.support_linear(support, labels)
        logits = x @ weight.T + bias
        distance = (((x[:, None] - means[None]) @ mix.metric) ** 2).sum(-1)
        assert torch.allclose(logits - logits[:, :1], -(distance - distance[:, :1]), atol=1e-4)


def _languages(noisy: float, langs: int = 5, classes: int = 4, dims: int = 12, rows: int = 8):
    """Class means in every feature, rows' noise ``noisy`` times larger in the last half of the features."""
    gen = torch.Generator().manual_seed(3)
    means = torch.randn(classes, dims, generator=gen)
    spread = torch.cat([torch.full((dims // 2,), 0.6), torch.full((dims - dims // 2,), 0.6 * noisy)])
    labels = torch.arange(classes).repeat(rows)
    features = [means[labels] + spread * torch.randn(len(labels), dims, generator=gen) for _ in range(langs)]
    return features, [labels] * langs


def test_choose_metric_prefers_the_covariance_where_the_noise_is_not_isotropic():
    features, labels = _languages(noisy=6.0)
    choice = choose_metric(features, labels, 4, prior="per_language", within="support", centre="shrunk")
    assert set(choice.scores) == set(SHRINKAGE_CANDIDATES)
    assert choice.shrinkage < 1 and choice.scores[choice.shrinkage] > choice.scores[1.0] + 0.05, choice.scores
    scatters = [within_scatter_matrix(f, y, 4) for f, y in zip(features, labels)]
    assert torch.equal(choice.metric, whitening(sum(s for s, _ in scatters), sum(n for _, n in scatters), choice.shrinkage))


def test_choose_metric_keeps_euclidean_for_one_source_language():
    features, labels = _languages(noisy=6.0, langs=1)
    choice = choose_metric(features, labels, 4, prior="per_language", within="support", centre="shrunk")
    assert choice.shrinkage == 1.0 and torch.equal(choice.metric, torch.eye(12)) and choice.scores == {}


def test_fold_reads_the_sources_in_their_metric_and_the_folder_keeps_it(tmp_path, tiny_encoder_dir):
    model = _trained_like(tiny_encoder_dir, prototype_metric="sources")
    tasks = _tasks(("aa", "bb", "cc"), per_class=6)
    fold = fold_source_prototypes(model, tasks, per_class=100)
    mix = model.prototype_mix
    assert fold.metric is not None and model.config.prototype_metric_shrinkage == fold.metric.shrinkage
    assert torch.equal(mix.metric, fold.metric.metric)
    # closed form: the prototype head of the whitened source rows, mapped back to the raw features
    theta = {n: p.detach() for n, p in model.fast_parameters().items()}
    batches = [LabelledBatch.build(model, t.texts, t.labels, language=lang) for lang, t in sorted(tasks.items())]
    features = torch.cat([mix.features(model, theta, b) for b in batches])
    weight, _ = prototype_linear(features @ mix.metric, torch.cat([b.labels for b in batches]), model.config.num_labels)
    assert torch.allclose(mix.source_weight, 0.7 * weight @ mix.metric, atol=1e-4)
    texts = tasks["aa"].texts[:6]
    model.save_pretrained(tmp_path / "m")
    loaded = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    assert loaded.config.prototype_metric_shrinkage == fold.metric.shrinkage
    assert torch.equal(loaded.prototype_mix.metric, mix.metric)
    assert torch.equal(loaded.predict_proba(texts, lang="meta"), model.predict_proba(texts, lang="meta"))


def test_euclidean_setting_and_older_folders_keep_the_identity(tiny_encoder_dir):
    model = _trained_like(tiny_encoder_dir)  # the config's default: folders written before the metric
    assert model.config.prototype_metric == "euclidean"
    fold = fold_source_prototypes(model, _tasks(("aa", "bb", "cc"), per_class=6), per_class=100)
    assert fold.metric is None and torch.equal(model.prototype_mix.metric, torch.eye(model.prototype_mix.metric.shape[0]))
    assert model.config.prototype_metric_shrinkage == 1.0


def test_metric_changes_what_the_support_head_predicts():
    """Same support, same queries: the Euclidean and the Mahalanobis head disagree where the noisy features mislead."""
    features, labels = _languages(noisy=6.0, langs=2)
    euclidean, mahalanobis = PrototypeMix(4, 12, meta_head=False), PrototypeMix(4, 12, meta_head=False)
    scatter, dof = within_scatter_matrix(features[0], labels[0], 4)
    mahalanobis.metric.copy_(whitening(scatter, dof, 0.5))
    support = torch.arange(8)  # two rows of each class (labels repeat every 4 rows)
    query, gold = features[1], labels[1]
    accuracy = {}
    for name, mix in (("euclidean", euclidean), ("mahalanobis", mahalanobis)):
        weight, bias = mix.support_linear(features[0][support], labels[0][support])
        accuracy[name] = float(((query @ weight.T + bias).argmax(-1) == gold).float().mean())
    assert accuracy["mahalanobis"] > accuracy["euclidean"] + 0.1, accuracy


def test_choose_metric_scores_held_out_languages_on_the_rows_given_for_them():
    """The fold's own rows given as the held-out rows reproduce the default scores; other rows (a language's dev
    rows) change them; None falls back to the fold's rows for that language."""
    features, labels = _languages(noisy=6.0, langs=4)
    kwargs = {"prior": "per_language", "within": "support", "centre": "shrunk"}
    default = choose_metric(features, labels, 4, **kwargs)
    same = choose_metric(features, labels, 4, held_out=list(zip(features, labels)), **kwargs)
    assert same.scores == default.scores
    assert choose_metric(features, labels, 4, held_out=[None] * 4, **kwargs).scores == default.scores
    other, other_labels = _languages(noisy=1.0, langs=4)
    dev = choose_metric(features, labels, 4, held_out=list(zip(other, other_labels)), **kwargs)
    assert dev.scores != default.scores
    scatters = [within_scatter_matrix(f, y, 4) for f, y in zip(features, labels)]  # the metric is the fold rows'
    assert torch.equal(dev.metric, whitening(sum(s for s, _ in scatters), sum(n for _, n in scatters), dev.shrinkage))


def test_fold_scores_the_metric_on_the_sources_dev_rows_where_it_has_them(tiny_encoder_dir, monkeypatch):
    from xmeta.meta import source_prototypes

    tasks, dev = _tasks(("aa", "bb", "cc"), per_class=6), _tasks(("aa", "bb"), per_class=4)
    given = []
    chosen = source_prototypes.choose_metric
    monkeypatch.setattr(source_prototypes, "choose_metric",
                        lambda *args, **kwargs: given.append(kwargs["held_out"]) or chosen(*args, **kwargs))
    model = _trained_like(tiny_encoder_dir, prototype_metric="sources", prototype_metric_selection="dev")
    fold_source_prototypes(model, tasks, per_class=2, dev_tasks=dev)
    rows = [None if d is None else len(d[1]) for d in given[-1]]
    assert rows == [4 * model.config.num_labels, 4 * model.config.num_labels, None]  # cc has no dev rows: its fold rows
    model.config.prototype_metric_selection = "fold"  # folders written before the setting
    fold_source_prototypes(model, tasks, per_class=2, dev_tasks=dev)
    assert given[-1] == [None, None, None]
