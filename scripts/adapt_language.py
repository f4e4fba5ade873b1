#!/usr/bin/env python
"""Adapt a meta-trained xmeta model to a new language from a file of labelled examples.

    python scripts/adapt_language.py --model runs/meta --lang yo --train yo_32.jsonl \
        [--test yo_test.jsonl] [--target_text yo.txt] --out runs/yo

The Python-API version of `xmeta adapt` + `xmeta evaluate`: read the examples, adapt, score
before and after on the test file when one is given, save the model with its new adapter.
"""

from __future__ import annotations

import argparse
import sys

from xmeta import XMetaError, XMetaForSequenceClassification
from xmeta.data import LabelMap, LanguageTask, read_file, tasks_from_dataset
from xmeta.data.readers import read_lines
from xmeta.errors import DataError
from xmeta.evaluation import score_texts
from xmeta.fileio import check_output_folder
from xmeta.modeling import META_ADAPTER


def language_rows(path: str, lang: str, labels: LabelMap) -> LanguageTask:
    task = tasks_from_dataset(read_file(path, lang=lang), labels, origin=path).get(lang)
    if task is None:
        raise DataError(f"{path}: no rows for language '{lang}'")
    return task


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--lang", required=True)
    parser.add_argument("--train", required=True, help="JSONL/CSV/TSV with text,label[,lang]")
    parser.add_argument("--test", help="optional labelled test file")
    parser.add_argument("--out", required=True)
    parser.add_argument("--target_text", help="unlabelled text of the language, one text a line: the centre of "
                                              "a prototype head (as `xmeta adapt --target_text`)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    try:
        check_output_folder(args.out, args.overwrite)  # before adapting and scoring, not after
        model = XMetaForSequenceClassification.from_pretrained(args.model)
        labels = LabelMap(tuple(model.config.labels))
        train = language_rows(args.train, args.lang, labels)
        test = language_rows(args.test, args.lang, labels) if args.test else None
        target_text = read_lines(args.target_text) if args.target_text else []
        if test:
            before = score_texts(model, test.texts, test.labels, lang=META_ADAPTER)
        result = model.adapt([(t, model.config.id2label[y]) for t, y in zip(train.texts, train.labels)],
                             lang=args.lang, steps=args.steps, target_text=target_text)
        print(f"adapted {args.lang} on {result.examples} examples in {result.seconds:.1f} s")
        if test:
            after = score_texts(model, test.texts, test.labels, lang=args.lang)
            model.trainer_state.language_scores[args.lang] = {"macro_f1": round(after["macro_f1"], 4), "accuracy": round(after["accuracy"], 4)}
            print(f"{args.lang} macro-F1 {before['macro_f1']:.3f} -> {after['macro_f1']:.3f} on {len(test.texts)} test rows")
        model.save_pretrained(args.out, overwrite=args.overwrite)
    except XMetaError as err:
        print(f"adapt_language: error: {err}", file=sys.stderr)
        return 2
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
