#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: .venv, torch (CPU build), xmeta[dev], the Debian packages of
# the task data (CLDR, GNOME help) and the embedded encoder (converted once into ~/.cache/xmeta or
# $XMETA_CACHE).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate

# torch first, pinned: here torch==2.13.0 is a CPU build on local disk; an unpinned torch would
# pull a multi-GB CUDA build before anything else could satisfy the dependency.
quiet_pip() {  # pip's chatter goes to a log, shown only when the install fails
    pip install -q "$@" >.venv/pip.log 2>&1 || { cat .venv/pip.log >&2; exit 1; }
}
python -c "import torch" 2>/dev/null || quiet_pip torch==2.13.0

# Reinstall xmeta only when pyproject.toml changed since the last set-up.
stamp=.venv/.xmeta-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    quiet_pip -e ".[dev]"
    echo "$want" > "$stamp"
fi

need=()
[ -f /usr/share/unicode/cldr/common/annotations/en.xml ] || need+=(unicode-cldr-core)
[ -f /usr/share/unicode/emoji/emoji-test.txt ] || need+=(unicode-data)
[ -f /usr/share/help/C/gnome-help/index.page ] || need+=(gnome-user-docs)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing Debian packages; run: sudo apt-get update && sudo apt-get install -y ${need[*]}" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

xmeta prepare-encoder >/dev/null
