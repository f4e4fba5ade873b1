"""Scores, computed by scikit-learn so they mean what everyone else's mean."""

from __future__ import annotations

from collections.abc import Sequence

from sklearn.metrics import accuracy_score, f1_score


def classification_scores(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, float]:
    """Accuracy and macro-F1 (over the classes that occur in either list)."""
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def is_bio(tags: Sequence[str]) -> bool:
    """Whether a tag set marks entity spans (B-/I- prefixes, e.g. NER) rather than word classes (POS)."""
    return any(tag[:2] in ("B-", "I-") for tag in tags)


def tagging_scores(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Token accuracy, plus entity-level precision/recall/F1 (seqeval: CoNLL's exact BIO spans) for
    BIO tags, or macro-F1 over tags for word classes such as UPOS (seqeval would read them as spans)."""
    true, pred = [list(t) for t in y_true], [list(p) for p in y_pred]
    flat_true = [tag for row in true for tag in row]
    flat_pred = [tag for row in pred for tag in row]
    scores = {"token_accuracy": float(accuracy_score(flat_true, flat_pred)) if flat_true else 0.0}
    if not is_bio(flat_true):
        scores["macro_f1"] = float(f1_score(flat_true, flat_pred, average="macro", zero_division=0))
        return scores
    from seqeval.metrics import f1_score as entity_f1
    from seqeval.metrics import precision_score, recall_score

    scores.update(precision=float(precision_score(true, pred, zero_division=0)),
                  recall=float(recall_score(true, pred, zero_division=0)),
                  f1=float(entity_f1(true, pred, zero_division=0)))
    return scores
