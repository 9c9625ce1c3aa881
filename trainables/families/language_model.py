"""Language model: predict the next character of standard-library docstrings.

Data: character windows (trainables/data/char_sequences.py) of the text that ships with Python,
split by source module; or a user's Parquet file with the columns of SCHEMA (``targets`` is
``inputs`` shifted by one character). Models: a small causal transformer whose attention is dense
``softmax`` (the baseline), exact ``tiled`` or ``hyperbolic``. Loss: cross-entropy of the next
character. Main metric: bits per character on the split (lower is better); also accuracy.

Reference: an interpolated (modified) Kneser-Ney character n-gram model fitted on the training
windows, its order (5 to 9) chosen on the validation windows, reading inside each window as the
networks do (models/ngram.py). Measured (validation / test bits per character, the order chosen
was 9 each time; fitting and choosing the order took 2 to 11 CPU-seconds): quick windows 1.997 /
2.009 (order 5: 2.065, order 7: 2.006); all windows of 128 characters 1.878 / 1.883 (order 7:
1.895); all windows of 256 characters 1.868 / 1.869. A trigram model reaches 2.84 on the quick
validation windows.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from trainables.data import DataSplits, checked_settings, read_user_table
from trainables.data.char_sequences import VOCAB_SIZE, CharSequences, load_sequences
from trainables.data.tables import Arrays, Column, Schema
from trainables.families import Family, Predictor, Preset, register_family, select_columns
from trainables.metrics.language_model import bits_per_character
from trainables.models.ngram import KneserNey

SCHEMA = Schema(
    (
        Column("inputs", "int64", ("T",), "characters as tokens (see char_sequences.VOCABULARY)", (0, VOCAB_SIZE)),
        Column("targets", "int64", ("T",), "target: the next character of each input position", (0, VOCAB_SIZE)),
    )
)

PRESETS = {
    "smoke": Preset(trials=3, epochs=2, data={"sequence_length": 64, "max_sequences": 240}),
    "quick": Preset(trials=8, epochs=6, data={"sequence_length": 128, "max_sequences": 3000}),
    # all windows of 128 characters (6,077 for training, 778k characters): about 120 CPU-seconds per
    # epoch averaged over the swept architectures (local_softmax 90, local_tiled 108, local_hyperbolic
    # 160, measured under load), so 5 trials x 6 epochs at 2 concurrent trials take about 18 minutes
    # with ASHA stopping most trials after 2 epochs, 30 minutes if it stopped none
    "standard": Preset(trials=5, epochs=6, data={"sequence_length": 128}),
    "default": Preset(trials=32, epochs=20, data={"sequence_length": 256}),
}


def load_data(settings: Mapping[str, Any], path: Path | None, seed: int) -> DataSplits:
    if path is not None:
        return read_user_table(path, SCHEMA, seed)
    windows = load_sequences(checked_settings("language_model", CharSequences, settings))
    for arrays in (windows.train, windows.validation, windows.test):
        tokens = arrays.pop("tokens")
        arrays.update(inputs=tokens[:, :-1], targets=tokens[:, 1:])
    return select_columns(windows, SCHEMA.names)


def model_context(train: Arrays) -> dict[str, Any]:
    return {"vocab_size": VOCAB_SIZE, "sequence_length": int(train["inputs"].shape[1])}


def loss(outputs: Sequence[torch.Tensor], batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    (logits,) = outputs
    return F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten())


def row_scores(outputs: Sequence[np.ndarray], arrays: Arrays) -> dict[str, np.ndarray]:
    """Bits per character and accuracy of each window (all windows have the same length)."""
    (logits,) = outputs  # (N, T, V)
    targets = arrays["targets"]
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_normaliser = np.log(np.exp(shifted).sum(axis=-1))  # (N, T)
    target_logit = np.take_along_axis(shifted, targets[..., None], axis=-1)[..., 0]
    return {
        "bits_per_character": bits_per_character(np.mean(log_normaliser - target_logit, axis=1)),
        "accuracy": np.mean(logits.argmax(-1) == targets, axis=1),
    }


REFERENCE_ORDERS = range(5, 10)  # n-gram orders tried on the validation split


def kneser_ney_reference(splits: DataSplits) -> Predictor:
    """Interpolated Kneser-Ney n-gram model (models/ngram.py) fitted on the training windows, its
    order (5 to 9) chosen on the validation windows; it predicts log-probabilities as ``logits``."""
    train = splits.train
    model = KneserNey(np.concatenate([train["inputs"], train["targets"][:, -1:]], axis=1), VOCAB_SIZE)

    def validation_bits(order: int) -> float:
        outputs = [model.log_probabilities(splits.validation["inputs"], order)]
        return float(row_scores(outputs, splits.validation)["bits_per_character"].mean())

    order = min(REFERENCE_ORDERS, key=validation_bits)
    return lambda arrays: [model.log_probabilities(arrays["inputs"], order)]  # (N, T, V)


FAMILY = register_family(Family(
    name="language_model",
    description="character-level language model on stdlib docstrings (dense softmax, tiled and hyperbolic attention)",
    metric="bits_per_character",
    mode="min",
    schema=SCHEMA,
    inputs=("inputs",),
    targets=("targets",),
    outputs=("logits",),
    metrics=("bits_per_character", "accuracy"),
    presets=PRESETS,
    load_data=load_data,
    model_context=model_context,
    loss=loss,
    row_scores=row_scores,
    reference=kneser_ney_reference,
))
