"""Segmentation: where does the topic change in a document of standard-library docstring sentences?

Data: Choi-style documents (trainables/data/segmentation_documents.py) built from the docstrings
that ship with Python, split by source module; or a user's Parquet file with the columns of SCHEMA.
The documents depend on the data settings only (their ``seed`` picks modules and draws), so every
sweep of a preset sees the same documents. Models: sentence encoder -> attention over sentences
(``self``, ``localized``, ``boundary_aware``) -> a boundary logit per sentence; the ``*_cohesion``
variants add lexical-cohesion features (trainables/models/text_tiling.py). Loss: binary
cross-entropy over real sentences, positives weighted by the square root of the batch's
negatives-to-positives ratio (boundaries are about one sentence in seven). Full balancing made
the seed model over-predict (validation Pk 0.51 after 8 epochs of the quick preset, worse than
predicting none: 0.457); no weighting predicted none (0.456); the square root gave 0.442.

Decoding, the same for every model and the reference (in ``row_scores``, so in ``evaluate`` and
promotion alike): the boundaries are the segmentation whose segments have 3 to 11 sentences (the
generator's lengths) with the largest sum of boundary logits (dynamic programming). Thresholding
at 0 instead let the reference's test Pk rise from 0.219 to 0.33 on the quick preset's data and
logistic regression on the cohesion features from 0.20 to 0.27-0.31.

Reference: TextTiling with idf weights (depth scores of the block cohesion), its block size and
threshold chosen on the training split. Main metric: Pk (lower is better); also WindowDiff,
boundary F1, precision and recall, all of the decoded boundaries.

Presets: ``standard`` (2000 documents, 14 epochs, 8 trials, about 11 s of one core per epoch) is
the smallest that learns well. Test Pk over 3 seeds of ``self_cohesion`` on its data: 0.204 +- 0.003
at learning rate 1e-3 and 6 epochs, 0.195 +- 0.003 at 2e-3 and 10, 0.192 +- 0.001 at 2e-3 and 14
(validation still falling at 10); the reference 0.240, the seed ``self`` 0.469 +- 0.002. On the
quick preset's 800 documents ``self_cohesion`` only ties the reference (0.217 +- 0.011 vs 0.219).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from trainables.data import DataSplits, checked_settings, read_user_table
from trainables.data.segmentation_documents import SegmentationDocuments, load_documents
from trainables.data.tables import Arrays, Column, Schema
from trainables.families import Family, Predictor, Preset, register_family, select_columns
from trainables.metrics.segmentation import SEGMENTATION_METRICS, per_document_scores, segmentation_scores
from trainables.models.text_tiling import block_cohesion, decode_boundaries, depth_scores, word_idf

SCHEMA = Schema(
    (
        Column("tokens", "int64", ("S", "T"), "hashed words of each sentence slot, 0 = padding", (0, None)),
        Column("sentence_mask", "bool", ("S",), "true for a real sentence (a prefix of the slots)"),
        Column("boundary", "float32", ("S",), "target: 1 when a segment boundary follows the sentence"),
    )
)

PRESETS = {
    "smoke": Preset(trials=3, epochs=2, data={"n_documents": 60}),
    "quick": Preset(trials=8, epochs=6, data={"n_documents": 800}),
    # the smallest sweep that learns (see the module docstring): about 10 minutes on 2 CPU cores
    "standard": Preset(trials=8, epochs=14, data={"n_documents": 2000}),
    "default": Preset(trials=32, epochs=20, data={"n_documents": 4000}),
}


def load_data(settings: Mapping[str, Any], path: Path | None, seed: int) -> DataSplits:
    if path is not None:
        return read_user_table(path, SCHEMA, seed)
    documents = checked_settings("segmentation", SegmentationDocuments, settings)
    return select_columns(load_documents(documents), SCHEMA.names)


# Segment lengths the decoder allows: the generator's (Choi's 3 to 11 sentences).
SHORTEST_SEGMENT, LONGEST_SEGMENT = SegmentationDocuments().min_sentences, SegmentationDocuments().max_sentences


def model_context(train: Arrays) -> dict[str, Any]:
    # The hashing vocabulary, not just the ids seen in training: unseen words hash below it too.
    vocab_size = max(SegmentationDocuments().vocab_size, int(train["tokens"].max()) + 1)
    idf = word_idf(train["tokens"], train["sentence_mask"], vocab_size)
    return {"vocab_size": vocab_size, "word_idf": np.round(idf, 4).tolist()}


def loss(outputs: Sequence[torch.Tensor], batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    (logits,) = outputs
    mask, target = batch["sentence_mask"], batch["boundary"]
    positives = target[mask].sum()
    weight = ((mask.sum() - positives) / positives.clamp(min=1.0)).clamp(min=1.0).sqrt()
    return F.binary_cross_entropy_with_logits(logits[mask], target[mask], pos_weight=weight)


def decode(logits: np.ndarray, sentence_mask: np.ndarray) -> np.ndarray:
    """(N, S) 0/1 boundaries from logits (N, S): the segmentation with segments of SHORTEST_SEGMENT
    to LONGEST_SEGMENT sentences whose boundaries have the largest total logit. Every model and
    the reference are scored through it."""
    return decode_boundaries(logits, sentence_mask, SHORTEST_SEGMENT, LONGEST_SEGMENT)


def row_scores(outputs: Sequence[np.ndarray], arrays: Arrays) -> dict[str, np.ndarray]:
    (logits,) = outputs
    return per_document_scores(decode(logits, arrays["sentence_mask"]), arrays["boundary"], arrays["sentence_mask"])


REFERENCE_WINDOWS = (2, 3, 4, 5, 6, 8, 10)  # sentences per TextTiling block, chosen on the training split
REFERENCE_THRESHOLDS = np.linspace(0.0, 1.0, 21)  # depth-score offsets, chosen likewise


def text_tiling_reference(splits: DataSplits) -> Predictor:
    """TextTiling with idf weights (see trainables/models/text_tiling.py): logits are depth scores
    of the block cohesion minus a threshold; the block size and the threshold are those with the
    lowest Pk on the training split (no learning: two numbers chosen by a grid)."""
    train = splits.train
    idf = torch.from_numpy(word_idf(train["tokens"], train["sentence_mask"], model_context(train)["vocab_size"]))

    def depths(arrays: Arrays, windows: Sequence[int]) -> np.ndarray:
        tokens, mask = torch.from_numpy(arrays["tokens"]), torch.from_numpy(arrays["sentence_mask"])
        cohesion = block_cohesion(tokens, mask, idf, windows)  # (N, S, W)
        return torch.stack([depth_scores(cohesion[..., k], mask) for k in range(len(windows))], dim=-1).numpy()

    def train_pk(depth: np.ndarray) -> float:
        return segmentation_scores(decode(depth, train["sentence_mask"]), train["boundary"], train["sentence_mask"])["pk"]

    train_depths = depths(train, REFERENCE_WINDOWS)  # (N, S, W)
    _, window, threshold = min(
        (train_pk(train_depths[..., k] - t), w, t) for k, w in enumerate(REFERENCE_WINDOWS) for t in REFERENCE_THRESHOLDS
    )

    def predict(arrays: Arrays) -> list[np.ndarray]:
        return [(depths(arrays, (window,))[..., 0] - threshold).astype(np.float32)]

    return predict


FAMILY = register_family(Family(
    name="segmentation",
    description="text segmentation of documents of stdlib docstrings (self, localized, boundary-aware attention over sentences)",
    metric="pk",
    mode="min",
    schema=SCHEMA,
    inputs=("tokens", "sentence_mask"),
    targets=("boundary", "sentence_mask"),
    outputs=("boundary_logit",),
    metrics=SEGMENTATION_METRICS,
    presets=PRESETS,
    load_data=load_data,
    model_context=model_context,
    loss=loss,
    row_scores=row_scores,
    reference=text_tiling_reference,
))
