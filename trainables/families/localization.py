"""Localization: where is the transmitter, from the captures of 1 to 10 receivers?

Data: simulated RF captures (trainables/data/rf_simulation.py) or a user's Parquet file with
the columns of SCHEMA. Models: HeimdallNet, HeimdallNetPro (the seed's networks) and
multilateration_transformer (least squares corrected by a set transformer). Main metric: mean
position error in metres; also P50, P95 and the calibration of the predicted uncertainty.
Reference: least-squares multilateration, no learning; the networks get its nominal propagation
constants in their context, so the model that corrects it runs the same solver on raw captures.

Loss: the mean Euclidean position error, plus the Gaussian negative log-likelihood of the
predicted per-axis uncertainty around the detached position. It was the Gaussian NLL of the
position alone; on the quick data (560 training captures, 6 epochs, one seed) the least-squares
correcting network then stayed at least squares (test 274 m against 281 m: the NLL weights each
capture by 1 / sigma^2, so the captures with one or two receivers, where all the gain lies,
hardly count), and reached 207 m with this loss. HeimdallNet was no better with either
(307 m NLL, 344 m Euclidean). The detached NLL still trains the uncertainty head to calibration.

Presets: ``quick`` is the README's main job (minutes on 2 cores); ``standard`` is the smallest
sweep that learns the task (4,000 captures: trained 20 epochs on 800, the least-squares
correction reached 0.68x least squares on test, on 4,000 0.58x, and 0.54x on captures with one
or two receivers, where the targets ask for 0.6x).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from trainables.data import DataSplits, read_user_table, simulated, split_random
from trainables.data.rf_simulation import FEATURE_NAMES, SIMULATOR_VERSION, RFSimulation, simulate
from trainables.data.tables import Arrays, Column, Schema
from trainables.errors import DataError
from trainables.families import Family, Predictor, Preset, register_family
from trainables.models.multilateration import multilaterate

SCHEMA = Schema(
    (
        Column("iq", "float32", ("R", 2, "L"), "complex baseband I and Q per receiver slot"),
        Column("features", "float32", ("R", len(FEATURE_NAMES)), "measurements: " + ", ".join(FEATURE_NAMES)),
        Column("positions", "float32", ("R", 3), "receiver x, y, z in metres"),
        Column("receiver_ids", "int64", ("R",), "receiver site index in [0, R)"),
        Column("mask", "bool", ("R",), "true where the receiver slot is active"),
        Column("transmitter_xy", "float32", (2,), "target: transmitter x, y in metres"),
    )
)

PRESETS = {
    "smoke": Preset(trials=3, epochs=2, data={"n_samples": 64, "iq_length": 128, "sample_rate_hz": 5e6}),
    "quick": Preset(trials=8, epochs=6, data={"n_samples": 800, "iq_length": 128, "sample_rate_hz": 5e6}),
    "standard": Preset(trials=12, epochs=15, data={"n_samples": 4000, "iq_length": 128, "sample_rate_hz": 5e6}),
    "default": Preset(trials=32, epochs=30, data={"n_samples": 20000, "iq_length": 1024}),
}


def load_data(settings: Mapping[str, Any], path: Path | None, seed: int) -> DataSplits:
    if path is not None:
        splits = read_user_table(path, SCHEMA, seed)
        for arrays in (splits.train, splits.validation, splits.test):
            _check_receivers(arrays, str(path))
        return splits
    arrays, cache_path = simulated("localization", RFSimulation, SIMULATOR_VERSION, simulate, SCHEMA, settings)
    return split_random(arrays, seed, f"simulated RF captures ({cache_path.name})")


def _check_receivers(arrays: Arrays, source: str) -> None:
    mask, ids = arrays["mask"], arrays["receiver_ids"]
    if not mask.any(axis=1).all():
        raise DataError(f"{source}: column 'mask' has rows with no active receiver; each row needs at least one")
    active_ids = ids[mask]
    if (active_ids < 0).any() or (active_ids >= mask.shape[1]).any():
        raise DataError(f"{source}: column 'receiver_ids' must lie in [0, {mask.shape[1]}) for active receivers")


def model_context(train: Arrays) -> dict[str, Any]:
    mask = train["mask"]
    features, positions = train["features"][mask], train["positions"][mask]  # (active, F), (active, 3)
    target = train["transmitter_xy"]
    center = np.append(target.mean(axis=0), positions[:, 2].mean())
    return {
        "max_receivers": int(mask.shape[1]),
        "feature_mean": features.mean(axis=0).tolist(),
        "feature_std": np.maximum(features.std(axis=0), 1e-6).tolist(),
        "position_center": center.tolist(),
        "position_scale": float(max(target.std(), 1.0)),
        "feature_names": list(FEATURE_NAMES),
        "propagation": nominal_propagation(),
    }


def nominal_propagation() -> dict[str, float]:
    """The simulator's nominal propagation model (mid-range transmit power), as least squares assumes it."""
    nominal = RFSimulation()
    return {
        "tx_power_dbm": float(np.mean(nominal.tx_power_dbm)),
        "reference_loss_db": float(nominal.reference_loss_db),
        "path_loss_exponent": float(nominal.path_loss_exponent),
    }


