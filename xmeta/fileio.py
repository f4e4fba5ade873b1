"""Writing folders and files so that a crash, a full disk or a bad flag never leaves half of one."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file

from .errors import ArgumentError, ModelFolderError, XMetaError


def check_output_folder(path: str | Path, overwrite: bool = False, flag: str = "--overwrite") -> Path:
    """Refuse, before any work, an output folder that could not be written at the end: a path that is
    a file, one that exists (unless ``overwrite``; ``flag`` is how the caller says so), or one whose
    nearest existing parent is a file, read-only or not writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ArgumentError(f"{path}: is a file, not an output folder")
    if path.exists() and not overwrite:
        raise ArgumentError(f"{path}: output folder exists (pass {flag} to replace it)")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ArgumentError(f"{path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ArgumentError(f"{path}: cannot write in {parent} (read-only or permission denied)")
    return path


@contextlib.contextmanager
def atomic_directory(path: str | Path, overwrite: bool = False, error: type[XMetaError] = XMetaError) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``path`` in one rename.

    An existing ``path`` is refused unless ``overwrite``; on any error the temporary folder is
    removed and ``path`` is left exactly as it was. OS failures are raised as ``error``.
    """
    path = check_output_folder(path, overwrite, flag="--overwrite / overwrite=True")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    except OSError as err:
        raise error(f"{path}: cannot write here ({err.strerror})") from err
    try:
        yield tmp
        _apply_umask(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)  # a folder: check_output_folder refused a file
        else:
            tmp.rename(path)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise error(f"{path}: writing failed, nothing was changed ({err.strerror or err})") from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _apply_umask(folder: Path) -> None:
    """``mkdtemp`` (and safetensors) create owner-only entries; a finished folder should follow the umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for entry in folder.rglob("*"):
        entry.chmod((0o777 if entry.is_dir() else 0o666) & ~umask)


def write_json(path: str | Path, obj: object) -> None:
    """Write JSON through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_safetensors(path: Path) -> dict:
    """A safetensors file's tensors; a missing or corrupt file is one `ModelFolderError` naming it."""
    if not path.is_file():
        raise ModelFolderError(f"{path}: missing weights file")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFolderError(f"{path}: corrupt safetensors file ({err})") from err


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (weights are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
