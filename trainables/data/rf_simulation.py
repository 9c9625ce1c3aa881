"""Simulated multi-receiver RF captures of one transmitter burst.

Physics, per sample (one transmission):
  * Geometry: the transmitter is uniform in an ``area_m`` x ``area_m`` square at 1.5-30 m height;
    ``max_receivers`` fixed sites (a layout drawn once from ``layout_seed``) stand in and around
    the square at 10-60 m masts. Between ``min_active`` and all of them are active (a site may be
    offline or busy), chosen uniformly; the mask marks them.
  * Burst: a known linear-FM preamble (L/4 samples, +-0.4 fs) followed by a QPSK payload (L/4
    samples, 4 samples per symbol), band-limited to +-0.4 fs, unit power, starting at a
    transmit time unknown to the receivers within the first L/16 samples of the capture window.
  * Channel: free-space loss at 1 m plus log-distance loss with exponent ``path_loss_exponent``
    and log-normal shadowing of ``shadowing_db``; propagation delay d / c applied as an exact
    fractional delay in the frequency domain; transmit power uniform in ``tx_power_dbm``.
  * Receiver: GPS-disciplined sample clocks (common capture window), an oscillator frequency
    offset per site (ppm, fixed hardware) and per transmitter, plus a small drift; a random
    carrier phase; thermal noise kTB with the site's noise figure; then AGC scales each capture
    to unit RMS, as an SDR front end would, so the IQ carries shape and timing but not level.
  * Measurements (per active receiver, all estimated from the simulated capture, not copied
    from the truth): SNR of the preamble window against the receiver's known noise floor, RSSI
    of that window with a 1 dB calibration error, the site's noise floor, the carrier frequency
    offset from the preamble's phase slope, the time of arrival (matched-filter peak with
    parabolic interpolation), and the matched-filter correlation coefficient (a quality measure:
    it drops at low SNR and when the peak falls between samples).

Output arrays (R = max_receivers, L = iq_length, padded slots are zero):
  iq (N, R, 2, L) float32, features (N, R, 6) float32 in FEATURE_NAMES order, positions
  (N, R, 3) float32 metres, receiver_ids (N, R) int64, mask (N, R) bool, transmitter_xy (N, 2)
  float32 metres.

Samples are generated in fixed chunks, each from its own seeded generator, so the result depends
only on the settings, never on memory or on how the work is split.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

SPEED_OF_LIGHT = 299_792_458.0
THERMAL_NOISE_DBM_PER_HZ = -174.0
FEATURE_NAMES = ("snr_db", "rssi_dbm", "noise_floor_dbm", "freq_offset_hz", "toa_us", "correlation")
CHUNK = 256
SIMULATOR_VERSION = 1  # bump when the physics changes, so cached data sets are regenerated


@dataclass(frozen=True)
class RFSimulation:
    """Settings of one simulated data set; together they key its cache."""

    n_samples: int = 4000
    iq_length: int = 1024
    max_receivers: int = 10
    min_active: int = 1
    area_m: float = 2000.0
    sample_rate_hz: float = 10e6
    carrier_hz: float = 433e6
    path_loss_exponent: float = 2.8
    shadowing_db: float = 6.0
    tx_power_dbm: tuple[float, float] = (20.0, 36.0)
    seed: int = 0
    layout_seed: int = 7

    def problems(self) -> list[str]:
        """What makes these settings unusable, as messages naming the field and the fix."""
        found = []
        if self.n_samples < 1:
            found.append(f"n_samples must be at least 1, got {self.n_samples}")
        if self.iq_length < 64 or self.iq_length % 64:
            found.append(f"iq_length must be a multiple of 64 (>= 64), got {self.iq_length}")
        if not 1 <= self.min_active <= self.max_receivers:
            found.append(f"need 1 <= min_active <= max_receivers, got {self.min_active} and {self.max_receivers}")
        if self.area_m <= 0 or self.sample_rate_hz <= 0 or self.carrier_hz <= 0:
            found.append("area_m, sample_rate_hz and carrier_hz must be positive")
        elif self.latest_burst_end() > self.iq_length:
            found.append(
                f"the burst can end at sample {self.latest_burst_end():.0f}, after the capture window of "
                f"{self.iq_length}: raise iq_length, or lower area_m or sample_rate_hz"
            )
        return found

    def latest_burst_end(self) -> float:
        farthest = np.hypot(1.1 * self.area_m, 1.1 * self.area_m) + 60.0  # sites stand up to 10% outside
        return self.iq_length / 16 + farthest / SPEED_OF_LIGHT * self.sample_rate_hz + self.iq_length / 2

    @property
    def noise_bandwidth_dbm(self) -> float:
        return THERMAL_NOISE_DBM_PER_HZ + 10 * np.log10(self.sample_rate_hz)

    @property
    def reference_loss_db(self) -> float:
        """Free-space path loss at 1 m for the carrier."""
        return 20 * np.log10(4 * np.pi * self.carrier_hz / SPEED_OF_LIGHT)


class Sites(NamedTuple):
    positions: np.ndarray  # (R, 3) metres
    noise_figure_db: np.ndarray  # (R,)
    oscillator_ppm: np.ndarray  # (R,)


def receiver_sites(settings: RFSimulation) -> Sites:
    rng = np.random.default_rng(settings.layout_seed)
    count, area = settings.max_receivers, settings.area_m
    xy = rng.uniform(-0.1 * area, 1.1 * area, (count, 2))
    height = rng.uniform(10.0, 60.0, (count, 1))
    return Sites(np.hstack([xy, height]), rng.uniform(3.0, 9.0, count), rng.normal(0.0, 1.5, count))


def preamble(length: int) -> np.ndarray:
    """Unit-power linear-FM chirp sweeping -0.4 fs .. +0.4 fs."""
    n = np.arange(length)
    return np.exp(2j * np.pi * (-0.4 * n + 0.4 * n**2 / length))


def simulate(settings: RFSimulation, progress: bool = True) -> dict[str, np.ndarray]:
    """Generate the data set described by ``settings`` (see the module docstring)."""
    sites = receiver_sites(settings)
    starts = range(0, settings.n_samples, CHUNK)
    chunks = [
        _simulate_chunk(settings, sites, np.random.default_rng([settings.seed, index]), min(CHUNK, settings.n_samples - start))
        for index, start in enumerate(tqdm(starts, desc="simulating RF captures", unit="chunk", disable=not progress or len(starts) < 4))
    ]
    return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}


def _simulate_chunk(settings: RFSimulation, sites: Sites, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    receivers, length = settings.max_receivers, settings.iq_length
    transmitter = np.column_stack([rng.uniform(0, settings.area_m, (n, 2)), rng.uniform(1.5, 30.0, n)])
    active = rng.integers(settings.min_active, receivers + 1, n)
    mask = rng.random((n, receivers)).argsort(axis=1).argsort(axis=1) < active[:, None]  # (n, R)

    distance = np.linalg.norm(sites.positions[None] - transmitter[:, None], axis=-1).clip(min=1.0)  # (n, R)
    path_loss = (
        settings.reference_loss_db
        + 10 * settings.path_loss_exponent * np.log10(distance)
        + rng.normal(0.0, settings.shadowing_db, (n, receivers))
    )
    noise_dbm = settings.noise_bandwidth_dbm + sites.noise_figure_db  # (R,)
    snr_db = rng.uniform(*settings.tx_power_dbm, (n, 1)) - path_loss - noise_dbm
    arrival = rng.uniform(0, length / 16, (n, 1)) + distance / SPEED_OF_LIGHT * settings.sample_rate_hz

    received = _propagate(_bursts(rng, n, length), arrival)  # (n, R, L) complex, unit burst power
    offset_hz = (rng.normal(0.0, 1.0, (n, 1)) - sites.oscillator_ppm) * 1e-6 * settings.carrier_hz
    offset_hz = offset_hz + rng.normal(0.0, 20.0, (n, receivers))
    phase = 2 * np.pi * (offset_hz[..., None] * np.arange(length) / settings.sample_rate_hz + rng.random((n, receivers, 1)))
    noise = (rng.standard_normal((n, receivers, length)) + 1j * rng.standard_normal((n, receivers, length))) / np.sqrt(2)
    capture = (10 ** (snr_db[..., None] / 20) * received * np.exp(1j * phase) + noise).astype(np.complex64)

    features = _measure(capture, noise_dbm, settings, rng)
    iq = capture / np.sqrt(np.mean(np.abs(capture) ** 2, axis=-1, keepdims=True))  # AGC
    iq = np.stack([iq.real, iq.imag], axis=2).astype(np.float32)  # (n, R, 2, L)
    return {
        "iq": iq * mask[..., None, None],
        "features": (features * mask[..., None]).astype(np.float32),
        "positions": (sites.positions[None] * mask[..., None]).astype(np.float32),
        "receiver_ids": np.broadcast_to(np.arange(receivers), (n, receivers)).astype(np.int64),
        "mask": mask,
        "transmitter_xy": transmitter[:, :2].astype(np.float32),
    }


def _bursts(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    """Preamble + QPSK payload, zero-padded to the window: (n, L) complex."""
    quarter = length // 4
    symbols = np.exp(1j * np.pi / 4 * (2 * rng.integers(0, 4, (n, quarter // 4)) + 1))
    burst = np.zeros((n, length), dtype=np.complex128)
    burst[:, :quarter] = preamble(quarter)
    burst[:, quarter : 2 * quarter] = np.repeat(symbols, 4, axis=1)
    return burst


def _propagate(bursts: np.ndarray, arrival: np.ndarray) -> np.ndarray:
    """Band-limit each burst to +-0.4 fs and delay it by ``arrival`` (n, R) samples."""
    length = bursts.shape[-1]
    frequency = np.fft.fftfreq(length)  # cycles per sample
    spectrum = np.fft.fft(bursts, axis=-1) * (np.abs(frequency) <= 0.4)  # (n, L)
    shift = np.exp(-2j * np.pi * frequency * arrival[..., None])  # (n, R, L)
    return np.fft.ifft(spectrum[:, None, :] * shift, axis=-1)


def _measure(capture: np.ndarray, noise_dbm: np.ndarray, settings: RFSimulation, rng: np.random.Generator) -> np.ndarray:
    """Per-receiver measurements estimated from the raw capture: (n, R, 6) in FEATURE_NAMES order."""
    n, receivers, length = capture.shape
    reference = preamble(length // 4)
    template = np.conj(np.fft.fft(reference, n=length))
    correlation = np.abs(np.fft.ifft(np.fft.fft(capture, axis=-1) * template, axis=-1))  # (n, R, L) by lag
    peak = correlation.argmax(axis=-1)
    before, at, after = (np.take_along_axis(correlation, ((peak + k) % length)[..., None], -1)[..., 0] for k in (-1, 0, 1))
    curvature = before - 2 * at + after
    refined = peak + np.where(curvature < 0, 0.5 * (before - after) / np.where(curvature < 0, curvature, -1.0), 0.0)

    window = np.take_along_axis(capture, (peak[..., None] + np.arange(len(reference))) % length, axis=-1)  # (n, R, P)
    window_power = np.mean(np.abs(window) ** 2, axis=-1)
    coefficient = (at / (np.sqrt(window_power * len(reference)) * np.sqrt(len(reference)))).clip(0.0, 0.9999)
    half = len(reference) // 2
    first = np.sum(window[..., :half] * np.conj(reference[:half]), axis=-1)
    second = np.sum(window[..., half:] * np.conj(reference[half:]), axis=-1)
    offset_hz = np.angle(second * np.conj(first)) / (2 * np.pi * half) * settings.sample_rate_hz

    return np.stack(
        [
            10 * np.log10(np.maximum(window_power - 1.0, 1e-3)),  # capture units: noise power is 1
            noise_dbm + 10 * np.log10(window_power) + rng.normal(0.0, 1.0, (n, receivers)),
            np.broadcast_to(noise_dbm, (n, receivers)) + rng.normal(0.0, 0.5, (n, receivers)),
            offset_hz,
            refined / settings.sample_rate_hz * 1e6,
            coefficient,
        ],
        axis=-1,
    )
