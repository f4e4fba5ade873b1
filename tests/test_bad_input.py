"""The bad-input catalogue: each user mistake prints one line naming the culprit, exits 2 and
leaves no output behind (README.md, "Bad input", lists the same cases)."""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import toy_rows

from xmeta.cli import main
from xmeta.version import __version__


@dataclass
class Ctx:
    """What a case needs: a meta-trained model, a good training file and a scratch folder."""

    model: Path
    train: Path
    encoder: Path
    tmp: Path
    patch: pytest.MonkeyPatch  # undone after the case

    @property
    def out(self) -> Path:
        return self.tmp / "out"

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return path

    def meta_train(self, *extra: str, train: Path | None = None) -> list[str]:
        return ["meta-train", "--train_file", str(train or self.train), "--encoder", str(self.encoder),
                "--out", str(self.out), "--steps", "2", "--meta_batch", "2", "--k_shot", "2", "--k_query", "2",
                "--lora_r", "2", *extra]

    def copy_model(self) -> Path:
        import shutil

        return Path(shutil.copytree(self.model, self.tmp / "model"))


Case = Callable[[Ctx], tuple[list[str], str]]
CASES: dict[str, Case] = {}
REAL_DATA = {"unknown locale", "unknown task", "zero languages left after filtering"}


def case(name: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        CASES[name] = fn
        return fn
    return register


@case("malformed JSONL line")
def _(c: Ctx):
    bad = c.write("bad.jsonl", '{"text": "cat", "label": "animal", "lang": "aa"}\n{"text": "dog", "label": \n')
    return c.meta_train(train=bad), f"{bad}:2:"


def _missing(c: Ctx, column: str):
    row = {k: v for k, v in {"text": "cat", "label": "animal", "lang": "aa"}.items() if k != column}
    return c.meta_train(train=c.write("cols.jsonl", json.dumps(row) + "\n")), f"cols.jsonl:1: missing column '{column}'"


for _column in ("text", "label", "lang"):
    case(f"missing {_column} column")(lambda c, col=_column: _missing(c, col))


@case("empty file")
def _(c: Ctx):
    return c.meta_train(train=c.write("empty.jsonl", "\n\n")), "empty.jsonl: empty file"


@case("non-UTF-8 bytes")
def _(c: Ctx):
    return c.meta_train(train=c.write("latin1.jsonl", '{"text": "caf\xe9"}\n'.encode("latin-1"))), "latin1.jsonl:1: not UTF-8 (byte 0xe9"


@case("CSV row with a missing field")
def _(c: Ctx):
    return c.meta_train(train=c.write("short.csv", "text,label,lang\ncat,animal,aa\ndog,animal\n")), "short.csv:3: expected 3 fields"


@case("unsupported file type")
def _(c: Ctx):
    return c.meta_train(train=c.write("rows.txt", "cat\n")), "unsupported file type '.txt'"


@case("missing data file")
def _(c: Ctx):
    return c.meta_train(train=c.tmp / "nowhere.jsonl"), "nowhere.jsonl: file not found"


@case("label in the test file unseen in training")
def _(c: Ctx):
    test = c.write("unseen.jsonl", '{"text": "sun", "label": "weather"}\n')
    return ["evaluate", "--model", str(c.model), "--lang", "yo", "--test", str(test), "--out", str(c.out)], "unseen label 'weather'"


@case("unknown locale")
def _(c: Ctx):
    return ["meta-train", "--sources", "en,xx", "--out", str(c.out), "--steps", "2"], "unknown CLDR locale 'xx'"


@case("unknown task")
def _(c: Ctx):
    return ["meta-train", "--task", "no-such-task", "--out", str(c.out)], "no-such-task"


@case("K larger than a class has examples")
def _(c: Ctx):
    return c.meta_train("--k_shot", "9"), "have >= 11 examples (k_shot + k_query)"


@case("zero languages left after filtering")
def _(c: Ctx):
    return ["meta-train", "--sources", "kl", "--out", str(c.out)], "language 'kl' is excluded from this task"


@case("source language absent from the file")
def _(c: Ctx):
    return c.meta_train("--sources", "aa,zz"), "no rows for language 'zz'"


@case("nonexistent model folder")
def _(c: Ctx):
    return ["predict", "--model", str(c.tmp / "nope"), "--text", "x"], "model folder does not exist"


@case("corrupt config.json")
def _(c: Ctx):
    model = c.copy_model()
    (model / "config.json").write_text("{not json", encoding="utf-8")
    return ["predict", "--model", str(model), "--text", "x"], "config.json: corrupt config"


@case("corrupt weights")
def _(c: Ctx):
    model = c.copy_model()
    (model / "model.safetensors").write_bytes(b"\x00" * 20)
    return ["predict", "--model", str(model), "--text", "x"], "model.safetensors: corrupt safetensors file"


@case("pickle .bin offered as weights")
def _(c: Ctx):
    model = c.copy_model()
    (model / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    return ["predict", "--model", str(model), "--text", "x"], "pytorch_model.bin: pickle weights are refused"


@case("config from a newer xmeta")
def _(c: Ctx):
    model = c.copy_model()
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "xmeta_version": "99.0.0"}))
    return ["adapt", "--model", str(model), "--lang", "yo", "--train", str(c.train), "--out", str(c.out)], \
        f"written by xmeta 99.0.0, this is {__version__}"


