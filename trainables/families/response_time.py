"""Response time: how fast did the subject answer, from one EEG trial?

Data: simulated EEG trials (trainables/data/eeg_simulation.py) or a user's Parquet file with the
columns of SCHEMA; subjects never cross splits, so the test split measures generalisation to new
people. Models: the six CNNs of the EEG seeds, with and without attention, and two timing-aware
attention CNNs (time codes, attention pooling that reads a latency; trainables/models/response_time.py).
Loss: mean squared error in seconds. Main metric: NRMSE = RMSE / standard deviation of the split's
response times (the seeds' metric: 1.0 is as good as predicting the mean); also RMSE and Pearson r.

Reference (what networks must beat): ridge regression on hand-measured ERP features of each trial
(P300 latency three ways, its amplitude, N200 latency, alpha and parietal power; see
trainables/models/erp_features.py), fitted on the training split, its penalty chosen on
validation. Test NRMSE 0.92 on the quick preset's data, 0.74 on the standard preset's.

Presets: ``quick`` (30 subjects, 21 for training) is too small for any network here: the seed
CNN reaches a test NRMSE of 0.96 and the timing CNN 0.87 (3 seeds), both overfitting within 1-3
epochs. ``standard`` (120 subjects x 120 trials, 84 subjects for training; 12 trials x 12
epochs) is the smallest measured size at which the timing CNN beats the reference by more than
10%: 0.62 +- 0.02 over 3 seeds against 0.74 (the seed CNN: 0.77). Data scaling of the timing
CNN against the reference, test NRMSE: 900 trials 0.87 / 0.92, 3,600 0.68 / 0.70, 4,000 (100
subjects x 40) 0.73 / 0.77, 14,400 0.62 / 0.74; its validation NRMSE is still falling at the
12th epoch. Knowing the simulator's true P300 latency alone would give about 0.47-0.51.

Augmentations (the seed's "Phase 2", each a searchable switch, applied to training batches only):
  time_shift       shift each trial by up to 50 ms (zero-filled). Small on purpose: the P300
                   latency carries the response time, so larger shifts would blur the label.
  channel_dropout  zero 10% of the channels of each trial (electrodes that came loose)
  gaussian_noise   add white noise of 10% of the trial's RMS amplitude
  mixup            convex combinations of trial pairs and of their response times (Beta(0.2, 0.2))
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from trainables.data import DataSplits, read_user_table, simulated, split_by_group
from trainables.data.eeg_simulation import CHANNELS, SIMULATOR_VERSION, EEGSimulation, simulate
from trainables.data.tables import Arrays, Column, Schema
from trainables.families import Family, Predictor, Preset, register_family
from trainables.models.erp_features import trial_features

SCHEMA = Schema(
    (
        Column("eeg", "float32", (CHANNELS, "T"), "EEG in microvolts, 129 channels x T samples at 100 Hz"),
        Column("response_time", "float32", (), "target: response time in seconds"),
        Column("subject", "int64", (), "subject id: all trials of a subject stay in one split"),
    )
)

PRESETS = {
    "smoke": Preset(trials=3, epochs=2, data={"n_subjects": 6, "trials_per_subject": 8}),
    "quick": Preset(trials=8, epochs=8, data={"n_subjects": 30, "trials_per_subject": 30}),
    # The smallest sweep that beats the reference by 10% (see the module docstring): 84 training subjects.
    "standard": Preset(trials=12, epochs=12, data={"n_subjects": 120, "trials_per_subject": 120}),
    "default": Preset(trials=32, epochs=40, data={"n_subjects": 60, "trials_per_subject": 50}),
}
MAX_SHIFT_SAMPLES, CHANNEL_DROPOUT, NOISE_FRACTION, MIXUP_ALPHA = 5, 0.1, 0.1, 0.2
RIDGE_PENALTIES = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)  # per training row's worth of standardised features


def load_data(settings: Mapping[str, Any], path: Path | None, seed: int) -> DataSplits:
    if path is not None:
        return read_user_table(path, SCHEMA, seed, group="subject")
    arrays, cache_path = simulated("response_time", EEGSimulation, SIMULATOR_VERSION, simulate, SCHEMA, settings)
    return split_by_group(arrays, arrays["subject"], seed, f"simulated EEG trials ({cache_path.name})")


def model_context(train: Arrays) -> dict[str, Any]:
    target = train["response_time"]
    return {
        "eeg_scale": float(max(train["eeg"].std(), 1e-6)),
        "target_mean": float(target.mean()),
        "target_std": float(max(target.std(), 1e-6)),
    }


def loss(outputs: Sequence[torch.Tensor], batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    (prediction,) = outputs
    return F.mse_loss(prediction, batch["response_time"])


def evaluate(outputs: Sequence[np.ndarray], arrays: Arrays) -> dict[str, float]:
    (prediction,) = outputs
    target = arrays["response_time"].astype(np.float64)
    rmse = float(np.sqrt(np.mean((prediction - target) ** 2)))
    spread = float(target.std())
    pearson = float(np.corrcoef(prediction, target)[0, 1]) if len(target) > 1 and prediction.std() > 0 and spread > 0 else 0.0
    return {"nrmse": rmse / spread if spread > 0 else float("inf"), "rmse_s": rmse, "pearson_r": pearson}


def augment(batch: dict[str, torch.Tensor], config: Mapping[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
    eeg, target = batch["eeg"], batch["response_time"]  # (B, C, T), (B,)
    if config.get("time_shift"):
        eeg = _shift(eeg, generator)
    if config.get("channel_dropout"):
        keep = torch.rand(eeg.shape[:2], generator=generator, device=eeg.device) >= CHANNEL_DROPOUT
        eeg = eeg * keep.unsqueeze(-1)
    if config.get("gaussian_noise"):
        rms = eeg.pow(2).mean(dim=(1, 2), keepdim=True).sqrt()
        eeg = eeg + NOISE_FRACTION * rms * torch.randn(eeg.shape, generator=generator, device=eeg.device)
    if config.get("mixup"):
        weight = torch.distributions.Beta(MIXUP_ALPHA, MIXUP_ALPHA).sample((len(eeg),)).to(eeg.device)
        partner = torch.randperm(len(eeg), generator=generator, device=eeg.device)
        eeg = weight.view(-1, 1, 1) * eeg + (1 - weight.view(-1, 1, 1)) * eeg[partner]
        target = weight * target + (1 - weight) * target[partner]
    return {**batch, "eeg": eeg, "response_time": target}


def _shift(eeg: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each trial moved by its own whole number of samples in [-MAX, MAX], zero-filled."""
    samples = eeg.shape[-1]
    shifts = torch.randint(-MAX_SHIFT_SAMPLES, MAX_SHIFT_SAMPLES + 1, (len(eeg), 1), generator=generator, device=eeg.device)
    source = torch.arange(samples, device=eeg.device) - shifts  # (B, T): where each output sample comes from
    inside = (source >= 0) & (source < samples)
    gathered = eeg.gather(-1, source.clamp(0, samples - 1).unsqueeze(1).expand_as(eeg))
    return gathered * inside.unsqueeze(1)


