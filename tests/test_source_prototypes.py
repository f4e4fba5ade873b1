"""Source prototypes for zero-shot prediction: θ's head + s·P_src, adaptation still from θ_head + s·P_support."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.conftest import TOY_WORDS, toy_rows
from tests.test_prototype_head import _batch, _head, _model
from xmeta import XMetaForSequenceClassification
from xmeta.data import LabelMap, LanguageTask
from xmeta.errors import ArgumentError, DataError
from xmeta.meta import FirstOrderMAML, InnerLoop, LabelledBatch
from xmeta.meta.source_prior import prior_rows
from xmeta.meta.source_prototypes import fold_source_prototypes, stratified_rows
from xmeta.modeling.prototype_head import (
    MAX_PRIOR_ROWS, SOURCE_KEYS, PrototypeMix, class_means, is_head_tensor, prototype_linear, support_variance,
)

TEXTS = ["cat dog", "bus train", "bread soup"]


def _tasks(langs: tuple[str, ...] = ("aa", "bb"), per_class: int = 3) -> dict[str, LanguageTask]:
    label_map = LabelMap(tuple(TOY_WORDS))
    out = {}
    for lang in langs:
        rows = toy_rows(lang, per_class, 0)
        out[lang] = LanguageTask(lang, [r["text"] for r in rows], label_map.encode([r["label"] for r in rows], lang), label_map)
    return out


def _trained_like(tiny_encoder_dir, **config: object) -> XMetaForSequenceClassification:
    """A prototype-head model whose θ (LoRA B, head) and scale are not at their initial values."""
    model = _model(tiny_encoder_dir, prototype_head=True, **config)
    with torch.no_grad():
        for name, p in model.fast_parameters().items():
            if "lora_B" in name or "classifier" in name:
                p.normal_(std=0.3)
        model.prototype_mix.log_scale.fill_(math.log(0.7))
    model.eval()
    return model


def test_stratified_rows_take_each_class_equally_and_reproducibly():
    labels = [0] * 10 + [1] * 2 + [2] * 5
    rows = stratified_rows(labels, 4, per_class=3, seed=1)
    assert sorted(labels[r] for r in rows) == [0, 0, 0, 1, 1, 2, 2, 2]  # class 3 absent, class 1 has only 2
    assert rows == stratified_rows(labels, 4, per_class=3, seed=1) != stratified_rows(labels, 4, per_class=3, seed=2)
    assert len(stratified_rows([[0, 1], [1], [2, 2], [0]], 2, per_class=1, seed=0)) == 2  # tagging: sentences


def test_zero_shot_head_is_theta_head_plus_scaled_source_prototypes(tiny_encoder_dir):
    model = _trained_like(tiny_encoder_dir)
    theta = {n: p.detach().clone() for n, p in model.fast_parameters().items()}
    tasks = _tasks()
    fold = fold_source_prototypes(model, tasks, per_class=100)  # more than there are: every row
    assert set(fold.language_means) == set(tasks)
    assert fold.rows == sum(len(t) for t in tasks.values())
    # closed form: each class's mean feature under θ, pooled over the source languages
    batches = [LabelledBatch.build(model, t.texts, t.labels, language=lang) for lang, t in tasks.items()]
    features = torch.cat([model.prototype_mix.features(model, theta, b) for b in batches])
    labels = torch.cat([b.labels for b in batches])
    means = torch.stack([features[labels == c].mean(0) for c in range(model.config.num_labels)])
    centre = means.mean(0)
    s = 0.7
    weight, bias = 2 * s * (means - centre), -s * ((means - centre) ** 2).sum(1) - 2 * s * (means - centre) @ centre
    bias_0, weight_0 = _head(theta)
    bias_1, weight_1 = _head(model.fast_parameters())
    assert torch.allclose(weight_1, weight_0 + weight, atol=1e-5) and torch.allclose(bias_1, bias_0 + bias, atol=1e-5)
    assert torch.allclose(model.prototype_mix.source_weight, weight, atol=1e-5)
    # the prior of a language's centre: each language's centre (the mean of its class means), averaged
    centres = [torch.stack([f[b.labels == c].mean(0) for c in b.labels.unique()]).mean(0)
               for f, b in zip(features.split([len(b.labels) for b in batches]), batches)]
    assert torch.allclose(model.prototype_mix.source_centre, torch.stack(centres).mean(0), atol=1e-5)
    fold_source_prototypes(model, tasks, per_class=100)  # a second fold replaces the first
    assert torch.allclose(_head(model.fast_parameters())[1], weight_0 + weight, atol=1e-5)


def test_adaptation_starts_from_theta_head_plus_shrunk_support_prototypes(tiny_encoder_dir):
    model = _trained_like(tiny_encoder_dir)
    mix = model.prototype_mix
    support = _batch(model, "cc", 1, 0)
    before = {n: p.detach().clone() for n, p in model.fast_parameters().items()}
    started_before, _ = mix.start(model, before, support)
    fold_source_prototypes(model, _tasks(), per_class=2)
    tau = float(mix.prior_rows)
    assert tau > 0 and mix.source_means.abs().sum() > 0
    after = {n: p.detach() for n, p in model.fast_parameters().items()}
    assert not torch.allclose(_head(after)[1], _head(before)[1])  # θ's head moved for K=0 ...
    started_after, prototype = mix.start(model, after, support)
    for name, value in started_before.items():  # ... the encoder's start did not
        if "classifier" not in name:
            assert torch.equal(started_after[name], value), name
    # closed form: θ_head (unfolded) + s·(head of the support means shrunk toward the source means)
    features = mix.features(model, after, support)
    means = torch.stack([features[support.labels == c].mean(0) for c in range(model.config.num_labels)])
    centre = means.mean(0)
    shrunk = (tau * mix.source_means + (means - centre)) / (tau + 1)  # K=1: one row per class
    s = 0.7
    bias_0, weight_0 = _head(before)
    bias_1, weight_1 = _head(started_after)
    assert torch.allclose(weight_1, weight_0 + 2 * s * shrunk, atol=1e-4)
    assert torch.allclose(bias_1, bias_0 + s * (-(shrunk ** 2).sum(1) - 2 * shrunk @ centre), atol=1e-4)


def test_prior_weight_is_within_over_between_language_variance():
    """Simulated sources: class means scatter by b across languages, rows by w around them: τ ≈ w/b."""
    gen = torch.Generator().manual_seed(0)
    classes, dims, langs, rows, w, b = 4, 64, 30, 40, 0.5, 0.05
    pooled = torch.randn(classes, dims, generator=gen)
    features, labels = [], []
    for _ in range(langs):
        means = pooled + b ** 0.5 * torch.randn(classes, dims, generator=gen) + torch.randn(dims, generator=gen)
        y = torch.arange(classes).repeat(rows)
        features.append(means[y] + w ** 0.5 * torch.randn(len(y), dims, generator=gen))
        labels.append(y)
    estimate = prior_rows(features, labels, classes)
    prior, tau = estimate.means, estimate.rows
    assert tau == pytest.approx(w / b, rel=0.15)
    assert torch.allclose(prior, pooled - pooled.mean(0), atol=0.15)  # each language's own offset is taken out


def test_a_class_missing_from_the_support_starts_from_its_source_prototype(tiny_encoder_dir):
    model = _trained_like(tiny_encoder_dir)
    mix = model.prototype_mix
    fold_source_prototypes(model, _tasks(), per_class=2)
    support = _batch(model, "cc", 1, 0)
    keep = support.labels != 2
    features = mix.features(model, {n: p.detach() for n, p in model.fast_parameters().items()}, support)
    weight, _ = mix.support_linear(features[keep], support.labels[keep])
    tau = float(mix.prior_rows)
    assert torch.allclose(weight[2], 2 * mix.source_means[2], atol=1e-5)
    assert not torch.allclose(weight[0], 2 * mix.source_means[0]) and tau > 0


def test_folded_model_saves_loads_and_exports_its_zero_shot_head(tiny_encoder_dir, tmp_path):
    model = _trained_like(tiny_encoder_dir)
    unfolded = model.predict_proba(TEXTS, lang="meta")
    fold_source_prototypes(model, _tasks(), per_class=2)
    zero_shot = model.predict_proba(TEXTS, lang="meta")
    assert not torch.allclose(zero_shot, unfolded)
    model.save_pretrained(tmp_path / "m")
    loaded = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    assert torch.equal(loaded.prototype_mix.source_weight, model.prototype_mix.source_weight)
    assert torch.equal(loaded.prototype_mix.source_bias, model.prototype_mix.source_bias)
    assert torch.equal(loaded.predict_proba(TEXTS, lang="meta"), zero_shot)
    loaded.export_merged(tmp_path / "plain", lang="meta")
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "plain").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "plain")
    with torch.no_grad():
        got = torch.cat([plain(**tok(t, return_tensors="pt")).logits.log_softmax(-1) for t in TEXTS])
    assert torch.allclose(got, zero_shot.log(), atol=1e-5)
    # a folder written before the fold existed (no offset tensors) loads with a zero offset
    state = load_file(tmp_path / "m" / "model.safetensors")
    old = {k: v for k, v in state.items() if not k.endswith(SOURCE_KEYS)}
    assert len(old) == len(state) - len(SOURCE_KEYS)  # source_weight/_bias/_means, prior_rows, within_variance
    save_file(old, tmp_path / "m" / "model.safetensors", metadata={"format": "pt"})
    older = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    assert not older.prototype_mix.source_weight.any() and not older.prototype_mix.source_bias.any()
    assert float(older.prototype_mix.prior_rows) == 0  # no prior: the support's prototypes alone


def test_fold_needs_a_prototype_head(tiny_encoder_dir):
    with pytest.raises(ArgumentError, match="--prototype_head"):
        fold_source_prototypes(_model(tiny_encoder_dir), _tasks())


def test_meta_train_ends_with_the_fold(tmp_path, tiny_encoder_dir, toy_jsonl):
    from xmeta.cli import main

    train = toy_jsonl(["aa", "bb", "cc"], per_class=8, name="train.jsonl")
    assert main(["meta-train", "--train_file", str(train), "--encoder", str(tiny_encoder_dir), "--out", str(tmp_path / "m"),
                 "--steps", "1", "--meta_batch", "2", "--k_shot", "2", "--k_query", "2", "--lora_r", "2",
                 "--prototype_head", "on", "--prototype_source_rows", "3"]) == 0
    model = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    mix = model.prototype_mix
    assert mix.source_weight.abs().sum() > 0 and mix.source_bias.abs().sum() > 0
    assert model.trainer_state.source_rows == 3 * model.config.num_labels * 3  # 3 rows per class and language
    assert model.config.prototype_source_rows == 3
    assert (mix.prior, mix.within, mix.centre) == ("per_language", "support", "shrunk")  # the defaults are saved
    assert mix.source_centre.abs().sum() > 0
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    del config["prototype_prior_within"]  # a folder saved before the setting: the sources' w, as it was measured
    del config["prototype_source_rows"]  # and before the flag: its fold read 8 rows per class and language
    del config["prototype_centre"]  # and before the centre's shrinkage: the support's own centre
    del config["prototype_metric_selection"]  # and before the dev rows scored the metric: the fold's rows
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    old = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    assert old.prototype_mix.within == "sources" and old.config.prototype_source_rows == 8
    assert old.prototype_mix.centre == "support" and old.config.prototype_metric_selection == "fold"


def test_per_language_prior_weight_is_within_over_the_languages_own_distance():
    """A simulated new language whose class means sit b from the source means (rows w around them):
    the per-language τ ≈ w/b from its K-shot support alone, K=1 included; the sources' τ is kept otherwise."""
    gen = torch.Generator().manual_seed(0)
    classes, dims, w = 8, 2048, 0.5
    source = torch.randn(classes, dims, generator=gen)
    source -= source.mean(0)
    mix = PrototypeMix(classes, dims, meta_head=False, prior="per_language")
    mix.source_means.copy_(source)
    mix.prior_rows.fill_(80.0)
    mix.within_variance.fill_(w)
    for b, k in ((0.05, 1), (0.05, 16), (0.5, 4)):
        means = source + b ** 0.5 * torch.randn(classes, dims, generator=gen)
        y = torch.arange(classes).repeat(k)
        centred, _, counts = class_means(means[y] + w ** 0.5 * torch.randn(len(y), dims, generator=gen), y, classes)
        assert mix.prior_weight(centred, counts) == pytest.approx(w / b, rel=0.25)
    mix.prior = "sources"
    assert mix.prior_weight(centred, counts) == 80.0
    mix.prior, mix.within_variance = "per_language", torch.zeros(())  # a folder folded before w was kept
    assert mix.prior_weight(centred, counts) == 80.0
    centred, _, counts = class_means(source[y], y, classes)  # a language exactly on the source means
    mix.within_variance.fill_(w)
    assert mix.prior_weight(centred, counts) == MAX_PRIOR_ROWS


