"""Evaluation: the K-shot protocol, metrics, and reports (JSON, Markdown, PNG)."""

from .metrics import classification_scores
from .protocol import LanguageEvaluation, ShotResult, few_shot_evaluation, score_task, score_texts
from .report import markdown_table, write_report

__all__ = ["LanguageEvaluation", "ShotResult", "classification_scores", "few_shot_evaluation",
           "markdown_table", "score_task", "score_texts", "write_report"]