def erp_regression_reference(splits: DataSplits) -> Predictor:
    """Ridge regression of the response time on hand-measured ERP features (see
    trainables/models/erp_features.py), fitted on the training split; the penalty is the one of
    RIDGE_PENALTIES with the lowest validation RMSE."""
    features = trial_features(splits.train["eeg"])
    centre, scale = features.mean(axis=0), np.maximum(features.std(axis=0), 1e-12)

    def design(measured: np.ndarray) -> np.ndarray:
        """(N, F) features -> (N, F + 1) standardised features and a column of ones."""
        return np.column_stack([(measured - centre) / scale, np.ones(len(measured))])

    train, target = design(features), splits.train["response_time"].astype(np.float64)

    def fit(penalty: float) -> np.ndarray:
        ridge = penalty * len(train) * np.diag([1.0] * features.shape[1] + [0.0])  # the intercept is not shrunk
        return np.linalg.solve(train.T @ train + ridge, train.T @ target)

    candidates = [fit(penalty) for penalty in RIDGE_PENALTIES]
    validation = design(trial_features(splits.validation["eeg"]))
    errors = [np.mean((validation @ weights - splits.validation["response_time"]) ** 2) for weights in candidates]
    weights = candidates[int(np.argmin(errors))]

    def predict(arrays: Arrays) -> list[np.ndarray]:
        return [(design(trial_features(arrays["eeg"])) @ weights).astype(np.float32)]

    return predict


FAMILY = register_family(Family(
    name="response_time",
    description="response time from one EEG trial (the EEG seeds' CNNs with multi-head, sparse, channel and temporal attention; timing-aware attention CNNs)",
    metric="nrmse",
    mode="min",
    schema=SCHEMA,
    inputs=("eeg",),
    targets=("response_time",),
    outputs=("response_time",),
    metrics=("nrmse", "rmse_s", "pearson_r"),
    presets=PRESETS,
    load_data=load_data,
    model_context=model_context,
    loss=loss,
    evaluate=evaluate,
    reference=erp_regression_reference,
    augment=augment,
    augmentations=("time_shift", "channel_dropout", "gaussian_noise", "mixup"),
    group="subject",
    # every architecture answers within 10 ms at batch 1 (BENCHMARKS.md), far inside the 50 ms
    # budget; what the seeds trade accuracy against is their size (the sparse-attention CNNs')
    cost="param_count",
))
