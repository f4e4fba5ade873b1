#!/usr/bin/env bash
# Set up (idempotent), then run the whole test suite: fast unit tests on tiny random encoders and
# integration tests on the embedded multilingual-e5-small with the real CLDR data.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pytest -q -p no:cacheprovider "$@"
