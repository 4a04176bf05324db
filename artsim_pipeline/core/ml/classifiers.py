"""Classifiers on artwork embeddings: Met department and period (no Dagster import).

* `period_label(date_begin, date_end)`: an art-historical epoch (default) or a century label from
  the midpoint of the date range; ``None`` when both ends are missing or the range is wider than
  `max_span` years and crosses a period boundary (too vague to place).
* `train_classifier(X, labels, config)`: a small torch classifier (linear by default, or a
  one-hidden-layer MLP) on standardised embeddings, trained on a seeded stratified split, scored
  on the held-out part against a majority-class baseline.

Rare classes: a label seen fewer than ``min_class_count`` times is merged into ``"other"``
(``rare_classes="other"``, the default) or its rows are excluded (``"drop"``). If the merged
``"other"`` class is itself still below ``min_class_count`` its rows are excluded. Rows whose
label is None/empty are always excluded. The counts are reported in ``result.dropped``.

Metrics on the test part: accuracy; macro-F1 (unweighted mean of per-class F1 over all kept
classes; a class never predicted has precision 0); per-class precision/recall/F1/support; the
confusion matrix (rows = true class, columns = predicted). Errors are raised, not turned into
metrics.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

OTHER = "other"

# (exclusive upper bound of the midpoint year, label), in order.
EPOCHS: tuple[tuple[float, str], ...] = (
    (-3000, "prehistoric (before 3000 BC)"),
    (-500, "ancient (3000-501 BC)"),
    (500, "classical antiquity (500 BC-AD 499)"),
    (1400, "medieval (500-1399)"),
    (1600, "renaissance (1400-1599)"),
    (1750, "baroque (1600-1749)"),
    (1850, "neoclassical & romantic (1750-1849)"),
    (1900, "late 19th century (1850-1899)"),
    (1945, "early 20th century (1900-1944)"),
    (math.inf, "contemporary (1945- )"),
)


def _ordinal(n: int) -> str:
    if 10 <= n % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def period_label(
    date_begin: int | None, date_end: int | None, scheme: str = "epoch", max_span: int = 300
) -> str | None:
    """Period of a dated work (years as ints, negative = BC).

    The midpoint ``floor((begin + end) / 2)`` decides; one missing end uses the other; a reversed
    range is swapped. ``scheme="epoch"`` gives one of `EPOCHS` (e.g. "baroque (1600-1749)");
    ``scheme="century"`` gives e.g. "19th century" or "5th century BC" (year 0 counts as 1 BC).
    Returns None when both ends are missing, or when the range is wider than `max_span` years
    and its two ends fall in different periods (e.g. 1000-1900); a wide range inside one period
    (e.g. 8000-5000 BC, prehistoric) keeps its label.
    """
    if scheme not in ("epoch", "century"):
        raise ValueError(f"scheme must be 'epoch' or 'century', got {scheme!r}")
    begin = None if date_begin is None or (isinstance(date_begin, float) and math.isnan(date_begin)) else int(date_begin)
    end = None if date_end is None or (isinstance(date_end, float) and math.isnan(date_end)) else int(date_end)
    if begin is None and end is None:
        return None
    if begin is None:
        begin = end
    if end is None:
        end = begin
    if begin > end:
        begin, end = end, begin
    label = _label_of_year((begin + end) // 2, scheme)
    if end - begin > max_span and not (_label_of_year(begin, scheme) == label == _label_of_year(end, scheme)):
        return None
    return label


def _label_of_year(year: int, scheme: str) -> str:
    if scheme == "century":
        if year > 0:
            return f"{_ordinal((year - 1) // 100 + 1)} century"
        return f"{_ordinal((-year) // 100 + 1)} century BC"
    for upper, label in EPOCHS:
        if year < upper:
            return label
    raise AssertionError("unreachable")  # pragma: no cover


def period_labels(
    date_begin: Sequence[int | None], date_end: Sequence[int | None], scheme: str = "epoch", max_span: int = 300
) -> list[str | None]:
    """`period_label` over two aligned columns."""
    if len(date_begin) != len(date_end):
        raise ValueError("date_begin and date_end differ in length")
    return [period_label(b, e, scheme, max_span) for b, e in zip(date_begin, date_end)]


# ----------------------------------------------------------------------------------------------
# Labels and splits


@dataclass
class ClassifierConfig:
    hidden_dim: int = 0  # 0: linear (softmax regression); >0: one hidden layer MLP
    dropout: float = 0.1
    lr: float = 1e-2
    weight_decay: float = 1e-3
    epochs: int = 100
    batch_size: int = 512
    test_fraction: float = 0.25
    min_class_count: int = 10
    rare_classes: str = "other"  # "other" | "drop"
    class_weighted: bool = True  # inverse-frequency weights in the loss
    seed: int = 0
    num_threads: int | None = None

    def __post_init__(self) -> None:
        if self.rare_classes not in ("other", "drop"):
            raise ValueError("rare_classes must be 'other' or 'drop'")
        if self.min_class_count < 2:
            raise ValueError("min_class_count must be >= 2 (one train and one test example)")
        if not 0 < self.test_fraction < 1:
            raise ValueError("test_fraction must be in (0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prepare_labels(
    labels: Sequence[str | None], min_class_count: int = 10, rare_classes: str = "other"
) -> tuple[list[str | None], dict[str, Any]]:
    """Apply the rare-class rule; returns (labels with None for excluded rows, report)."""
    clean = [None if (x is None or (isinstance(x, str) and not x.strip())) else str(x) for x in labels]
    counts = Counter(x for x in clean if x is not None)
    rare = sorted(c for c, n in counts.items() if n < min_class_count)
    out: list[str | None] = []
    for x in clean:
        if x is not None and x in rare:
            x = OTHER if rare_classes == "other" else None
        out.append(x)
    n_other = sum(1 for x in out if x == OTHER)
    other_dropped = 0
    if 0 < n_other < min_class_count:
        out = [None if x == OTHER else x for x in out]
        other_dropped = n_other
    report = {
        "n_unlabelled": sum(1 for x in clean if x is None),
        "rare_classes": rare,
        "n_rare_rows": sum(counts[c] for c in rare),
        "rare_handling": rare_classes,
        "n_other_dropped": other_dropped,
        "n_excluded": sum(1 for x in out if x is None),
    }
    return out, report


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class: shuffle (seeded), ``max(1, round(f * n))`` to test, at least one kept for train."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        if len(members) < 2:
            raise ValueError(f"class {c} has {len(members)} example(s); a split needs >= 2")
        n_test = min(max(1, int(round(test_fraction * len(members)))), len(members) - 1)
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


# ----------------------------------------------------------------------------------------------
# Metrics


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """precision, recall, f1, support per class from a confusion matrix (0 where undefined)."""
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Unweighted mean F1 over the classes present in `y_true`."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    scores = per_class_scores(cm)
    present = scores["support"] > 0
    return float(scores["f1"][present].mean())


# ----------------------------------------------------------------------------------------------
# Model and training


@dataclass
class ClassifierResult:
    task: str
    classes: list[str]
    model: Any  # torch nn.Module (standardisation inside), CPU, eval mode
    accuracy: float
    macro_f1: float
    baseline_accuracy: float
    baseline_macro_f1: float
    majority_class: str
    per_class: list[dict[str, Any]]
    confusion: np.ndarray
    n_train: int
    n_test: int
    train_accuracy: float
    dropped: dict[str, Any] = field(default_factory=dict)
    config: ClassifierConfig | None = None
    test_index: np.ndarray | None = None  # positions (in the caller's rows) of the test part

    def predict(self, X: np.ndarray) -> list[str]:
        import torch

        with torch.inference_mode():
            logits = self.model(torch.as_tensor(np.asarray(X, dtype=np.float32)))
        return [self.classes[i] for i in logits.argmax(dim=1).tolist()]

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """Flat numbers for MLflow (`{prefix}accuracy`, ...)."""
        return {
            f"{prefix}accuracy": self.accuracy,
            f"{prefix}macro_f1": self.macro_f1,
            f"{prefix}baseline_accuracy": self.baseline_accuracy,
            f"{prefix}baseline_macro_f1": self.baseline_macro_f1,
            f"{prefix}train_accuracy": self.train_accuracy,
            f"{prefix}n_classes": float(len(self.classes)),
            f"{prefix}n_train": float(self.n_train),
            f"{prefix}n_test": float(self.n_test),
        }


_CLASSES: dict[str, type] = {}


def _embedding_classifier_class() -> type:
    """`EmbeddingClassifier`, defined on first use so that importing this module stays torch-free.

    It is reachable as ``classifiers.EmbeddingClassifier`` (module `__getattr__`), so pickling
    (e.g. `mlflow.pytorch.log_model`) finds it by reference.
    """
    if "EmbeddingClassifier" not in _CLASSES:
        import torch
        from torch import nn

        class EmbeddingClassifier(nn.Module):
            """Standardise with the train mean/std (buffers), then linear or one-hidden-layer MLP."""

            def __init__(self, in_dim: int, n_classes: int, hidden_dim: int = 0, dropout: float = 0.1):
                super().__init__()
                self.register_buffer("mean", torch.zeros(in_dim))
                self.register_buffer("std", torch.ones(in_dim))
                if hidden_dim > 0:
                    self.net = nn.Sequential(
                        nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, n_classes)
                    )
                else:
                    self.net = nn.Linear(in_dim, n_classes)

            def forward(self, x):
                return self.net((x - self.mean) / self.std)

        EmbeddingClassifier.__module__ = __name__
        EmbeddingClassifier.__qualname__ = "EmbeddingClassifier"
        _CLASSES["EmbeddingClassifier"] = EmbeddingClassifier
    return _CLASSES["EmbeddingClassifier"]


def __getattr__(name: str):
    if name == "EmbeddingClassifier":
        return _embedding_classifier_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _build_model(in_dim: int, n_classes: int, config: ClassifierConfig, mean: np.ndarray, std: np.ndarray):
    import torch

    model = _embedding_classifier_class()(in_dim, n_classes, config.hidden_dim, config.dropout)
    model.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
    model.std.copy_(torch.as_tensor(std, dtype=torch.float32))
    return model


def train_classifier(
    X: np.ndarray, labels: Sequence[str | None], config: ClassifierConfig | None = None, task: str = "label"
) -> ClassifierResult:
    """Train and evaluate a classifier of `labels` (aligned with the rows of `X`)."""
    import torch
    from torch.nn import functional as F

    config = config or ClassifierConfig()
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] != len(labels):
        raise ValueError(f"X {X.shape} does not align with {len(labels)} labels")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or inf")
    kept, report = prepare_labels(labels, config.min_class_count, config.rare_classes)
    rows = np.array([i for i, x in enumerate(kept) if x is not None], dtype=np.int64)
    classes = sorted({kept[i] for i in rows})
    if len(classes) < 2:
        raise ValueError(f"{task}: need >= 2 classes with >= {config.min_class_count} examples, got {classes}")
    index = {c: i for i, c in enumerate(classes)}
    y_all = np.array([index[kept[i]] for i in rows], dtype=np.int64)
    train_local, test_local = stratified_split(y_all, config.test_fraction, config.seed)
    Xtr, ytr = X[rows[train_local]], y_all[train_local]
    Xte, yte = X[rows[test_local]], y_all[test_local]

    mean = Xtr.mean(axis=0)
    std = Xtr.std(axis=0) + 1e-6
    previous_threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = _build_model(X.shape[1], len(classes), config, mean, std)
            counts = np.bincount(ytr, minlength=len(classes)).astype(np.float64)
            weight = None
            if config.class_weighted:
                weight = torch.as_tensor(len(ytr) / (len(classes) * counts), dtype=torch.float32)
            opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
            xt, yt = torch.from_numpy(Xtr), torch.from_numpy(ytr)
            generator = torch.Generator().manual_seed(config.seed)
            model.train()
            for _ in range(config.epochs):
                order = torch.randperm(len(yt), generator=generator)
                for start in range(0, len(yt), config.batch_size):
                    batch = order[start : start + config.batch_size]
                    loss = F.cross_entropy(model(xt[batch]), yt[batch], weight=weight)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"{task}: non-finite classifier loss")
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            model.eval()
            with torch.inference_mode():
                pred = model(torch.from_numpy(Xte)).argmax(dim=1).numpy()
                train_pred = model(xt).argmax(dim=1).numpy()
    finally:
        torch.set_num_threads(previous_threads)

    n_classes = len(classes)
    cm = confusion_matrix(yte, pred, n_classes)
    scores = per_class_scores(cm)
    majority = int(np.bincount(ytr, minlength=n_classes).argmax())
    baseline_pred = np.full_like(yte, majority)
    per_class = [
        {
            "class": classes[i],
            "precision": float(scores["precision"][i]),
            "recall": float(scores["recall"][i]),
            "f1": float(scores["f1"][i]),
            "support": int(scores["support"][i]),
        }
        for i in range(n_classes)
    ]
    return ClassifierResult(
        task=task,
        classes=classes,
        model=model,
        accuracy=float((pred == yte).mean()),
        macro_f1=macro_f1(yte, pred, n_classes),
        baseline_accuracy=float((baseline_pred == yte).mean()),
        baseline_macro_f1=macro_f1(yte, baseline_pred, n_classes),
        majority_class=classes[majority],
        per_class=per_class,
        confusion=cm,
        n_train=len(ytr),
        n_test=len(yte),
        train_accuracy=float((train_pred == ytr).mean()),
        dropped=report,
        config=config,
        test_index=rows[test_local],
    )


# ----------------------------------------------------------------------------------------------
# Figure


def plot_confusion_matrix(
    confusion: np.ndarray, classes: Sequence[str], normalize: bool = True, title: str | None = None
) -> bytes:
    """Confusion matrix as PNG bytes (rows: true, columns: predicted; row-normalised by default)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from artsim_pipeline.core.ml.metrics import png_bytes

    cm = np.asarray(confusion, dtype=np.float64)
    if cm.shape != (len(classes), len(classes)):
        raise ValueError(f"confusion {cm.shape} does not match {len(classes)} classes")
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    n = len(classes)
    size = min(4 + 0.45 * n, 22)
    fig = Figure(figsize=(size + 1.5, size), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    labels = [c if len(c) <= 32 else c[:30] + ".." for c in classes]
    ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 25:
        threshold = shown.max() / 2 if shown.size else 0
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=6,
                            color="white" if shown[i, j] > threshold else "black")
    ax.set_title(title or ("confusion matrix (row-normalised)" if normalize else "confusion matrix"))
    fig.tight_layout()
    return png_bytes(fig)
