"""`python -m xmeta` (and `accelerate launch -m xmeta`) run the CLI."""

from .cli import main

raise SystemExit(main())
