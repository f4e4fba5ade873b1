"""The `xmeta` command. User mistakes print one line and exit 2; no tracebacks for them."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence

import transformers
from transformers import HfArgumentParser

from .arguments import (
    AdaptCommand,
    BenchmarkCommand,
    CoverageCommand,
    DataArguments,
    EvaluateCommand,
    ExplainCommand,
    PredictCommand,
    PrepareEncoderCommand,
)
from .errors import XMetaError, XMetaWarning
from .version import __version__

USAGE_EXIT = 2


class OneLineParser(HfArgumentParser):
    """argparse prints usage plus the error; a bad flag deserves one line naming it."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(USAGE_EXIT)

    def distinct_negations(self) -> None:
        """HfArgumentParser gives ``--no_X`` the help of ``--X``; say what it does instead."""
        for action in self._actions:
            negated = [o[len("--no_"):] for o in action.option_strings if o.startswith("--no_")]
            if negated:
                action.help = f"turn off --{negated[0]}"


def _one_line_warnings(command: str) -> None:
    """xmeta's own warnings (`XMetaWarning`) as ``xmeta COMMAND: warning: ...`` lines, every time."""
    show = warnings.showwarning

    def one_line(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        if issubclass(category, XMetaWarning):
            sys.stderr.write(f"xmeta {command}: warning: {message}\n")
        else:
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = one_line
    warnings.simplefilter("always", XMetaWarning)


def _commands() -> dict[str, tuple[tuple[type, ...], str, Callable[..., int]]]:
    from . import commands, train

    return {
        "prepare-encoder": ((PrepareEncoderCommand,), "convert the embedded multilingual-e5-small into a cached HF folder",
                            commands.prepare_encoder),
        "meta-train": (train.meta_train_arguments(), "first-order MAML over language episodes", train.meta_train),
        "adapt": ((AdaptCommand, DataArguments), "few-shot adaptation to a new language", commands.adapt),
        "evaluate": ((EvaluateCommand, DataArguments), "score a model, or run the K-shot protocol", commands.evaluate),
        "predict": ((PredictCommand,), "labels and scores for texts", commands.predict),
        "explain": ((ExplainCommand, DataArguments), "which source languages a target draws on", commands.explain),
        "benchmark": ((BenchmarkCommand,), "baselines, xmeta and its ablations side by side (results.json/.md/.png)",
                      commands.benchmark),
        "coverage": ((CoverageCommand, DataArguments), "how well the tokenizer covers languages (<unk>, pieces per word)",
                     commands.coverage),
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    table = _commands()
    if not argv or argv[0] in ("-h", "--help"):
        lines = ["usage: xmeta COMMAND [flags]   (xmeta COMMAND --help for its flags; xmeta --version)", ""]
        lines += [f"  {name:<16} {help_}" for name, (_, help_, _) in table.items()]
        print("\n".join(lines))
        return 0 if argv else USAGE_EXIT
    if argv[0] in ("-V", "--version"):
        print(f"xmeta {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in table:
        sys.stderr.write(f"xmeta: error: unknown command {name!r} (choose from {', '.join(table)})\n")
        return USAGE_EXIT
    transformers.logging.set_verbosity_error()  # load reports and weight bars would bury the one line that matters
    transformers.logging.disable_progress_bar()
    classes, help_, run = table[name]
    parser = OneLineParser(classes, prog=f"xmeta {name}", description=help_)
    parser.distinct_negations()
    try:
        with warnings.catch_warnings():  # restores the warning filters and printer afterwards
            _one_line_warnings(name)
            *parsed, unknown = parser.parse_args_into_dataclasses(args=rest, return_remaining_strings=True)
            if unknown:  # HfArgumentParser raises a ValueError for these: one line, exit 2 instead
                parser.error(f"unrecognized arguments: {' '.join(unknown)}")
            return run(*parsed)
    except XMetaError as err:
        sys.stderr.write(f"xmeta {name}: error: {err}\n")
        return err.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"xmeta {name}: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
