"""Simulated EEG trials of a speeded-response task: predict the response time from the EEG.

Physics, per trial (one stimulus, one button press; an epoch of 2 s at 100 Hz running from
0.1 s before to 1.9 s after stimulus onset):
  * Montage: 129 electrodes spread evenly (a Fibonacci spiral) over a spherical head of 9 cm
    radius, from the vertex to 14 degrees below the equator, like a high-density net; x points
    right, y to the nose, z up. Landmarks (FCz, Pz, POz, the eyes) are directions on that sphere.
  * Background: ongoing cortical activity with a 1/f^beta power spectrum (beta per subject, 1.2-2;
    nothing below 1 Hz, as recordings are high-passed), spatially correlated by volume conduction:
    the correlation of two electrodes is a Gaussian of their distance (length 4 cm). The field is
    built from the leading eigenvectors of that correlation matrix (99% of its variance), each
    driven by its own 1/f process; each trial's 2 s are cut from a 4 s stretch so the ends of the
    epoch are not joined by the FFT's periodicity.
  * Alpha rhythm: a parieto-occipital oscillation at the subject's alpha frequency (8-12.5 Hz,
    +-0.2 Hz from trial to trial), random phase, an envelope that waxes and wanes (0.2-0.8 Hz),
    stronger on trials answered slower than the subject's mean (inattentive, drowsy trials, as
    reported for alpha power before the stimulus).
  * Event-related potentials, Gaussian in time, with smooth (Gaussian) scalp topographies:
      N200, fronto-central negativity: latency 0.17 + 0.08 RT + subject offset + 20 ms noise;
      P300, parietal positivity: latency 0.25 + 0.45 RT + subject offset + ``latency_jitter_s``
      noise, width a quarter of its latency, amplitude smaller for responses slower than the
      subject's mean.
  * Eye blinks: a Poisson number (mean ``blinks_per_trial``, at most 3) at random times, bumps of
    about 0.3 s and ~100 uV, largest at the electrodes nearest the eyes and fading with distance.
  * Subjects differ in their response times (ex-Gaussian mu, sigma, tau; responses outside
    0.2-1.8 s are misses and drawn again), ERP amplitude, ERP latency offsets, alpha frequency and
    power, background power and spectral exponent; so a model must generalise across subjects.
  * Recording: independent amplifier noise on every channel, then the average reference.

What carries the response time: mostly the P300 latency (correlation about 0.9 with the RT over
trials, never 1), which only a model that knows *when* things happen in the epoch can read; and,
more weakly and only relative to each subject's mean, the P300's amplitude and width and the
alpha power, which a translation-invariant model (convolutions + global pooling) can read too.
With the defaults, such CNNs reach an NRMSE of about 0.7 on held-out subjects; knowing the true
P300 latency would give about 0.47.

Output arrays (N = n_subjects * trials_per_subject, subject-major order):
  eeg (N, 129, 200) float32 microvolts, response_time (N,) float32 seconds, subject (N,) int64;
  with ``latents=True`` also n200_latency_s, p300_latency_s, p300_amplitude_uv (N,) float32,
  the hidden trial parameters, for diagnostics and tests.

Trials are generated in fixed chunks, each from its own seeded generator, and the subjects from
a generator of their own, so the result depends only on the settings.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

CHANNELS = 129
SAMPLE_RATE_HZ = 100.0
SAMPLES = 200
PRESTIMULUS_S = 0.1
RT_LIMITS_S = (0.2, 1.8)
HEAD_RADIUS_CM = 9.0
CORRELATION_LENGTH_CM = 4.0
AMPLIFIER_NOISE_UV = 2.0
MAX_BLINKS = 3
COMPONENTS = ("alpha", "n200", "p300", "blinks")  # sources after the background's, in lead_field() order
CHUNK = 256
SIMULATOR_VERSION = 1  # bump when the physics changes, so cached data sets are regenerated

TIMES_S = np.arange(SAMPLES) / SAMPLE_RATE_HZ - PRESTIMULUS_S  # (T,) relative to stimulus onset


@dataclass(frozen=True)
class EEGSimulation:
    """Settings of one simulated data set; together they key its cache."""

    n_subjects: int = 60  # what the models must generalise over: many subjects matter more than many trials
    trials_per_subject: int = 50
    background_uv: float = 10.0  # RMS of the 1/f background on each channel, average subject
    alpha_uv: float = 8.0  # amplitude of the alpha rhythm at its posterior maximum
    p300_uv: float = 8.0  # P300 peak amplitude for a response at the subject's mean speed
    latency_jitter_s: float = 0.05  # P300 latency noise that the response time does not explain
    blinks_per_trial: float = 0.3  # mean number of eye blinks in a 2 s epoch
    seed: int = 0

    def problems(self) -> list[str]:
        """What makes these settings unusable, as messages naming the field and the fix."""
        found = []
        for name in ("n_subjects", "trials_per_subject"):
            if getattr(self, name) < 1:
                found.append(f"{name} must be at least 1, got {getattr(self, name)}: raise {name}")
        for name in ("background_uv", "alpha_uv", "p300_uv"):
            if not getattr(self, name) >= 0:
                found.append(f"{name} must be >= 0 microvolts, got {getattr(self, name)}")
        if not 0 <= self.latency_jitter_s <= 0.2:
            found.append(f"latency_jitter_s must lie in [0, 0.2] s, got {self.latency_jitter_s}: 0.05 is realistic")
        if not 0 <= self.blinks_per_trial <= MAX_BLINKS:
            found.append(f"blinks_per_trial must lie in [0, {MAX_BLINKS}], got {self.blinks_per_trial}")
        return found

    @property
    def n_trials(self) -> int:
        return self.n_subjects * self.trials_per_subject


# ---------------------------------------------------------------- the head


def direction(polar_deg: float, azimuth_deg: float = 0.0) -> np.ndarray:
    """Unit vector ``polar_deg`` from the vertex (negative: behind it), ``azimuth_deg`` from the nose to the right."""
    polar, azimuth = np.radians(polar_deg), np.radians(azimuth_deg)
    return np.array([np.sin(polar) * np.sin(azimuth), np.sin(polar) * np.cos(azimuth), np.cos(polar)])


# Landmarks in 10-20 terms: Fz and Pz lie 36 degrees in front of / behind the vertex, Oz 72.
FCZ, PZ, POZ = direction(18), direction(-36), direction(-54)
EYES = (direction(105, -25), direction(105, 25))


def electrode_positions() -> np.ndarray:
    """(129, 3) electrode positions in cm: a Fibonacci spiral from the vertex to about 14 degrees below the equator."""
    index = np.arange(CHANNELS)
    z = 1 - (index + 0.5) / CHANNELS * 1.25
    azimuth = index * np.pi * (3 - np.sqrt(5))  # the golden angle
    ring = np.sqrt(1 - z**2)
    return HEAD_RADIUS_CM * np.column_stack([ring * np.cos(azimuth), ring * np.sin(azimuth), z])


def topography(centre: np.ndarray, width_cm: float) -> np.ndarray:
    """(129,) Gaussian bump of the distance from the point of the scalp at unit direction ``centre``."""
    distance = np.linalg.norm(electrode_positions() - HEAD_RADIUS_CM * centre, axis=-1)
    return np.exp(-0.5 * (distance / width_cm) ** 2)


@lru_cache(maxsize=1)
def lead_field() -> np.ndarray:
    """(129, K + 4) float32: the scalp field of each source, K background components then COMPONENTS."""
    positions = electrode_positions()
    distance = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    correlation = np.exp(-0.5 * (distance / CORRELATION_LENGTH_CM) ** 2)
    variance, vectors = np.linalg.eigh(correlation)  # ascending
    kept = CHANNELS - np.searchsorted(np.cumsum(variance) / variance.sum(), 0.01)  # 99% of the variance
    background = vectors[:, -kept:] * np.sqrt(variance[-kept:])  # unit variance per channel, up to 1%
    alpha, n200, p300 = topography(POZ, 6.0), -topography(FCZ, 5.0), topography(PZ, 6.0)
    blinks = sum(topography(eye, 4.0) for eye in EYES)
    return np.column_stack([background, alpha, n200, p300, blinks]).astype(np.float32)


# ---------------------------------------------------------------- subjects and trials


class Subjects(NamedTuple):
    rt_mu: np.ndarray  # ex-Gaussian parameters of the response time, seconds
    rt_sigma: np.ndarray
    rt_tau: np.ndarray
    erp_scale: np.ndarray  # multiplies every ERP (skull thickness, head size)
    n200_offset_s: np.ndarray
    p300_offset_s: np.ndarray
    alpha_hz: np.ndarray
    alpha_scale: np.ndarray
    background_scale: np.ndarray
    background_exponent: np.ndarray  # beta of 1/f^beta

    def take(self, index: np.ndarray) -> Subjects:
        return Subjects(*(field[index] for field in self))


def draw_subjects(rng: np.random.Generator, count: int) -> Subjects:
    return Subjects(
        rt_mu=rng.uniform(0.45, 0.8, count),
        rt_sigma=rng.uniform(0.05, 0.12, count),
        rt_tau=rng.uniform(0.08, 0.3, count),
        erp_scale=rng.lognormal(0.0, 0.2, count),
        n200_offset_s=rng.normal(0.0, 0.02, count),
        p300_offset_s=rng.normal(0.0, 0.04, count),
        alpha_hz=rng.normal(10.0, 0.8, count).clip(8.0, 12.5),
        alpha_scale=rng.lognormal(0.0, 0.3, count),
        background_scale=rng.lognormal(0.0, 0.25, count),
        background_exponent=rng.uniform(1.2, 2.0, count),
    )


def ex_gaussian(rng: np.random.Generator, mu: np.ndarray, sigma: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Response times: Gaussian + exponential; draws outside RT_LIMITS_S (misses) are drawn again."""
    rt = rng.normal(mu, sigma) + rng.exponential(tau)
    for _ in range(10):  # each pass redraws a few percent; what is left after ten is clipped
        missed = np.flatnonzero((rt < RT_LIMITS_S[0]) | (rt > RT_LIMITS_S[1]))
        rt[missed] = rng.normal(mu[missed], sigma[missed]) + rng.exponential(tau[missed])
    return rt.clip(*RT_LIMITS_S)


