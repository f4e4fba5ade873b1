"""XMetaForSequenceClassification: adapters, save/load, pickle refusal, export to plain transformers."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from tests.conftest import TOY_WORDS, toy_rows
from xmeta import XMetaForSequenceClassification
from xmeta.errors import ArgumentError, DataError, ModelFolderError

TEXTS = ["cat dog", "rice soup tea", "train road", "owl xyz"]


def _adapted(model, lang: str = "yo"):
    rows = toy_rows(lang, 3, 0)
    model.adapt([(r["text"], r["label"]) for r in rows], lang=lang, steps=3, lr=0.5)
    return model


def test_forward_and_labels(tiny_model):
    probs = tiny_model.predict_proba(TEXTS)
    assert probs.shape == (4, 3)
    assert torch.allclose(probs.sum(-1), torch.ones(4))
    assert set(tiny_model.predict(TEXTS)) <= set(TOY_WORDS)


def test_only_lora_and_head_train(tiny_model):
    names = list(tiny_model.fast_parameters())
    assert names and all(".meta." in n and ("lora_" in n or "modules_to_save" in n) for n in names)
    encoder = tiny_model.peft.base_model.model.encoder
    assert not any(p.requires_grad for n, p in encoder.named_parameters() if "lora_" not in n)


def test_adapt_makes_a_separate_language_adapter(tiny_model):
    theta = {n: p.clone() for n, p in tiny_model.adapter_state("meta").items()}
    _adapted(tiny_model)
    assert tiny_model.languages() == ["yo"]
    assert all(torch.equal(theta[n], p) for n, p in tiny_model.adapter_state("meta").items())
    assert not torch.allclose(tiny_model.predict_proba(TEXTS, lang="yo"), tiny_model.predict_proba(TEXTS, lang="meta"))


def test_adapt_rejects_unknown_label(tiny_model):
    with pytest.raises(DataError, match="'weather'"):
        tiny_model.adapt([("cat", "weather")], lang="yo")
    with pytest.raises(ArgumentError, match="meta"):
        tiny_model.adapt([("cat", "animal")], lang="meta")


def test_save_load_round_trip(tiny_model, tmp_path):
    _adapted(tiny_model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny_model.save_pretrained(tmp_path / "m")
    assert not [w for w in caught if "remote" in str(w.message) or "fetch" in str(w.message)], "save must stay offline"
    files = {p.relative_to(tmp_path / "m").as_posix() for p in (tmp_path / "m").rglob("*") if p.is_file()}
    assert {"config.json", "model.safetensors", "README.md", "adapters/yo/adapter_model.safetensors",
            "adapters/yo/adapter_config.json"} <= files
    loaded = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    for lang in ("meta", "yo"):
        assert torch.equal(loaded.predict_proba(TEXTS, lang=lang), tiny_model.predict_proba(TEXTS, lang=lang))
    auto = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m")
    assert isinstance(auto, XMetaForSequenceClassification)
    assert "yo" in (tmp_path / "m" / "README.md").read_text()


def test_run_records_go_to_trainer_state_and_older_folders_still_load(tiny_model, tmp_path):
    from xmeta.trainer_state import TrainerState

    tiny_model.trainer_state.dev = {"episode_accuracy": 0.5, "best_step": 3}
    tiny_model.trainer_state.language_scores["yo"] = {"macro_f1": 0.4}
    tiny_model.save_pretrained(tmp_path / "m")
    assert "scores" not in json.loads((tmp_path / "m" / "config.json").read_text())  # architecture only
    assert XMetaForSequenceClassification.from_pretrained(tmp_path / "m").trainer_state == tiny_model.trainer_state
    assert "| yo | macro_f1 | 0.4 |" in (tmp_path / "m" / "README.md").read_text()

    # a folder written before trainer_state.json kept the records in config.json's "scores"
    legacy = {"dev": {"episode_accuracy": 0.5, "best_step": 3}, "adapt_steps": {"0": 0.6, "3": 0.55},
              "warm_start": {"kind": "joint", "example_passes": 96}, "yo": {"macro_f1": 0.4}}
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "scores": legacy}))
    (tmp_path / "m" / "trainer_state.json").unlink()
    old = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    assert old.trainer_state == TrainerState(dev=legacy["dev"], adapt_steps=legacy["adapt_steps"],
                                             warm_start=legacy["warm_start"], language_scores={"yo": {"macro_f1": 0.4}})
    old.save_pretrained(tmp_path / "again")
    assert "scores" not in json.loads((tmp_path / "again" / "config.json").read_text())
    assert json.loads((tmp_path / "again" / "trainer_state.json").read_text())["adapt_steps"] == legacy["adapt_steps"]

    (tmp_path / "again" / "trainer_state.json").write_text("{not json")
    with pytest.raises(ModelFolderError, match="trainer_state.json: corrupt trainer state"):
        XMetaForSequenceClassification.from_pretrained(tmp_path / "again")


def test_pickle_weights_are_refused(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(ModelFolderError, match="pytorch_model.bin: pickle weights are refused"):
        XMetaForSequenceClassification.from_pretrained(tmp_path / "m")


def test_newer_or_corrupt_folders_are_refused(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "xmeta_version": "99.0.0"}))
    with pytest.raises(ModelFolderError, match="99.0.0"):
        XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelFolderError, match="corrupt safetensors"):
        XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    with pytest.raises(ModelFolderError, match="does not exist"):
        XMetaForSequenceClassification.from_pretrained(tmp_path / "nowhere")


def test_save_refuses_existing_folder_without_overwrite(tiny_model, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep.txt").write_text("mine")
    with pytest.raises(ArgumentError, match="exists"):
        tiny_model.save_pretrained(tmp_path / "m", overwrite=False)
    assert (tmp_path / "m" / "keep.txt").read_text() == "mine"


def test_export_merged_loads_in_plain_transformers_with_equal_logits(tiny_model, tmp_path):
    _adapted(tiny_model)
    tiny_model.export_merged(tmp_path / "plain", lang="yo")
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "plain").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "plain")
    expected = torch.log(tiny_model.predict_proba(TEXTS, lang="yo"))
    for i, text in enumerate(TEXTS):
        with torch.no_grad():
            logits = plain(**tok(text, return_tensors="pt")).logits
        assert torch.allclose(logits.log_softmax(-1)[0], expected[i], atol=1e-5)
    clf = pipeline("text-classification", model=plain, tokenizer=tok)
    assert [r["label"] for r in clf(TEXTS)] == tiny_model.predict(TEXTS, lang="yo")


def test_lora_in_top_layers_only_and_cached_lower_layers_are_exact(tiny_encoder_dir):
    torch.manual_seed(0)
    model = XMetaForSequenceClassification.for_labels(list(TOY_WORDS), encoder=str(tiny_encoder_dir), lora_r=4,
                                                      lora_layers=1, classifier_dropout=0.0)
    assert model.frozen_layers == 1
    assert all(".layer.1." in n for n in model.fast_parameters() if "lora_" in n)
    with torch.no_grad():
        for p in model.fast_parameters().values():
            p.normal_(std=0.1)  # LoRA B starts at 0; make the adapted layer matter
        full = model(**model.encode(TEXTS)).logits
        cached_inputs = model.prepare_for_repeated_passes(model.encode(TEXTS))
        assert set(cached_inputs) == {"lower_hidden", "attention_mask", "lower_layers"}
        cached = model(**cached_inputs).logits
    assert (full - cached).abs().max().item() < 1e-5
    model.config.cache_frozen_layers = False
    assert "input_ids" in model.prepare_for_repeated_passes(model.encode(TEXTS))


def test_fresh_adapters_start_as_the_plain_encoder(tiny_model):
    """LoRA B starts at zero (transformers' weight init must not reach peft's layers)."""
    lora_b = [p for n, p in tiny_model.fast_parameters().items() if "lora_B" in n]
    assert lora_b and all(torch.count_nonzero(p) == 0 for p in lora_b)


def test_lora_settings_are_one_nested_peft_config_and_flat_folders_still_load(tiny_encoder_dir, tmp_path):
    from peft import LoraConfig

    torch.manual_seed(0)
    model = XMetaForSequenceClassification.for_labels(list(TOY_WORDS), encoder=str(tiny_encoder_dir), lora_layers=1,
                                                      lora=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1))
    lora, depth = model.config.lora, model.peft.base_model.model.encoder.config.num_hidden_layers
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.layers_to_transform) == (4, 8, 0.1, [depth - 1])
    assert lora.target_modules and lora.modules_to_save == ["classifier"]  # completed by the model, once
    assert model.peft.peft_config["meta"] == lora and model.peft.peft_config["meta"] is not lora  # θ's adapter: a copy
    model.save_pretrained(tmp_path / "m")
    raw = json.loads((tmp_path / "m" / "config.json").read_text())
    assert raw["lora"]["r"] == 4 and raw["lora"]["layers_to_transform"] == [depth - 1]
    assert not {"lora_r", "lora_alpha", "lora_dropout", "lora_target_modules"} & set(raw)
    assert XMetaForSequenceClassification.from_pretrained(tmp_path / "m").config.lora == lora

    # a folder written before the nested config: flat lora_* fields
    flat = {key: value for key, value in raw.items() if key != "lora"}
    flat.update(lora_r=4, lora_alpha=8, lora_dropout=0.1, lora_target_modules=sorted(raw["lora"]["target_modules"]))
    (tmp_path / "m" / "config.json").write_text(json.dumps(flat))
    old = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    assert old.config.lora == lora
    assert torch.equal(old.predict_proba(TEXTS), model.predict_proba(TEXTS))
