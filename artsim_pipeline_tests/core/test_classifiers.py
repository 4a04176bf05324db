"""Period labels, rare-class handling, classification metrics and the embedding classifier."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from artsim_pipeline.core.ml.classifiers import (
    OTHER,
    ClassifierConfig,
    confusion_matrix,
    macro_f1,
    per_class_scores,
    period_label,
    period_labels,
    plot_confusion_matrix,
    prepare_labels,
    stratified_split,
    train_classifier,
)


@pytest.mark.parametrize(
    "begin, end, expected",
    [
        (1880, 1890, "late 19th century (1850-1899)"),
        (1890, 1880, "late 19th century (1850-1899)"),  # reversed range
        (1500, None, "renaissance (1400-1599)"),
        (None, 1620, "baroque (1600-1749)"),
        (-500, -400, "classical antiquity (500 BC-AD 499)"),  # midpoint -450
        (-1400, -1300, "ancient (3000-501 BC)"),
        (-8000, -5000, "prehistoric (before 3000 BC)"),
        (1200, 1250, "medieval (500-1399)"),
        (1945, 2020, "contemporary (1945- )"),
        (None, None, None),
        (1000, 1900, None),  # a 900-year range across periods is too vague to place
        (1000, 1350, "medieval (500-1399)"),  # wide, but inside one period
    ],
)
def test_epoch_labels(begin, end, expected):
    assert period_label(begin, end) == expected


@pytest.mark.parametrize(
    "begin, end, expected",
    [
        (1801, 1900, "19th century"),
        (1900, 1900, "19th century"),  # 1900 is the last year of the 19th century
        (1901, 1901, "20th century"),
        (2001, 2001, "21st century"),
        (1050, 1050, "11th century"),
        (1, 1, "1st century"),
        (0, 0, "1st century BC"),
        (-450, -450, "5th century BC"),
        (-1250, -1150, "13th century BC"),
    ],
)
def test_century_labels(begin, end, expected):
    assert period_label(begin, end, scheme="century") == expected


def test_period_labels_over_columns():
    assert period_labels([1880, None], [1890, None]) == ["late 19th century (1850-1899)", None]
    with pytest.raises(ValueError):
        period_label(1, 2, scheme="dynasty")


def test_rare_classes_merge_into_other_or_are_dropped():
    labels = ["a"] * 12 + ["b"] * 6 + ["c"] * 5 + [None, ""] + ["d"] * 3
    merged, report = prepare_labels(labels, min_class_count=10, rare_classes="other")
    assert merged.count("a") == 12 and merged.count(OTHER) == 14 and merged.count(None) == 2
    assert report["rare_classes"] == ["b", "c", "d"] and report["n_unlabelled"] == 2
    dropped, report = prepare_labels(labels, min_class_count=10, rare_classes="drop")
    assert set(dropped) == {"a", None} and report["n_excluded"] == 16
    # an "other" class that is itself too small is excluded as well
    small, report = prepare_labels(["a"] * 12 + ["b"] * 3, min_class_count=10)
    assert set(small) == {"a", None} and report["n_other_dropped"] == 3


def test_stratified_split_is_seeded_disjoint_and_covers_every_class():
    y = np.array([0] * 20 + [1] * 8 + [2] * 2)
    train, test = stratified_split(y, 0.25, seed=1)
    assert set(train).isdisjoint(test) and len(train) + len(test) == len(y)
    assert set(y[train]) == set(y[test]) == {0, 1, 2}
    assert [int((y[test] == c).sum()) for c in range(3)] == [5, 2, 1]
    again = stratified_split(y, 0.25, seed=1)
    assert np.array_equal(train, again[0]) and np.array_equal(test, again[1])


def test_per_class_scores_and_macro_f1_by_hand():
    y_true = np.array([0, 0, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 0])
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    s = per_class_scores(cm)
    assert s["precision"].tolist() == pytest.approx([1 / 2, 2 / 3, 0.0])
    assert s["recall"].tolist() == pytest.approx([1 / 2, 1.0, 0.0])
    assert s["f1"].tolist() == pytest.approx([0.5, 0.8, 0.0])
    assert macro_f1(y_true, y_pred, 3) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def blobs(seed=0, dim=32):
    """Separable but noisy classes of unequal size, plus two rare classes (merged into other)."""
    rng = np.random.default_rng(seed)
    sizes = {"Paintings": 120, "Drawings and Prints": 70, "Arms and Armor": 40, "Asian Art": 30, "rare1": 6, "rare2": 6}
    centres = rng.standard_normal((len(sizes), dim)) * 1.5
    X, labels = [], []
    for centre, (name, n) in zip(centres, sizes.items()):
        X.append(centre + rng.standard_normal((n, dim)))
        labels += [name] * n
    X = np.vstack(X)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    order = rng.permutation(len(labels))
    return X[order].astype(np.float32), [labels[i] for i in order]


def test_classifier_beats_the_majority_baseline_and_draws_a_confusion_matrix():
    X, labels = blobs()
    labels[0] = None  # an unlabelled row is excluded, not guessed
    config = ClassifierConfig(epochs=60, num_threads=1, seed=3)
    result = train_classifier(X, labels, config, task="department")
    assert result.classes == ["Arms and Armor", "Asian Art", "Drawings and Prints", "Paintings", OTHER]
    assert result.majority_class == "Paintings"
    assert result.accuracy >= result.baseline_accuracy + 0.3
    assert result.macro_f1 >= result.baseline_macro_f1 + 0.4
    assert result.n_train + result.n_test == len(labels) - 1
    assert result.confusion.sum() == result.n_test
    assert {row["class"] for row in result.per_class} == set(result.classes)
    assert all(0 <= row["f1"] <= 1 for row in result.per_class)
    assert result.metrics("department_")["department_macro_f1"] == result.macro_f1
    assert result.dropped["rare_classes"] == ["rare1", "rare2"] and result.dropped["n_unlabelled"] == 1

    png = plot_confusion_matrix(result.confusion, result.classes)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000

    again = train_classifier(X, labels, config, task="department")
    assert (again.accuracy, again.macro_f1) == (result.accuracy, result.macro_f1)
    assert again.predict(X[:20]) == result.predict(X[:20])
    # the model pickles by reference (what mlflow.pytorch's pickle format does)
    restored = pickle.loads(pickle.dumps(result.model))
    assert type(restored).__name__ == "EmbeddingClassifier"


def test_classifier_errors_are_raised():
    X, labels = blobs()
    with pytest.raises(ValueError, match="2 classes"):
        train_classifier(X, ["only"] * len(labels), ClassifierConfig(epochs=1))
    with pytest.raises(ValueError):
        train_classifier(X[:10], labels, ClassifierConfig(epochs=1))
    with pytest.raises(ValueError):
        ClassifierConfig(rare_classes="guess")