def simulate(settings: EEGSimulation, progress: bool = True, latents: bool = False) -> dict[str, np.ndarray]:
    """Generate the data set described by ``settings`` (see the module docstring)."""
    subjects = draw_subjects(np.random.default_rng([settings.seed, 0]), settings.n_subjects)
    subject = np.repeat(np.arange(settings.n_subjects, dtype=np.int64), settings.trials_per_subject)
    starts = range(0, settings.n_trials, CHUNK)
    bar = tqdm(starts, desc="simulating EEG trials", unit="chunk", disable=not progress or len(starts) < 4)
    chunks = [  # stream [seed, 0] holds the subjects, [seed, 1, i] chunk i
        _simulate_chunk(settings, subjects, subject[start : start + CHUNK], np.random.default_rng([settings.seed, 1, i]))
        for i, start in enumerate(bar)
    ]
    arrays = {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}
    if not latents:
        arrays = {name: arrays[name] for name in ("eeg", "response_time", "subject")}
    return arrays


def _simulate_chunk(
    settings: EEGSimulation, subjects: Subjects, subject: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    n, own = len(subject), subjects.take(subject)
    rt = ex_gaussian(rng, own.rt_mu, own.rt_sigma, own.rt_tau)
    speed = np.exp(-(rt - own.rt_mu - own.rt_tau) / 0.4)  # > 1 when faster than the subject's mean
    n200_latency = 0.17 + 0.08 * rt + own.n200_offset_s + rng.normal(0.0, 0.02, n)
    p300_latency = 0.25 + 0.45 * rt + own.p300_offset_s + rng.normal(0.0, settings.latency_jitter_s, n)
    p300_amplitude = settings.p300_uv * own.erp_scale * speed * rng.lognormal(0.0, 0.2, n)
    n200_amplitude = 0.5 * settings.p300_uv * own.erp_scale * rng.lognormal(0.0, 0.3, n)

    background = _pink_noise(rng, own.background_exponent, lead_field().shape[1] - len(COMPONENTS))  # (n, K, T)
    background *= (settings.background_uv * own.background_scale)[:, None, None]
    components = np.stack(
        [
            _alpha(rng, own.alpha_hz, settings.alpha_uv * own.alpha_scale / speed),
            _erp(n200_latency, 0.035, n200_amplitude),  # the topography carries the sign
            _erp(p300_latency, 0.25 * p300_latency, p300_amplitude),
            _blinks(rng, n, settings.blinks_per_trial),
        ],
        axis=1,
    )  # (n, 4, T) in COMPONENTS order
    sources = np.concatenate([background, components], axis=1).astype(np.float32)  # (n, K + 4, T)
    # One matrix product for the whole chunk, not one per trial: (n T, K + 4) @ (K + 4, C).
    field = (sources.transpose(0, 2, 1).reshape(n * SAMPLES, -1) @ lead_field().T).reshape(n, SAMPLES, CHANNELS)
    eeg = field + rng.standard_normal((n, SAMPLES, CHANNELS), dtype=np.float32) * AMPLIFIER_NOISE_UV
    eeg -= eeg.mean(axis=-1, keepdims=True)  # average reference
    return {
        "eeg": np.ascontiguousarray(eeg.transpose(0, 2, 1)),  # (n, C, T)
        "response_time": rt.astype(np.float32),
        "subject": subject,
        "n200_latency_s": n200_latency.astype(np.float32),
        "p300_latency_s": p300_latency.astype(np.float32),
        "p300_amplitude_uv": p300_amplitude.astype(np.float32),
    }


# ---------------------------------------------------------------- sources, each (n, T) or (n, K, T)


def _pink_noise(rng: np.random.Generator, exponent: np.ndarray, count: int) -> np.ndarray:
    """``count`` unit-variance 1/f^exponent processes per trial, no power below 1 Hz: (n, count, T)."""
    length = 2 * SAMPLES  # keep the first half: the FFT joins the ends of the whole stretch
    frequency = np.fft.rfftfreq(length, 1 / SAMPLE_RATE_HZ)
    amplitude = np.where(frequency >= 1.0, np.maximum(frequency, 1.0)[None] ** (-exponent[:, None] / 2), 0.0)
    amplitude[:, -1] = 0.0  # the Nyquist bin is real-valued; leave it out so the variance is exact
    amplitude *= np.sqrt(0.5 * length / (amplitude**2).sum(axis=1, keepdims=True))  # (n, F): unit variance
    shape = (len(exponent), count, len(frequency))
    spectrum = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * np.sqrt(0.5) * amplitude[:, None]
    return np.fft.irfft(spectrum, n=length, axis=-1, norm="ortho")[..., :SAMPLES]


def _alpha(rng: np.random.Generator, hz: np.ndarray, amplitude: np.ndarray) -> np.ndarray:
    n = len(hz)
    frequency = hz + rng.normal(0.0, 0.2, n)
    envelope = 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.2, 0.8, (n, 1)) * TIMES_S + rng.uniform(0, 2 * np.pi, (n, 1)))
    carrier = np.cos(2 * np.pi * frequency[:, None] * TIMES_S + rng.uniform(0, 2 * np.pi, (n, 1)))
    return (amplitude * rng.lognormal(0.0, 0.3, n))[:, None] * envelope * carrier


def _erp(latency: np.ndarray, width: np.ndarray | float, amplitude: np.ndarray) -> np.ndarray:
    """Gaussian waveform peaking at ``latency`` s after the stimulus, standard deviation ``width`` s."""
    width = np.broadcast_to(width, latency.shape)
    return amplitude[:, None] * np.exp(-0.5 * ((TIMES_S - latency[:, None]) / width[:, None]) ** 2)


def _blinks(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """Sum of up to MAX_BLINKS blink bumps per trial at random times, some partly outside the epoch."""
    count = np.minimum(rng.poisson(rate, n), MAX_BLINKS)
    onset = rng.uniform(TIMES_S[0] - 0.2, TIMES_S[-1] + 0.2, (n, MAX_BLINKS))
    amplitude = 100.0 * rng.lognormal(0.0, 0.3, (n, MAX_BLINKS)) * (np.arange(MAX_BLINKS) < count[:, None])
    bumps = amplitude[..., None] * np.exp(-0.5 * ((TIMES_S - onset[..., None]) / 0.06) ** 2)  # (n, B, T)
    return bumps.sum(axis=1)
