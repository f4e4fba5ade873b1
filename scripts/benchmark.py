#!/usr/bin/env python
"""The benchmark, as a script: the same as `xmeta benchmark` (all of its flags).

    python scripts/benchmark.py --out runs/benchmark                 # accuracy: baselines, xmeta, ablations
    python scripts/benchmark.py --quick --out runs/benchmark-quick   # smoke run, a few minutes
    python scripts/benchmark.py --speed --out runs/speed             # meta-step vs deepcopy reference / learn2learn
"""

import sys

from xmeta.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["benchmark", *sys.argv[1:]]))
