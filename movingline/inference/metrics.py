"""Scoring probabilities of "right" against labels: metrics, ROC points, confusion rows.

Pure functions on arrays; the evaluate stage writes what they return.
"""

import numpy as np

from movingline.data.labels import LABEL_NAMES, LEFT, RIGHT, THRESHOLD


def predicted_labels(probabilities: np.ndarray) -> np.ndarray:
    """RIGHT (1) where the probability reaches THRESHOLD, else LEFT (0), as uint8."""
    return np.where(np.asarray(probabilities) >= THRESHOLD, RIGHT, LEFT).astype(np.uint8)


def compute_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float | int | None]:
    """Accuracy, precision, recall and F1 at THRESHOLD, plus log loss, ROC AUC and the count."""
    from sklearn import metrics

    predicted = predicted_labels(probabilities)
    both_classes = len(np.unique(labels)) == 2
    return {
        "accuracy": float(metrics.accuracy_score(labels, predicted)),
        "loss": float(metrics.log_loss(labels, probabilities, labels=[LEFT, RIGHT])),
        "precision": float(metrics.precision_score(labels, predicted, zero_division=0)),
        "recall": float(metrics.recall_score(labels, predicted, zero_division=0)),
        "f1": float(metrics.f1_score(labels, predicted, zero_division=0)),
        # AUC is undefined when the test set holds one class only.
        "roc_auc": float(metrics.roc_auc_score(labels, probabilities)) if both_classes else None,
        "n_samples": int(len(labels)),
    }


def roc_points(labels: np.ndarray, probabilities: np.ndarray) -> list[dict[str, float]]:
    """The ROC curve as rows of false and true positive rates and thresholds; none for one class."""
    from sklearn.metrics import roc_curve

    if len(np.unique(labels)) < 2:
        return []
    fpr, tpr, thresholds = roc_curve(labels, probabilities)
    # sklearn's first threshold is +inf, which JSON cannot hold; any value above 1 means the same.
    thresholds = np.minimum(thresholds, 1.0 + 1e-9)
    return [
        {"fpr": round(float(f), 6), "tpr": round(float(t), 6), "threshold": round(float(h), 6)}
        for f, t, h in zip(fpr, tpr, thresholds)
    ]


def confusion_rows(labels: np.ndarray, probabilities: np.ndarray) -> list[dict[str, str]]:
    """One row per sequence, as DVC's confusion template expects."""
    predicted = predicted_labels(probabilities)
    return [{"actual": LABEL_NAMES[int(a)], "predicted": LABEL_NAMES[int(p)]} for a, p in zip(labels, predicted)]


def metrics_summary(metrics: dict[str, float | int | None]) -> str:
    """The metrics as one line, e.g. "1000 sequences: accuracy 1.0000, loss 0.0123, ..."."""
    scores = ", ".join(f"{key} {value:.4f}" for key, value in metrics.items() if isinstance(value, float))
    return f"{metrics['n_samples']} sequences: {scores}"
