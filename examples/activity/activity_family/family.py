"""The ``activity`` family: which of four activities (still, walk, run, cycle) a 5.12-s window of
wrist acceleration shows. Data: the user's Parquet file (``--data``) with the columns of SCHEMA;
the split keeps each subject's windows together. Main metric: the error rate (lower is better).

Reference, the non-learned method the networks must beat: nearest class centre on two features
of the acceleration magnitude, its dominant frequency and its energy, standardised on the
training split.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from trainables.data import DataSplits, read_user_table
from trainables.data.tables import Arrays, Column, Schema
from trainables.errors import DataError
from trainables.families import Family, Predictor, Preset, register_family

HERE = Path(__file__).parent
ACTIVITIES = ("still", "walk", "run", "cycle")
CLASSES = len(ACTIVITIES)
RATE_HZ = 50.0  # samples per second of the recordings

SCHEMA = Schema((
    Column("signal", "float32", (3, "T"), "acceleration along the device's x, y, z axes, m/s^2"),
    Column("activity", "int64", (), f"target: {', '.join(f'{i} {name}' for i, name in enumerate(ACTIVITIES))}", (0, CLASSES)),
    Column("subject", "int64", (), "who wore the watch: a subject's windows stay in one split", (0, None)),
))  # fmt: skip

PRESETS = {
    "smoke": Preset(trials=2, epochs=2, data={}),
    "quick": Preset(trials=6, epochs=8, data={}),
    "default": Preset(trials=24, epochs=20, data={}),
}


def load_data(settings: Mapping[str, Any], path: Path | None, seed: int) -> DataSplits:
    if path is None:
        raise DataError("the activity family trains on your own recordings: pass --data FILE.parquet "
                        "(python -m activity_family.simulate FILE.parquet writes a simulated one)")  # fmt: skip
    return read_user_table(path, SCHEMA, seed, group="subject")


def model_context(train: Arrays) -> dict[str, Any]:
    signal = train["signal"]
    return {"classes": CLASSES, "signal_mean": signal.mean(axis=(0, 2)).tolist(), "signal_std": signal.std(axis=(0, 2)).tolist()}


def loss(outputs: Sequence[torch.Tensor], batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    (logits,) = outputs
    return F.cross_entropy(logits, batch["activity"])


def row_scores(outputs: Sequence[np.ndarray], arrays: Arrays) -> dict[str, np.ndarray]:
    (logits,) = outputs
    targets = arrays["activity"]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return {
        "error_rate": (logits.argmax(axis=1) != targets).astype(np.float64),
        "cross_entropy": -np.take_along_axis(log_probabilities, targets[:, None], axis=1)[:, 0],
    }


def magnitude_features(signal: np.ndarray) -> np.ndarray:
    """(N, 2): the dominant frequency (Hz) and the standard deviation of |acceleration|."""
    magnitude = np.linalg.norm(signal, axis=1)
    dynamic = magnitude - magnitude.mean(axis=1, keepdims=True)
    spectrum = np.abs(np.fft.rfft(dynamic, axis=1))
    frequencies = np.fft.rfftfreq(signal.shape[-1], 1 / RATE_HZ)
    return np.stack([frequencies[spectrum[:, 1:].argmax(axis=1) + 1], dynamic.std(axis=1)], axis=1)


def nearest_centre_reference(splits: DataSplits) -> Predictor:
    features = magnitude_features(splits.train["signal"])
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-9
    labels = splits.train["activity"]
    centres = np.stack([((features - mean) / std)[labels == c].mean(axis=0) for c in range(CLASSES)])

    def predict(arrays: Arrays) -> list[np.ndarray]:
        standardised = (magnitude_features(arrays["signal"]) - mean) / std
        distance = ((standardised[:, None, :] - centres[None]) ** 2).sum(axis=-1)
        return [-distance]  # logits: the nearest centre scores highest

    return predict


FAMILY = register_family(Family(
    name="activity",
    description="activity recognition from wrist accelerometer windows (example plugin: conv baseline, attention with ALiBi)",
    metric="error_rate",
    mode="min",
    schema=SCHEMA,
    inputs=("signal",),
    targets=("activity",),
    outputs=("logits",),
    metrics=("error_rate", "cross_entropy"),
    presets=PRESETS,
    load_data=load_data,
    model_context=model_context,
    loss=loss,
    row_scores=row_scores,
    reference=nearest_centre_reference,
    group="subject",
    search_space_file=HERE / "search_space.yaml",
    promotion_file=HERE / "promotion.yaml",
))  # fmt: skip
