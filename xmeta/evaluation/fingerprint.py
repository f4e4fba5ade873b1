"""Fingerprints: a stable sha256 of everything that determines a cached benchmark artefact.

A cell, a trained model or a tuning choice is stored under its fingerprint, so a change of task
card, data, encoder weights, flags, budget, shots, test rows or xmeta version names another file:
the old one is never served for the new settings.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..encoders.embedded import default_cache_dir
from ..fileio import sha256_file, write_json

SHORT = 12  # hex digits of a fingerprint in file and folder names
MEMO_MIN_BYTES = 1 << 26  # files this large have their digest remembered; smaller ones are hashed again


def fingerprint(settings: object) -> str:
    """sha256 of the canonical JSON of ``settings`` (sorted keys, no whitespace)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def rows_digest(tasks: dict) -> str:
    """Digest of the rows a run uses: per language its texts, label ids, label names and item ids."""
    return fingerprint({lang: {"texts": task.texts, "labels": task.labels, "names": task.label_map.names,
                               "items": getattr(task, "item_ids", None)} for lang, task in sorted(tasks.items())})



def file_digest(path: Path) -> str:
    """sha256 of a file's bytes; a large file's is remembered by (path, size, mtime) in the xmeta
    cache folder, so an encoder's weights are hashed once, not on every run."""
    stat = path.stat()
    if stat.st_size < MEMO_MIN_BYTES:
        return sha256_file(path)
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    memo_file = default_cache_dir() / "file-digests.json"
    try:
        memo = json.loads(memo_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    if key not in memo:
        memo[key] = sha256_file(path)
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        write_json(memo_file, memo)
    return memo[key]


def weights_digest(folder: str) -> str:
    """Digest of an encoder folder's weights (its safetensors files; a hub id without a local
    folder is named by its id alone)."""
    path = Path(folder)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else []
    return fingerprint({f.name: file_digest(f) for f in files}) if files else f"id:{folder}"
