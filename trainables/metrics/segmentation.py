"""Text-segmentation metrics, per document and then averaged over documents.

A document of n sentences is a 0/1 vector b of length n (padded to S with the mask): b[i] = 1 when
a segment boundary follows sentence i. Only the n - 1 gaps between sentences can hold a boundary,
so b[n - 1] is ignored in both reference and prediction.

  * Boundary precision, recall and F1: exact matches of boundary positions. A document with no
    predicted boundary has precision 0 (and F1 0); the reference always has one in Choi-style
    documents, and a document with none has recall 1.
  * Pk (Beeferman, Berger and Lafferty 1999): slide a probe of width k over the sentences; for each
    pair (i, i + k), i = 0 .. n - k - 1, ask whether the two sentences are in the same segment, in
    the reference and in the prediction; Pk is the share of probes where the answers differ.
  * WindowDiff (Pevzner and Hearst 2002): the same probes, but the share where the number of
    boundaries between sentence i and sentence i + k differs, which also penalises near misses
    and extra boundaries that Pk lets through.
  * k is half the mean reference segment length, rounded half up, at least 1 and at most n - 1.
Lower is better for Pk and WindowDiff, higher for F1.
"""
from __future__ import annotations

import numpy as np

SEGMENTATION_METRICS = ("precision", "recall", "f1", "pk", "window_diff")


def probe_width(reference: np.ndarray) -> int:
    """k for one document's reference boundaries (n,): half its mean segment length, rounded half up."""
    segments = 1 + int(reference[:-1].sum())
    return int(min(max(np.floor(len(reference) / segments / 2 + 0.5), 1), len(reference) - 1))


def boundaries_between(boundary: np.ndarray, k: int) -> np.ndarray:
    """(n - k,) number of boundaries between sentence i and sentence i + k, for each i; ``boundary`` (n,)."""
    before = np.concatenate([[0], np.cumsum(boundary[:-1] != 0)])  # before[j]: boundaries before sentence j
    return before[k:] - before[:-k]


def document_scores(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Metrics of one document: ``predicted`` and ``reference`` (n,) 0/1 boundaries, n >= 2."""
    if len(reference) < 2:
        raise ValueError(f"a document needs at least 2 sentences to hold a boundary, got {len(reference)}")
    hit, truth = predicted[:-1].astype(bool), reference[:-1].astype(bool)
    found = int((hit & truth).sum())
    precision = found / hit.sum() if hit.any() else 0.0
    recall = found / truth.sum() if truth.any() else 1.0
    k = probe_width(reference)
    counted, expected = boundaries_between(predicted, k), boundaries_between(reference, k)
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0,
        "pk": float(np.mean((counted > 0) != (expected > 0))),
        "window_diff": float(np.mean(counted != expected)),
    }


def segmentation_scores(predicted: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Mean over documents of each metric: (N, S) 0/1 predicted and reference boundaries, (N, S) bool mask
    of real sentences (a prefix of each row)."""
    return {name: float(values.mean()) for name, values in per_document_scores(predicted, reference, mask).items()}


def per_document_scores(predicted: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Each metric of each document, (N,) per metric; arguments as :func:`segmentation_scores`."""
    scores = [document_scores(p[m], r[m]) for p, r, m in zip(predicted, reference, mask.astype(bool))]
    return {name: np.array([score[name] for score in scores]) for name in SEGMENTATION_METRICS}
