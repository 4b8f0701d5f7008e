"""Reference figures for graft's evaluation report, from scikit-learn.

Reads {"probabilities": [[...]], "labels": [...], "classes": C, "bins": B}
from argv[1] and prints the same figures graft computes, as JSON: the
confusion matrix, per-class precision/recall/F1/support (zero_division=0),
macro F1 over the labels present in truth or predictions (scikit-learn's
default), support-weighted F1, accuracy, top-5 accuracy, log loss, and the
expected calibration error by its definition (equal-width bins over (0, 1]
of the top-1 probability; sum of |accuracy - confidence| * share of images).
"""
import json
import math
import sys
import warnings

import numpy as np
from sklearn import metrics

warnings.simplefilter("ignore")  # k >= classes: a perfect top-k, which is what graft reports too

data = json.load(open(sys.argv[1]))
p = np.asarray(data["probabilities"], dtype=np.float64)
y = np.asarray(data["labels"], dtype=np.int64)
c = int(data["classes"])
bins = int(data["bins"])
labels = list(range(c))
pred = p.argmax(axis=1)

precision, recall, f1, support = metrics.precision_recall_fscore_support(
    y, pred, labels=labels, zero_division=0)
out = {
    "confusion": metrics.confusion_matrix(y, pred, labels=labels).reshape(-1).tolist(),
    "precision": precision.tolist(),
    "recall": recall.tolist(),
    "f1": f1.tolist(),
    "support": support.tolist(),
    "macro_f1": metrics.f1_score(y, pred, average="macro", zero_division=0),
    "weighted_f1": metrics.f1_score(y, pred, labels=labels, average="weighted", zero_division=0),
    "accuracy": metrics.accuracy_score(y, pred),
    "top5_accuracy": metrics.top_k_accuracy_score(y, p, k=min(5, c), labels=labels) if c > 2 else metrics.accuracy_score(y, pred),
    "log_loss": metrics.log_loss(y, p, labels=labels),
}
confidence = p.max(axis=1)
correct = (pred == y).astype(np.float64)
ece = 0.0
for b in range(bins):
    lower, upper = b / bins, (b + 1) / bins
    inside = (confidence > lower) & (confidence <= upper)
    if inside.any():
        ece += abs(correct[inside].mean() - confidence[inside].mean()) * inside.sum() / len(y)
out["ece"] = ece
print(json.dumps(out))
