"""What each `xmeta` command runs, as library calls that return data (models, results, reports).

`xmeta.commands` parses, calls one of these and prints; meta-training's entry point is `xmeta.train.meta_train`.
"""