def test_support_within_reads_the_languages_own_row_noise():
    """A language whose rows scatter half as much as the sources' (w_t = w/2): with the sources' w the
    per-language τ comes out far too large (its examples all but ignored); with ``within="support"`` it is
    w_t/b from the support; a K=1 support (no class with two rows) takes the sources' τ."""
    gen = torch.Generator().manual_seed(1)
    classes, dims, w, b = 8, 2048, 0.5, 0.05
    source = torch.randn(classes, dims, generator=gen)
    source -= source.mean(0)
    mixes = {within: PrototypeMix(classes, dims, meta_head=False, prior="per_language", within=within)
             for within in ("sources", "support")}
    for mix in mixes.values():
        mix.source_means.copy_(source)
        mix.prior_rows.fill_(80.0)
        mix.within_variance.fill_(w)
    means = source + b ** 0.5 * torch.randn(classes, dims, generator=gen)
    y = torch.arange(classes).repeat(4)
    rows = means[y] + (w / 2) ** 0.5 * torch.randn(len(y), dims, generator=gen)
    centred, centre, counts = class_means(rows, y, classes)
    own = support_variance(rows, y, centred, centre, counts)
    assert own == pytest.approx(w / 2, rel=0.05)
    assert mixes["support"].prior_weight(centred, counts, own) == pytest.approx(w / 2 / b, rel=0.25)
    assert mixes["sources"].prior_weight(centred, counts, own) > 3 * w / 2 / b
    single = torch.arange(classes)
    centred, centre, counts = class_means(rows[:classes], single, classes)
    assert support_variance(rows[:classes], single, centred, centre, counts) is None
    assert mixes["support"].prior_weight(centred, counts, None) == 80.0
    with pytest.raises(ValueError, match="within-class variance"):
        PrototypeMix(classes, dims, within="target")


