"""Evaluation on a fixed split: accuracy, macro precision/recall/F1, per-class report, confusion matrix."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ml.contract import LABELS


@dataclass
class Evaluation:
    dataset: str                   # the split evaluated: test, validation
    metrics: dict[str, float]      # {dataset}_accuracy, {dataset}_macro_f1, {dataset}_f1_positive, ...
    report: dict                   # sklearn's classification_report as a dict
    confusion: list[list[int]]     # rows: true label, columns: predicted label (LABELS order)
    support: int


def evaluate(y_true: Sequence[str], y_pred: Sequence[str], dataset: str = "test") -> Evaluation:
    from sklearn.metrics import (accuracy_score, classification_report, confusion_matrix,
                                 precision_recall_fscore_support)

    y_true, y_pred = list(y_true), list(y_pred)
    if not y_true:
        raise ValueError(f"the {dataset} split is empty: there is nothing to evaluate on")
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=list(LABELS), average="macro", zero_division=0)
    metrics = {
        f"{dataset}_accuracy": accuracy_score(y_true, y_pred),
        f"{dataset}_macro_precision": precision,
        f"{dataset}_macro_recall": recall,
        f"{dataset}_macro_f1": f1,
    }
    report = classification_report(y_true, y_pred, labels=list(LABELS), output_dict=True, zero_division=0)
    for label in LABELS:
        metrics[f"{dataset}_f1_{label}"] = report[label]["f1-score"]
        metrics[f"{dataset}_precision_{label}"] = report[label]["precision"]
        metrics[f"{dataset}_recall_{label}"] = report[label]["recall"]
    metrics = {k: float(v) for k, v in metrics.items()}
    confusion = confusion_matrix(y_true, y_pred, labels=list(LABELS)).tolist()
    return Evaluation(dataset, metrics, report, confusion, len(y_true))


def plot_confusion_matrix(evaluation: Evaluation, path: Path, title: str = "") -> Path:
    """Save the confusion matrix as a PNG (counts, and row-normalised recall as the colour)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    counts = np.array(evaluation.confusion)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5, 4.2), dpi=120)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(LABELS)), LABELS)
    ax.set_yticks(range(len(LABELS)), LABELS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    f1 = evaluation.metrics.get(f"{evaluation.dataset}_macro_f1")
    ax.set_title(title or f"{evaluation.dataset} split: n={evaluation.support}, macro-F1={f1:.3f}", fontsize=9)
    for i in range(len(LABELS)):
        for j in range(len(LABELS)):
            ax.text(j, i, f"{counts[i, j]}\n{rates[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true label")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
