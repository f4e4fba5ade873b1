"""`xmeta meta-train/adapt/evaluate/predict` on tagged data (JSONL and CoNLL) with a tiny encoder."""

from __future__ import annotations

import json

import pytest

from tests.test_token_classification import toy_sentences
from xmeta.cli import main


def _conll(path, lang: str, n: int, seed: int) -> None:
    blocks = ["\n".join(f"{w} {t}" for w, t in zip(words, tags)) for words, tags in toy_sentences(lang, n, seed)]
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")


def test_tagging_commands_end_to_end(tmp_path, tiny_encoder_dir, capsys):
    train = tmp_path / "train.jsonl"
    rows = [{"tokens": w, "tags": t, "lang": lang} for lang in ("de", "fr") for w, t in toy_sentences(lang, 8)]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    meta = tmp_path / "meta"
    assert main(["meta-train", "--train_file", str(train), "--encoder", str(tiny_encoder_dir), "--out", str(meta),
                 "--steps", "2", "--meta_batch", "2", "--k_shot", "2", "--k_query", "2", "--lora_r", "2"]) == 0
    few, test = tmp_path / "yo_few.conll", tmp_path / "yo_test.conll"
    _conll(few, "yo", 4, 1)
    _conll(test, "yo", 4, 2)
    assert main(["adapt", "--model", str(meta), "--lang", "yo", "--train", str(few), "--out", str(tmp_path / "yo"),
                 "--steps", "3"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tmp_path / "yo"), "--test", str(test)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["lang"] == "yo" and {"f1", "precision", "recall", "token_accuracy"} <= set(report)
    assert main(["predict", "--model", str(tmp_path / "yo"), "--text", "cat dog road"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["tokens"] == ["cat", "dog", "road"] and len(line["tags"]) == 3
    bad = tmp_path / "bad.conll"
    bad.write_text("cat B-ANIMAL\ndog\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(["evaluate", "--model", str(tmp_path / "yo"), "--test", str(bad)]))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.conll:2:" in err