def test_shrunk_centre_is_james_stein_toward_the_sources_centre():
    """A simulated language whose centre sits b_c per feature from the sources' m0, rows w around their class
    means: the support's centre is m0 + ρ·(centre − m0) with ρ = 1 − v/(‖centre − m0‖²/d), v = w·mean(1/n_c)/C;
    ρ ≈ b_c/(b_c + v), clipped at 0 for a language on m0, ≈ 1 for a far one, and nearer the true centre on average."""
    gen = torch.Generator().manual_seed(2)
    classes, dims, w = 8, 2048, 0.5
    mix = PrototypeMix(classes, dims, meta_head=False, prior="per_language", within="support", centre="shrunk")
    m0 = torch.randn(dims, generator=gen)
    mix.source_centre.copy_(m0)
    mix.within_variance.fill_(w)
    counts = torch.tensor([1.0] * 6 + [2.0, 0.0])  # class 7 absent: 7 present classes
    noise = w * float((1 / counts[:7]).mean()) / 7
    for b_c in (0.0, noise, 10 * noise):
        truth = m0 + b_c ** 0.5 * torch.randn(dims, generator=gen)
        centre = truth + noise ** 0.5 * torch.randn(dims, generator=gen)
        shrunk = mix.shrunk_centre(centre, counts, None)  # no row noise of its own: the sources' w
        keep = max(0.0, 1 - noise / float(((centre - m0) ** 2).mean()))
        assert torch.allclose(shrunk, m0 + keep * (centre - m0))
        assert keep == pytest.approx(b_c / (b_c + noise), abs=0.1)
        if b_c > 0:
            assert ((shrunk - truth) ** 2).mean() < ((centre - truth) ** 2).mean()
    assert torch.allclose(mix.shrunk_centre(centre, counts, 2 * w), m0 + max(0.0, 1 - 2 * noise / float(
        ((centre - m0) ** 2).mean())) * (centre - m0))  # the support's own w where it has one
    with pytest.raises(ValueError, match="prototype centre"):
        PrototypeMix(classes, dims, centre="text")


