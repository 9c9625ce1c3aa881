"""Segmentation: where does the topic change in a document of standard-library docstring sentences?

Data: Choi-style documents (trainables/data/segmentation_documents.py) built from the docstrings
that ship with Python, split by source module; or a user's Parquet file with the columns of SCHEMA.
The documents depend on the data settings only (their ``seed`` picks modules and draws), so every
sweep of a preset sees the same documents. Models: sentence encoder -> attention over sentences
(``self``, ``localized``, ``boundary_aware``) -> a boundary logit per sentence. Loss: binary
cross-entropy over real sentences, positives weighted by the square root of the batch's
negatives-to-positives ratio (boundaries are about one sentence in seven). Full balancing makes
the model flag a boundary whenever p > 1/7 and over-predict (validation Pk 0.51 after 8 epochs of
the quick preset, worse than predicting none: 0.457); no weighting predicts none (0.456); the
square root gave 0.442. Main metric: Pk (lower is better); also WindowDiff, boundary F1,
precision and recall, at the logit threshold 0.
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
from trainables.families import Family, Preset, select_columns
from trainables.metrics.segmentation import SEGMENTATION_METRICS, per_document_scores

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
    "default": Preset(trials=32, epochs=20, data={"n_documents": 4000}),
}


def load_data(settings: Mapping[str, Any], path: Path | None, seed: int) -> DataSplits:
    if path is not None:
        return read_user_table(path, SCHEMA, seed)
    documents = checked_settings("segmentation", SegmentationDocuments, settings)
    return select_columns(load_documents(documents), SCHEMA.names)


def model_context(train: Arrays) -> dict[str, Any]:
    # The hashing vocabulary, not just the ids seen in training: unseen words hash below it too.
    return {"vocab_size": max(SegmentationDocuments().vocab_size, int(train["tokens"].max()) + 1)}


def loss(outputs: Sequence[torch.Tensor], batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    (logits,) = outputs
    mask, target = batch["sentence_mask"], batch["boundary"]
    positives = target[mask].sum()
    weight = ((mask.sum() - positives) / positives.clamp(min=1.0)).clamp(min=1.0).sqrt()
    return F.binary_cross_entropy_with_logits(logits[mask], target[mask], pos_weight=weight)


def row_scores(outputs: Sequence[np.ndarray], arrays: Arrays) -> dict[str, np.ndarray]:
    (logits,) = outputs
    return per_document_scores((logits > 0).astype(np.float32), arrays["boundary"], arrays["sentence_mask"])


def evaluate(outputs: Sequence[np.ndarray], arrays: Arrays) -> dict[str, float]:
    return {name: float(values.mean()) for name, values in row_scores(outputs, arrays).items()}


FAMILY = Family(
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
    evaluate=evaluate,
    row_scores=row_scores,
)
