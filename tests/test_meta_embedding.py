"""Meta-embedding: identity at init, gates, deterministic hashing, <unk> spans, meta-gradient, save/load, export,
and the per-language target view (unigram pieces of the language's own text, adapted with its adapter)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.conftest import TOY_WORDS, toy_rows
from tests.test_cli import run_error
from xmeta import XMetaForSequenceClassification
from xmeta.errors import ModelFolderError
from xmeta.meta import FirstOrderMAML, InnerLoop, LabelledBatch
from xmeta.meta.trainer import MetaTrainer, MetaTrainingArguments
from xmeta.modeling.meta_embedding import bucket
from xmeta.modeling.target_view import attach_target_view, train_unigram

UNK_TEXTS = ["cat ᎠᎪᏪᎳ dog", "rice ᏔᎵᎭ", "ᏇᏂᎩ train road"]  # Cherokee: <unk> for the toy vocabulary
TEXTS = ["cat dog", "rice soup tea", "train road", "owl xyz"] + UNK_TEXTS


def _model(tiny_encoder_dir, on: bool = True, **kwargs):
    torch.manual_seed(0)
    return XMetaForSequenceClassification.for_labels(
        list(TOY_WORDS), encoder=str(tiny_encoder_dir), lora_r=4, max_length=32, classifier_dropout=0.0,
        meta_embedding=on, meta_embedding_buckets=512, meta_embedding_dim=8, **kwargs)


def _trained(model):
    """Non-trivial projection and gates, as after meta-training."""
    layer = model.peft.base_model.model.meta_embedding
    with torch.no_grad():
        layer.ngram_projection.weight.normal_(std=0.5)
        layer.gate_weight.normal_(std=0.5)
        layer.gate_bias.copy_(torch.tensor([0.0, 0.5]))
    return model


@pytest.fixture
def model(tiny_encoder_dir):
    return _model(tiny_encoder_dir)


def test_output_equals_pretrained_embedding_at_init(tiny_encoder_dir, model):
    off = _model(tiny_encoder_dir, on=False)
    assert torch.equal(model.predict_proba(TEXTS), off.predict_proba(TEXTS))
    assert not torch.equal(_trained(model).predict_proba(TEXTS), off.predict_proba(TEXTS))  # the layer is live


def test_gates_are_a_distribution(model):
    layer = _trained(model).peft.base_model.model.meta_embedding
    inputs = model.encode(UNK_TEXTS)
    subword = model.peft.base_model.model.encoder.get_input_embeddings()(inputs["input_ids"])
    alpha, _ = layer.gates(subword, inputs["char_ngrams"])
    assert alpha.shape == (*inputs["input_ids"].shape, 2)
    assert (alpha >= 0).all() and torch.allclose(alpha.sum(-1), torch.ones(alpha.shape[:-1]))


def test_hashing_is_the_same_in_another_process():
    grams = ["<ᎠᎪᏪ", "cat", "ẹja>", "@Ꭰ"]
    code = ("import json, sys; from xmeta.modeling.meta_embedding import bucket; "
            f"print(json.dumps([bucket(g, 32768) for g in {grams!r}]))")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert json.loads(child.stdout) == [bucket(g, 32768) for g in grams]


def test_unk_spans_get_a_character_view(model):
    inputs = model.encode(UNK_TEXTS)
    unk = inputs["input_ids"] == model.tokenizer.unk_token_id
    assert unk.any()
    assert (inputs["char_ngrams"][unk] > 0).any(-1).all(), "every <unk> token needs n-grams of its characters"
    bag = model.peft.base_model.model.meta_embedding.bag(inputs["char_ngrams"])
    assert (bag[unk].norm(dim=-1) > 0).all()
    # different Cherokee words behind the same <unk> id get different vectors once the layer is trained
    _trained(model)
    vectors = model.peft.base_model.model.word_vectors(inputs["input_ids"], inputs["char_ngrams"])[unk]
    assert torch.cdist(vectors, vectors).triu(1).max() > 0


def test_meta_gradient_reaches_the_layer_while_lower_layers_stay_cached(tiny_encoder_dir):
    model = _model(tiny_encoder_dir, lora_layers=1)
    _trained(model)
    fast = model.fast_parameters()
    assert fast and not any("meta_embedding" in n for n in fast)
    assert model.frozen_layers == 1
    def batch(seed):
        rows = toy_rows("chr", 2, seed)
        texts = [r["text"] + " ᎠᎪᏪᎳ" for r in rows]
        return LabelledBatch.build(model, texts, [model.config.label2id[r["label"]] for r in rows], chunk_size=4)
    FirstOrderMAML(model, InnerLoop(lr=0.1, steps=2)).meta_gradient([("chr", batch(0), batch(1))])
    layer = model.peft.base_model.model.meta_embedding
    assert layer.ngram_projection.weight.grad is not None and layer.ngram_projection.weight.grad.abs().sum() > 0
    assert layer.ngrams.weight.grad.abs().sum() > 0


def test_adaptation_leaves_the_shared_layer_alone(model):
    _trained(model)
    before = {k: v.clone() for k, v in model.peft.base_model.model.meta_embedding.state_dict().items()}
    rows = toy_rows("chr", 2, 0)
    model.adapt([(r["text"], r["label"]) for r in rows], lang="chr", steps=2, lr=0.5)
    after = model.peft.base_model.model.meta_embedding.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_save_load_round_trip(model, tmp_path):
    _trained(model)
    rows = toy_rows("chr", 2, 0)
    model.adapt([(r["text"], r["label"]) for r in rows], lang="chr", steps=2, lr=0.5)
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "meta_embedding.safetensors").is_file()
    loaded = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    for lang in ("meta", "chr"):
        assert torch.equal(loaded.predict_proba(TEXTS, lang=lang), model.predict_proba(TEXTS, lang=lang))
    (tmp_path / "m" / "meta_embedding.safetensors").unlink()
    with pytest.raises(ModelFolderError, match="meta_embedding.safetensors: missing weights file"):
        XMetaForSequenceClassification.from_pretrained(tmp_path / "m")


def test_export_precomputes_the_layer_and_keeps_pretrained_unk_row(model, tmp_path):
    _trained(model)
    model.export_merged(tmp_path / "plain")
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "plain").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "plain")
    for text in TEXTS[:4]:  # known pieces only: exact
        with torch.no_grad():
            exported, ours = plain(**tok(text, return_tensors="pt")).logits, model(**model.encode([text])).logits
        assert torch.allclose(exported, ours, atol=1e-5)
    unk = model.tokenizer.unk_token_id
    pretrained = model.peft.base_model.model.encoder.get_input_embeddings().weight[unk]
    assert torch.equal(plain.transformer.embeddings.weight[unk], pretrained)


def test_coverage_command_recommends_the_layer(tiny_encoder_dir, tmp_path, capsys):
    from xmeta.cli import main

    texts = tmp_path / "chr.txt"
    texts.write_text("\n".join(UNK_TEXTS) + "\n", encoding="utf-8")
    assert main(["coverage", "--file", str(texts), "--lang", "chr", "--encoder", str(tiny_encoder_dir)]) == 0
    out = capsys.readouterr().out
    assert "| chr |" in out and "recommended" in out and "--meta_embedding on" in out
    assert main(["coverage", "--file", str(tmp_path / "missing.txt")]) == 2


CHEROKEE_TEXT = ["ᎠᎪᏪᎳᏅᎢ ᏔᎵᎭ ᏍᏓᏱ", "ᎤᏃᏴᎩ ᎤᏙᏪᎸ ᎠᎵᏱᏛᎢ", "ᎪᏪᎸ ᏇᏂᎩ ᎠᎪᏪᎳ"]


def _shots(lang: str = "chr") -> list[tuple[str, str]]:
    return [(r["text"] + " ᎠᎪᏪᎳ", r["label"]) for r in toy_rows(lang, 2, 0)]


def _view(model, lang: str = "chr"):
    return model.peft.base_model.model.meta_embedding.target(lang)


def test_target_view_keeps_the_output_at_init(model):
    _trained(model)
    model.start_language("chr")
    before = model.predict_proba(TEXTS)
    attach_target_view(model, "chr", CHEROKEE_TEXT)
    # equal up to float rounding: the mix sums one more (zero) view, in another order (3e-8 seen)
    torch.testing.assert_close(model.predict_proba(TEXTS), before, rtol=0, atol=1e-6)


def test_unigram_model_is_deterministic():
    first, second = train_unigram(CHEROKEE_TEXT * 3, 200), train_unigram(CHEROKEE_TEXT * 3, 200)
    assert first == second and len(first) > 0
    assert train_unigram(CHEROKEE_TEXT[:1], 200) != first


def test_unk_spans_get_target_pieces(model):
    model.start_language("chr")
    view = attach_target_view(model, "chr", CHEROKEE_TEXT)
    inputs = model.encode(UNK_TEXTS)
    unk = inputs["input_ids"] == model.tokenizer.unk_token_id
    pieces = (-inputs["char_ngrams"]).clamp(min=0)  # the target view's ids ride along negated
    assert unk.any() and (pieces[unk] > 0).any(-1).all(), "every <unk> token needs target pieces"
    with torch.no_grad():
        view.projection.weight.normal_()
    subword = model.peft.base_model.model.encoder.get_input_embeddings()(inputs["input_ids"])
    assert (view(subword, pieces)[unk].norm(dim=-1) > 0).all()


def test_adapt_option_trains_only_the_language_view(model):
    _trained(model)
    shared = {k: v.clone() for k, v in model.peft.base_model.model.meta_embedding.state_dict().items()}
    model.adapt(_shots(), lang="chr", steps=2, lr=0.5)
    assert _view(model) is None
    assert not any("meta_embedding" in n for n in model.fast_parameters())
    model.adapt(_shots(), lang="chr", steps=2, lr=0.5, train_meta_embedding=True, target_text=CHEROKEE_TEXT)
    view = _view(model)
    assert view.projection.weight.abs().sum() > 0 and view.gate_weight.abs().sum() > 0
    assert any(".meta_embedding.targets.chr." in n for n in model.fast_parameters())
    after = model.peft.base_model.model.meta_embedding.state_dict()
    assert all(torch.equal(shared[k], after[k]) for k in shared), "the shared layer is θ's, not the language's"
    model.drop_language("chr")
    assert _view(model) is None


def test_save_load_round_trip_with_a_target_view(model, tmp_path):
    _trained(model)
    model.adapt(_shots(), lang="chr", steps=2, lr=0.5, train_meta_embedding=True, target_text=CHEROKEE_TEXT)
    model.save_pretrained(tmp_path / "m")
    folder = tmp_path / "m" / "meta_embedding" / "chr"
    assert (folder / "spm.model").read_bytes() == _view(model).proto
    loaded = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    for lang in ("meta", "chr"):
        assert torch.equal(loaded.predict_proba(TEXTS, lang=lang), model.predict_proba(TEXTS, lang=lang))
    (folder / "spm.model").write_bytes(b"not a model")
    with pytest.raises(ModelFolderError, match="spm.model: not a sentencepiece model"):
        XMetaForSequenceClassification.from_pretrained(tmp_path / "m")


def test_export_precomputes_the_target_view(model, tmp_path):
    _trained(model)
    model.adapt(_shots(), lang="chr", steps=2, lr=0.5, train_meta_embedding=True, target_text=["cat dog rice soup"])
    with torch.no_grad():
        _view(model).projection.weight.normal_(std=0.5)  # a view that visibly moves the logits
    model.export_merged(tmp_path / "plain", lang="chr")
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "plain").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "plain")
    for text in TEXTS[:4]:  # known pieces: exact, target view included
        with torch.no_grad():
            exported, ours = plain(**tok(text, return_tensors="pt")).logits, model(**model.encode([text])).logits
        assert torch.allclose(exported, ours, atol=1e-5)


def test_outer_loop_gives_the_layer_its_own_rate(model):
    args = MetaTrainingArguments(steps=1, meta_embedding_lr=0.02)
    trainer = MetaTrainer(model, None, args)
    layer = {id(p) for p in model.peft.base_model.model.meta_embedding.parameters()}
    groups = trainer.optimizer.param_groups
    assert [g["lr"] for g in groups] == [args.outer_lr, 0.02]
    assert {id(p) for p in groups[1]["params"]} == layer


def test_adapt_command_reads_target_text(model, tmp_path, toy_jsonl, capsys):
    from xmeta.cli import main

    model.save_pretrained(tmp_path / "m")
    few = toy_jsonl(["chr"], per_class=2, seed=1, name="chr_few.jsonl")
    text = tmp_path / "chr.txt"
    text.write_text("\n".join(CHEROKEE_TEXT) + "\n", encoding="utf-8")
    argv = ["adapt", "--model", str(tmp_path / "m"), "--lang", "chr", "--train", str(few), "--steps", "2",
            "--meta_embedding_adapt"]
    assert main(argv + ["--target_text", str(text), "--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "meta_embedding" / "chr" / "spm.model").is_file()
    missing = tmp_path / "missing.txt"
    assert f"{missing}: file not found" in run_error(capsys, argv + ["--target_text", str(missing), "--out", str(tmp_path / "b")])
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    assert "not UTF-8" in run_error(capsys, argv + ["--target_text", str(tmp_path / "latin1.txt"), "--out", str(tmp_path / "c")])