def test_shrunk_centre_recentres_the_support_after_the_fold_only(tiny_encoder_dir):
    """``centre="shrunk"``: after the fold the support's class means are centred on its shrunk centre (as on a
    text's centre) before the prior; before the fold (meta-training), and with ``"support"``, on its own mean."""
    model = _trained_like(tiny_encoder_dir, prototype_centre="shrunk")
    mix = model.prototype_mix
    theta = {n: p.detach().clone() for n, p in model.fast_parameters().items()}
    support = _batch(model, "cc", 1, 0)
    features = mix.features(model, theta, support)
    own = prototype_linear(features, support.labels, model.config.num_labels)
    assert all(torch.allclose(a, b) for a, b in zip(mix.support_linear(features, support.labels), own))  # no fold yet
    fold_source_prototypes(model, _tasks(), per_class=2)
    theta = {n: p.detach().clone() for n, p in model.fast_parameters().items()}
    features = mix.features(model, theta, support)
    centred, centre, counts = class_means(features, support.labels, model.config.num_labels)
    shrunk_centre = mix.shrunk_centre(centre, counts, None)
    assert not torch.allclose(shrunk_centre, centre)
    with mix.centred_on(shrunk_centre):
        mix.centre = "support"
        expected = mix.support_linear(features, support.labels)
        mix.centre = "shrunk"
    assert all(torch.allclose(a, b) for a, b in zip(mix.support_linear(features, support.labels), expected))
    mix.centre = "support"
    assert not torch.allclose(mix.support_linear(features, support.labels)[1], expected[1])
    mix.centre = "shrunk"
    text_centre = features.mean(0) + 1.0
    with mix.centred_on(text_centre):  # a text's centre wins over the shrunk one
        mix.centre = "support"
        by_text = mix.support_linear(features, support.labels)
        mix.centre = "shrunk"
        assert all(torch.allclose(a, b) for a, b in zip(mix.support_linear(features, support.labels), by_text))


