"""The `xmeta` command end to end on a tiny encoder and toy files, and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xmeta import XMetaForSequenceClassification
from xmeta.cli import main


@pytest.fixture
def meta_model(tmp_path, tiny_encoder_dir, toy_jsonl):
    train = toy_jsonl(["aa", "bb", "cc"], per_class=8, name="train.jsonl")
    out = tmp_path / "meta"
    rc = main(["meta-train", "--train_file", str(train), "--encoder", str(tiny_encoder_dir), "--out", str(out),
               "--steps", "3", "--meta_batch", "2", "--k_shot", "2", "--k_query", "2", "--lora_r", "2"])
    assert rc == 0
    return out


@pytest.fixture
def yo_text(tmp_path):
    """Unlabelled text of the toy language yo, one text a line."""
    text = tmp_path / "yo.txt"
    text.write_text("cat dog yo\nbus yo\nrice soup yo\ntrain yo\n", encoding="utf-8")
    return text


def run_error(capsys, argv: list[str]) -> str:
    """Run a failing command; it must exit 2 with exactly one line on stderr."""
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_meta_train_adapt_evaluate_predict(tmp_path, meta_model, toy_jsonl, capsys):
    few = toy_jsonl(["yo"], per_class=2, seed=1, name="yo_few.jsonl")
    test = toy_jsonl(["yo"], per_class=4, seed=2, name="yo_test.jsonl")
    assert main(["adapt", "--model", str(meta_model), "--lang", "yo", "--train", str(few),
                 "--out", str(tmp_path / "yo"), "--steps", "3"]) == 0
    assert (tmp_path / "yo" / "adapters" / "yo" / "adapter_model.safetensors").is_file()
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tmp_path / "yo"), "--test", str(test), "--out", str(tmp_path / "eval")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["lang"] == "yo" and report["adapter"] == "yo" and report["n"] == 12
    assert 0.0 <= report["macro_f1"] <= 1.0
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["n"] == 12
    assert main(["predict", "--model", str(tmp_path / "yo"), "--text", "cat dog", "rice"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == ["cat dog", "rice"]
    assert all(line["label"] in {"animal", "food", "travel"} for line in lines)


def test_adapt_centres_on_unlabelled_text_and_says_when_it_cannot(tmp_path, meta_model, tiny_encoder_dir, toy_jsonl,
                                                                   yo_text, capsys):
    few = toy_jsonl(["yo"], per_class=2, seed=1, name="yo_few.jsonl")
    few_texts = tmp_path / "yo_few.txt"  # the texts of --train, which --target_text train names
    few_texts.write_text("".join(json.loads(line)["text"] + "\n" for line in few.read_text().splitlines()),
                         encoding="utf-8")
    one_shot = ["--shots", "1", "--target_text"]  # one example per class, centred on all of --train's texts
    runs = {"plain": [], "centred": ["--target_text", str(yo_text)], "file": [*one_shot, str(few_texts)],
            "train": [*one_shot, "train"], "one": ["--shots", "1"]}
    for name, extra in runs.items():
        assert main(["adapt", "--model", str(meta_model), "--lang", "yo", "--train", str(few), "--out",
                     str(tmp_path / name), "--steps", "0", *extra]) == 0
    capsys.readouterr()
    probs = {}
    for name in runs:
        assert main(["predict", "--model", str(tmp_path / name), "--text", "cat dog", "rice"]) == 0
        probs[name] = [json.loads(line)["score"] for line in capsys.readouterr().out.splitlines()]
    assert probs["plain"] != probs["centred"] and probs["train"] == probs["file"] != probs["one"]
    train = toy_jsonl(["aa", "bb", "cc"], per_class=8, name="train.jsonl")
    fomaml = tmp_path / "fomaml"
    assert main(["meta-train", "--train_file", str(train), "--encoder", str(tiny_encoder_dir), "--out", str(fomaml),
                 "--steps", "1", "--meta_batch", "2", "--k_shot", "2", "--k_query", "2", "--lora_r", "2",
                 "--prototype_head", "off"]) == 0
    capsys.readouterr()
    err = run_error(capsys, ["adapt", "--model", str(fomaml), "--lang", "yo", "--train", str(few), "--out",
                             str(tmp_path / "no"), "--target_text", str(yo_text)])
    assert "--target_text" in err and "prototype head" in err and not (tmp_path / "no").exists()



def test_evaluate_protocol_reads_unlabelled_text_at_every_k(tmp_path, meta_model, toy_jsonl, capsys):
    train = toy_jsonl(["yo"], per_class=4, seed=1, name="yo_train.jsonl")
    test = toy_jsonl(["yo"], per_class=4, seed=2, name="yo_test.jsonl")
    protocol = ["evaluate", "--model", str(meta_model), "--lang", "yo", "--train_file", str(train), "--test", str(test),
                "--shots", "0,1", "--seeds", "2", "--steps", "0"]
    results = {}
    for name, extra in (("plain", []), ("text", ["--target_text", "train"])):
        assert main([*protocol, "--out", str(tmp_path / name), *extra]) == 0
        results[name] = json.loads((tmp_path / name / "results.json").read_text())
    assert results["plain"]["settings"]["target_text"] == "none" and results["text"]["settings"]["target_text"] == "train"
    runs = {name: {(run["k"], run["seed"]): run for run in r["languages"][0]["runs"]} for name, r in results.items()}
    assert runs["plain"].keys() == runs["text"].keys() == {(0, 0), (1, 0), (1, 1)}
    assert runs["text"][(0, 0)]["adapt_seconds"] > 0 == runs["plain"][(0, 0)]["adapt_seconds"]  # K=0 adapts with text
    assert runs["text"][(1, 0)]["shot_ids"] == runs["plain"][(1, 0)]["shot_ids"]
    capsys.readouterr()
    err = run_error(capsys, ["evaluate", "--model", str(meta_model), "--lang", "yo", "--test", str(test),
                             "--target_text", "train", "--out", str(tmp_path / "no")])
    assert "--target_text" in err and "--shots" in err and not (tmp_path / "no").exists()



def test_adapt_language_script_reads_unlabelled_text(tmp_path, meta_model, toy_jsonl, yo_text):
    few = toy_jsonl(["yo"], per_class=2, seed=1, name="yo_few.jsonl")
    script = Path(__file__).resolve().parents[1] / "scripts" / "adapt_language.py"
    probs = {}
    for name, extra in (("plain", []), ("centred", ["--target_text", str(yo_text)])):
        run = subprocess.run([sys.executable, str(script), "--model", str(meta_model), "--lang", "yo", "--train", str(few),
                              "--steps", "0", "--out", str(tmp_path / name), *extra], capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, run.stderr
        model = XMetaForSequenceClassification.from_pretrained(tmp_path / name, lang="yo")
        probs[name] = model.predict_proba(["cat dog", "rice"], lang="yo")
    assert not torch.allclose(probs["plain"], probs["centred"])


def test_bad_flag_and_unknown_command(capsys):
    assert "invalid int value" in run_error(capsys, ["meta-train", "--out", "x", "--steps", "many"])
    assert "unrecognized arguments: --bogus 1" in run_error(capsys, ["meta-train", "--out", "x", "--bogus", "1"])
    assert "unknown command" in run_error(capsys, ["train-everything"])


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["--steps", "-1"], "--steps must be at least 1"),
        (["--inner_lr", "0"], "--inner_lr must be a positive number"),
        (["--lora_r", "0"], "--lora_r must be at least 1"),
        (["--prototype_source_rows", "0"], "--prototype_source_rows must be at least 1 (got 0)"),
        (["--k_shot", "2", "--min_k_shot", "3"], "--min_k_shot must be between 0 and --k_shot 2 (got 3)"),
        (["--meta_batch", "5"], "--meta_batch 5 exceeds the 3 source languages"),
        (["--sources", "aa,zz"], "no rows for language 'zz'"),
    ],
)
def test_meta_train_user_mistakes(tmp_path, tiny_encoder_dir, toy_jsonl, capsys, args, culprit):
    train = toy_jsonl(["aa", "bb", "cc"], per_class=8)
    out = tmp_path / "never"
    err = run_error(capsys, ["meta-train", "--train_file", str(train), "--encoder", str(tiny_encoder_dir),
                             "--out", str(out), "--steps", "2", *args])
    assert culprit in err
    assert not out.exists()


def test_data_mistakes_name_the_culprit(tmp_path, meta_model, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "cat", "label": "animal"}\n{"text": "dog", "label": \n', encoding="utf-8")
    assert f"{bad}:2" in run_error(capsys, ["adapt", "--model", str(meta_model), "--lang", "yo", "--train", str(bad),
                                            "--out", str(tmp_path / "o")])
    unseen = tmp_path / "unseen.jsonl"
    unseen.write_text('{"text": "sun", "label": "weather"}\n', encoding="utf-8")
    assert "unseen label 'weather'" in run_error(capsys, ["evaluate", "--model", str(meta_model), "--lang", "yo",
                                                          "--test", str(unseen)])
    assert "does not exist" in run_error(capsys, ["predict", "--model", str(tmp_path / "nope"), "--text", "x"])
    (tmp_path / "taken").mkdir()
    assert "exists" in run_error(capsys, ["adapt", "--model", str(meta_model), "--lang", "yo", "--train", str(unseen),
                                          "--out", str(tmp_path / "taken")])
    assert not (tmp_path / "o").exists()