def loss(outputs: Sequence[torch.Tensor], batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean Euclidean error of the position (metres), plus the Gaussian NLL of the uncertainty
    around the detached position, so the uncertainty is calibrated but never trades position
    error for it (see the module docstring for the measurement)."""
    position, uncertainty = outputs
    target = batch["transmitter_xy"]
    error = ((position - target) ** 2).sum(-1).add(1e-6).sqrt()  # (B,); the epsilon keeps the gradient finite at 0
    return error.mean() + F.gaussian_nll_loss(position.detach(), target, uncertainty**2)


def position_errors(position: np.ndarray, target: np.ndarray) -> dict[str, float]:
    error = np.linalg.norm(position - target, axis=1)
    return {
        "mean_error_m": float(error.mean()),
        "p50_error_m": float(np.percentile(error, 50)),
        "p95_error_m": float(np.percentile(error, 95)),
    }


def row_scores(outputs: Sequence[np.ndarray], arrays: Arrays) -> dict[str, np.ndarray]:
    return {"mean_error_m": np.linalg.norm(outputs[0] - arrays["transmitter_xy"], axis=1)}


def evaluate(outputs: Sequence[np.ndarray], arrays: Arrays) -> dict[str, float]:
    """Position errors, and the fraction of per-axis errors within 1 and 2 predicted sigma
    (0.683 and 0.954 when the uncertainty is calibrated)."""
    position, uncertainty = outputs
    standardised = np.abs(position - arrays["transmitter_xy"]) / uncertainty
    return {
        **position_errors(position, arrays["transmitter_xy"]),
        "within_1sigma": float((standardised <= 1).mean()),
        "within_2sigma": float((standardised <= 2).mean()),
    }


def diagnostic_plots(outputs: Mapping[str, Sequence[Sequence[np.ndarray]]], targets: Arrays) -> dict[str, Any]:
    """Cumulative distribution of the position error and calibration of the predicted sigma,
    pooled over the seeds of each model (``outputs``: model -> seeds -> (position, uncertainty))."""
    from matplotlib import pyplot as plt

    truth = targets["transmitter_xy"]
    cdf, cdf_axes = plt.subplots(figsize=(6, 3.5))
    calibration, calibration_axes = plt.subplots(figsize=(6, 3.5))
    for index, (name, seeds) in enumerate(outputs.items()):
        errors = np.sort(np.concatenate([np.linalg.norm(position - truth, axis=1) for position, _ in seeds]))
        cdf_axes.plot(errors, np.arange(1, len(errors) + 1) / len(errors), label=name)
        pooled = evaluate([np.concatenate(part) for part in zip(*seeds)], {"transmitter_xy": np.tile(truth, (len(seeds), 1))})
        calibration_axes.bar([index - 0.2, index + 0.2], [pooled["within_1sigma"], pooled["within_2sigma"]], width=0.4,
                             color=["C0", "C1"], label=["within 1 sigma", "within 2 sigma"] if index == 0 else None)  # fmt: skip
    cdf_axes.set(xlabel="position error (m)", ylabel="fraction of test samples", title="error CDF (all seeds)")
    cdf_axes.legend()
    for level, color in ((0.683, "C0"), (0.954, "C1")):
        calibration_axes.axhline(level, color=color, linestyle="--")
    calibration_axes.set_xticks(range(len(outputs)), list(outputs))
    calibration_axes.set(ylabel="fraction of per-axis errors", title="uncertainty calibration (dashed: ideal)")
    calibration_axes.legend(loc="lower right")
    return {"error_cdf.png": cdf, "calibration.png": calibration}


def multilaterate_split(arrays: Arrays) -> np.ndarray:
    """Least-squares positions (N, 2) with the simulator's nominal propagation model."""
    feature = {name: arrays["features"][..., index] for index, name in enumerate(FEATURE_NAMES)}
    return multilaterate(
        arrays["positions"],
        feature["toa_us"],
        feature["rssi_dbm"],
        feature["correlation"],
        arrays["mask"],
        **nominal_propagation(),
    )


def multilateration_reference(splits: DataSplits) -> Predictor:
    """Least-squares multilateration; its per-axis uncertainty is the RMS error on the training
    split of the captures with the same number of active receivers (one receiver misses by about
    a kilometre, ten by about ten metres, so one RMS for all was wrong for both)."""
    train = splits.train
    squared = (multilaterate_split(train) - train["transmitter_xy"]) ** 2  # (N, 2)
    active = train["mask"].sum(axis=1)
    overall = np.sqrt(squared.mean(axis=0))
    sigma = np.stack([np.sqrt(squared[active == k].mean(axis=0)) if (active == k).any() else overall
                      for k in range(train["mask"].shape[1] + 1)])  # (R + 1, 2) by active count  # fmt: skip

    def predict(arrays: Arrays) -> list[np.ndarray]:
        position = multilaterate_split(arrays).astype(np.float32)
        return [position, sigma[arrays["mask"].sum(axis=1)].astype(np.float32)]

    return predict


def receiver_slices(arrays: Arrays) -> dict[str, np.ndarray]:
    """Rows by number of active receivers: least squares is ill-posed with one or two, and hard
    to beat with six or more, so one overall mean hides where a network wins and where it loses."""
    active, most = arrays["mask"].sum(axis=1), arrays["mask"].shape[1]
    return {f"{low}-{high} receivers": (active >= low) & (active <= high) for low, high in ((1, 2), (3, 5), (6, most)) if low <= most}


FAMILY = register_family(Family(
    name="localization",
    description="transmitter localization from multi-receiver RF captures (HeimdallNet / HeimdallNetPro)",
    metric="mean_error_m",
    mode="min",
    schema=SCHEMA,
    inputs=("iq", "features", "positions", "receiver_ids", "mask"),
    targets=("transmitter_xy",),
    outputs=("position", "uncertainty"),
    metrics=("mean_error_m", "p50_error_m", "p95_error_m", "within_1sigma", "within_2sigma"),
    presets=PRESETS,
    load_data=load_data,
    model_context=model_context,
    loss=loss,
    evaluate=evaluate,
    row_scores=row_scores,
    reference=multilateration_reference,
    check_rows=_check_receivers,
    slices=receiver_slices,
    plots=diagnostic_plots,
))