def test_without_a_meta_head_the_head_is_the_prototypes_alone(tiny_encoder_dir):
    """Proto-MAML: the start replaces θ's head by s·P (θ's head takes no meta-gradient); the fold makes θ's
    head s·P_src exactly, so K=0 is the source prototypes alone."""
    model = _trained_like(tiny_encoder_dir, prototype_meta_head=False)
    mix = model.prototype_mix
    theta = {n: p.detach().clone() for n, p in model.fast_parameters().items()}
    support, query = _batch(model, "aa", 2, 0), _batch(model, "aa", 2, 1)
    started, prototype = mix.start(model, theta, support)
    bias, weight = _head(started)
    proto_bias, proto_weight = _head(prototype)
    assert torch.allclose(weight, 0.7 * proto_weight) and torch.allclose(bias, 0.7 * proto_bias)
    assert all(torch.equal(started[n], theta[n]) for n in theta if not is_head_tensor(n))
    model.train()
    FirstOrderMAML(model, InnerLoop(lr=0.1, steps=1)).meta_gradient([("aa", support, query)])
    params = model.fast_parameters()
    assert all(params[n].grad is None for n in params if is_head_tensor(n))
    assert any(params[n].grad is not None for n in params if not is_head_tensor(n))
    assert mix.log_scale.grad is not None
    model.eval()
    fold_source_prototypes(model, _tasks(), per_class=100)
    bias, weight = _head({n: p.detach() for n, p in model.fast_parameters().items()})
    assert torch.allclose(weight, mix.source_weight) and torch.allclose(bias, mix.source_bias)
    assert float(mix.within_variance) > 0