@case("negative steps")
def _(c: Ctx):
    return c.meta_train("--steps", "-3"), "--steps must be at least 1 (got -3)"


@case("learning rate 0")
def _(c: Ctx):
    return c.meta_train("--outer_lr", "0"), "--outer_lr must be a positive number (got 0.0)"


@case("LoRA rank 0")
def _(c: Ctx):
    return c.meta_train("--lora_r", "0"), "--lora_r must be at least 1 (got 0)"


@case("not a number")
def _(c: Ctx):
    return c.meta_train("--inner_lr", "fast"), "--inner_lr/--inner-lr: invalid float value: 'fast'"


@case("meta-batch larger than the languages")
def _(c: Ctx):
    return c.meta_train("--meta_batch", "7"), "--meta_batch 7 exceeds the 3 source languages"


@case("unusable language code")
def _(c: Ctx):
    return ["adapt", "--model", str(c.model), "--lang", "../yo", "--train", str(c.train), "--out", str(c.out)], \
        "language code '../yo' is not usable"


@case("--resume without a checkpoint")
def _(c: Ctx):
    return c.meta_train("--resume"), f"--resume: no checkpoint at {c.out}.checkpoint"


@case("--resume with different flags")
def _(c: Ctx):
    assert main(c.meta_train("--checkpoint_every", "1", "--steps", "1")) == 0
    (c.tmp / "out.done").mkdir()
    (c.out).rename(c.tmp / "out.done" / "out")
    return c.meta_train("--resume", "--seed", "7"), "it was made with --seed 0, this run has --seed 7"


@case("output folder exists")
def _(c: Ctx):
    c.out.mkdir()
    (c.out / "keep.txt").write_text("mine")
    return c.meta_train(), f"{c.out}: output folder exists (pass --overwrite to replace it)"


