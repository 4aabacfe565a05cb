"""Metrics, ROC points and confusion rows on tiny arrays with hand-computed answers."""

import numpy as np
import pytest

from movingline.inference.metrics import compute_metrics, confusion_rows, metrics_summary, predicted_labels, roc_points
from movingline.data.labels import THRESHOLD

LABELS = np.array([1, 1, 0, 0, 1], dtype=np.uint8)
PROBABILITIES = np.array([0.9, 0.4, 0.2, 0.6, 0.5])  # predicted 1, 0, 0, 1, 1


def test_the_threshold_is_one_half_and_inclusive():
    assert THRESHOLD == 0.5
    assert predicted_labels(np.array([0.0, 0.49999, 0.5, 1.0])).tolist() == [0, 0, 1, 1]
    assert predicted_labels(np.array([0.7])).dtype == np.uint8


def test_metrics_match_a_hand_count():
    metrics = compute_metrics(LABELS, PROBABILITIES)
    # True positives 2 (0.9, 0.5), false positive 1 (0.6), false negative 1 (0.4), true negative 1.
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(2 / 3)
    expected_loss = -np.mean(np.log([0.9, 0.4, 0.8, 0.4, 0.5]))
    assert metrics["loss"] == pytest.approx(expected_loss)
    # Of the 6 (positive, negative) pairs, the positive scores higher in 4: 0.9>0.2, 0.9>0.6, 0.4>0.2, 0.5>0.2.
    assert metrics["roc_auc"] == pytest.approx(4 / 6)
    assert metrics["n_samples"] == 5
    assert list(metrics) == ["accuracy", "loss", "precision", "recall", "f1", "roc_auc", "n_samples"]


def test_one_class_only_has_no_auc_and_no_roc_curve():
    labels = np.array([1, 1, 1], dtype=np.uint8)
    probabilities = np.array([0.9, 0.8, 0.3])
    assert compute_metrics(labels, probabilities)["roc_auc"] is None
    assert roc_points(labels, probabilities) == []


def test_roc_points_start_at_the_origin_with_a_finite_threshold():
    points = roc_points(np.array([0, 1], dtype=np.uint8), np.array([0.25, 0.75]))
    assert points == [
        {"fpr": 0.0, "tpr": 0.0, "threshold": 1.0},
        {"fpr": 0.0, "tpr": 1.0, "threshold": 0.75},
        {"fpr": 1.0, "tpr": 1.0, "threshold": 0.25},
    ]


def test_confusion_rows_name_the_classes():
    assert confusion_rows(np.array([1, 0], dtype=np.uint8), np.array([0.2, 0.1])) == [
        {"actual": "right", "predicted": "left"},
        {"actual": "left", "predicted": "left"},
    ]


def test_summary_is_one_line_of_the_float_metrics():
    metrics = {"accuracy": 1.0, "loss": 0.0123456, "roc_auc": None, "n_samples": 10}
    assert metrics_summary(metrics) == "10 sequences: accuracy 1.0000, loss 0.0123"