def _centre(model, texts: list[str], lang: str) -> torch.Tensor:
    """Closed form of a language's centre: the mean feature of its texts under θ."""
    batch = LabelledBatch.build(model, texts, [0] * len(texts), language=lang)
    return model.prototype_mix.features(model, {n: p.detach() for n, p in model.fast_parameters().items()}, batch).mean(0)


def test_unlabelled_text_centres_the_zero_shot_head_and_the_support(tiny_encoder_dir):
    model = _trained_like(tiny_encoder_dir)
    mix = model.prototype_mix
    fold_source_prototypes(model, _tasks(), per_class=2)
    texts = [r["text"] for r in toy_rows("cc", 3, 7)]
    centre = _centre(model, texts, "cc")
    theta = {n: p.detach().clone() for n, p in model.fast_parameters().items()}
    bias_0, weight_0 = _head(theta)
    s = 0.7
    # K=0: θ's head with s·(the source class means centred on the text) in place of the folded s·P_src
    result = model.adapt([], lang="cc", target_text=texts)
    assert result.steps == 0 and result.examples == 0
    model.use_language("cc")
    bias, weight = _head(model.fast_parameters())
    means = mix.source_means
    assert torch.allclose(weight, weight_0 - mix.source_weight + 2 * s * means, atol=1e-5)
    assert torch.allclose(bias, bias_0 - mix.source_bias + s * (-(means ** 2).sum(1) - 2 * means @ centre), atol=1e-5)
    assert mix.language_centre is None  # the centre belongs to that adaptation only
    # K=1: the support's class means re-centred on the text's centre, then shrunk (τ read from the support's own centring)
    support = _batch(model, "cc", 1, 0)
    with mix.centred_on(centre):
        started, _ = mix.start(model, theta, support)
    features = mix.features(model, theta, support)
    class_mean = torch.stack([features[support.labels == c].mean(0) for c in range(model.config.num_labels)])
    tau = float(mix.prior_rows)  # K=1: the sources' τ
    shrunk = (tau * means + (class_mean - centre)) / (tau + 1)
    bias_1, weight_1 = _head(started)
    assert torch.allclose(weight_1, weight_0 - mix.source_weight + 2 * s * shrunk, atol=1e-4)
    assert torch.allclose(bias_1, bias_0 - mix.source_bias + s * (-(shrunk ** 2).sum(1) - 2 * shrunk @ centre), atol=1e-4)
    uncentred, _ = mix.start(model, theta, support)
    assert not torch.allclose(_head(uncentred)[0], bias_1)


def test_unlabelled_text_needs_a_prototype_head_and_source_prototypes(tiny_encoder_dir):
    texts = [r["text"] for r in toy_rows("cc", 2, 7)]
    with pytest.raises(DataError, match="zero-shot needs --target_text"):
        _trained_like(tiny_encoder_dir).adapt([], lang="cc")
    with pytest.raises(ArgumentError, match="prototype head or by --meta_embedding_adapt"):
        _model(tiny_encoder_dir).adapt([("cat", "animal"), ("bus", "travel"), ("rice", "food")], lang="cc",
                                       target_text=texts)
    with pytest.raises(ArgumentError, match="source prototypes"):  # never folded: no source means to centre
        _trained_like(tiny_encoder_dir).adapt([], lang="cc", target_text=texts)