@case("disk full while saving")
def _(c: Ctx):
    import xmeta.modeling.serialization as serialization

    def full_disk(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    c.patch.setattr(serialization, "save_file", full_disk)
    return ["adapt", "--model", str(c.model), "--lang", "aa", "--train", str(c.train), "--out", str(c.out),
            "--steps", "1"], f"{c.out}: writing failed, nothing was changed (No space left on device)"


@case("NaN loss")
def _(c: Ctx):
    from xmeta.meta import fomaml

    real = fomaml.batch_loss
    calls = {"n": 0}

    def poisoned(model, weights, batch):
        calls["n"] += 1
        loss, logits = real(model, weights, batch)
        return (loss * float("nan"), logits) if calls["n"] > 6 else (loss, logits)  # from step 2 on

    c.patch.setattr(fomaml, "batch_loss", poisoned)
    return (c.meta_train("--steps", "3", "--inner_steps", "1", "--checkpoint_every", "1"),
            f"step 2: query loss became nan (lower --outer_lr or --inner_lr); last good checkpoint: {c.out}.checkpoint (step 1)")


@case("output path is a file")
def _(c: Ctx):
    afile = c.write("afile.txt", "mine")
    return c.meta_train("--out", str(afile)), "afile.txt: is a file, not an output folder"


@case("output folder inside a file")
def _(c: Ctx):
    afile = c.write("afile.txt", "mine")
    return ["adapt", "--model", str(c.model), "--lang", "aa", "--train", str(c.train), "--out", str(afile / "out"),
            "--overwrite"], "afile.txt is a file, not a folder"


@case("non-UTF-8 text file for coverage")
def _(c: Ctx):
    latin1 = c.write("latin1.txt", "caf\xe9\n".encode("latin-1"))
    return ["coverage", "--file", str(latin1), "--encoder", str(c.encoder)], \
        "latin1.txt:1: not UTF-8 (byte 0xe9 at offset 3)"


@case("non-UTF-8 text file for predict")
def _(c: Ctx):
    latin1 = c.write("latin1.txt", "ok\ncaf\xe9\n".encode("latin-1"))
    return ["predict", "--model", str(c.model), "--file", str(latin1)], "latin1.txt:2: not UTF-8 (byte 0xe9 at offset 6)"


@case("empty text in a predict --file")
def _(c: Ctx):
    rows = c.write("texts.jsonl", '{"text": "cat", "label": "animal"}\n{"text": " ", "label": "food"}\n')
    return ["predict", "--model", str(c.model), "--file", str(rows)], "texts.jsonl:2: empty text in column 'text'"


@case("corrupt adapter config")
def _(c: Ctx):
    adapted = c.tmp / "adapted"
    assert main(["adapt", "--model", str(c.model), "--lang", "aa", "--train", str(c.train), "--out", str(adapted),
                 "--steps", "1"]) == 0
    (adapted / "adapters" / "aa" / "adapter_config.json").write_text("{not json", encoding="utf-8")
    return ["predict", "--model", str(adapted), "--text", "x"], "adapters/aa/adapter_config.json: corrupt adapter config"


@case("adapt on examples of some labels only")
def _(c: Ctx):
    rows = [r for r in toy_rows("aa", 4, 0) if r["label"] == "food"]
    food = c.write("food.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return ["adapt", "--model", str(c.model), "--lang", "aa", "--train", str(food), "--out", str(c.out)], \
        "no examples of label(s) animal, travel; give examples of every label or pass --allow_missing_labels"


@case("--shots from a model meta-trained on a file")
def _(c: Ctx):
    return ["adapt", "--model", str(c.model), "--lang", "aa", "--shots", "2", "--out", str(c.out)], \
        "was meta-trained on 'train.jsonl', not a task card: give --train FILE (or --task)"


@case("evaluate --shots without --train_file on a file-trained model")
def _(c: Ctx):
    return ["evaluate", "--model", str(c.model), "--lang", "aa", "--shots", "0,2", "--test", str(c.train)], \
        "give --train_file FILE (or --task)"


@pytest.fixture(scope="module")
def ctx_base(tmp_path_factory, tiny_encoder_dir) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("bad-input")
    train = folder / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for lang in ("aa", "bb", "cc") for r in toy_rows(lang, 8, 0)))
    assert main(["meta-train", "--train_file", str(train), "--encoder", str(tiny_encoder_dir), "--out", str(folder / "meta"),
                 "--steps", "2", "--meta_batch", "2", "--k_shot", "2", "--k_query", "2", "--lora_r", "2"]) == 0
    return folder / "meta", train


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.real) if n in REAL_DATA else n for n in CASES])
def test_bad_input(name, ctx_base, tiny_encoder_dir, tmp_path, capsys):
    (scratch := tmp_path / "case").mkdir()
    before = {p.name: p.stat().st_mtime_ns for p in ctx_base[0].rglob("*")}
    with pytest.MonkeyPatch.context() as patch:
        c = Ctx(ctx_base[0], ctx_base[1], tiny_encoder_dir, scratch, patch)
        argv, culprit = CASES[name](c)
        capsys.readouterr()
        existed = c.out.exists()
        with pytest.raises(SystemExit) as exc:
            raise SystemExit(main(argv))
    err = capsys.readouterr().err.strip().splitlines()
    print(f"{name}: {err[-1] if err else ''}")
    assert exc.value.code == 2, err
    lines = [line for line in err if line.startswith("xmeta")]
    assert len(lines) == 1 and culprit in lines[0], err
    if existed:
        assert (c.out / "keep.txt").read_text() == "mine"
    else:
        assert not c.out.exists()
    leftovers = [p.name for p in scratch.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert not leftovers
    assert before == {p.name: p.stat().st_mtime_ns for p in c.model.rglob("*")}


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_file_classifies_the_text_column(ctx_base, tmp_path, capsys):
    rows = tmp_path / "test.jsonl"
    rows.write_text('{"text": "cat dog", "label": "animal", "lang": "aa"}\n{"label": "food", "text": "rice"}\n')
    code, out, _ = _run(["predict", "--model", str(ctx_base[0]), "--file", str(rows)], capsys)
    assert code == 0
    assert [json.loads(line)["text"] for line in out.splitlines()] == ["cat dog", "rice"]


def test_k_shot_protocol_on_the_users_own_files(ctx_base, tmp_path, capsys):
    model, train = ctx_base
    code, out, err = _run(["adapt", "--model", str(model), "--lang", "aa", "--train", str(train), "--shots", "2",
                           "--steps", "1", "--out", str(tmp_path / "aa")], capsys)
    assert code == 0 and "adapted aa on 6 examples" in out, err
    code, out, err = _run(["evaluate", "--model", str(model), "--lang", "bb", "--shots", "0,2", "--seeds", "1",
                           "--steps", "1", "--train_file", str(train), "--test", str(train), "--out", str(tmp_path / "ev")],
                          capsys)
    assert code == 0 and "| bb | 2 | 1 |" in out, err
    assert "cldr" not in out + err
    assert {p.name for p in (tmp_path / "ev").iterdir()} == {"results.json", "results.md", "macro_f1_vs_shots.png"}


def test_meta_train_skips_an_unusable_source_with_one_warning(ctx_base, tiny_encoder_dir, tmp_path, capsys):
    train = tmp_path / "train.jsonl"
    train.write_text(ctx_base[1].read_text() + json.dumps({"text": "cat", "label": "animal", "lang": "dd"}) + "\n")
    code, out, err = _run(["meta-train", "--train_file", str(train), "--encoder", str(tiny_encoder_dir), "--out",
                           str(tmp_path / "m"), "--steps", "1", "--meta_batch", "2", "--k_shot", "2", "--k_query", "2",
                           "--lora_r", "2"], capsys)
    assert code == 0, err
    assert [line for line in err.splitlines() if line.startswith("xmeta")] == [
        "xmeta meta-train: warning: skipping source language dd: only 0 label(s) have >= 4 examples (k_shot + k_query), "
        "need 2; counts: animal=1"]
    assert "(1 meta-step, median" in out


def test_version_and_distinct_negation_help(capsys):
    assert _run(["--version"], capsys)[:2] == (0, f"xmeta {__version__}\n")
    with pytest.raises(SystemExit):
        main(["meta-train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--no_bf16, --no-bf16 turn off --bf16" in text


def test_adapt_language_script_refuses_its_output_before_adapting(ctx_base, tmp_path):
    import subprocess
    import sys

    (out := tmp_path / "out").mkdir()
    (out / "keep.txt").write_text("mine")
    script = Path(__file__).resolve().parents[1] / "scripts" / "adapt_language.py"
    run = subprocess.run([sys.executable, str(script), "--model", str(ctx_base[0]), "--lang", "aa", "--train",
                          str(ctx_base[1]), "--test", str(ctx_base[1]), "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and run.stderr.strip().endswith(f"{out}: output folder exists (pass --overwrite to replace it)")
    assert "adapted" not in run.stdout and (out / "keep.txt").read_text() == "mine"
