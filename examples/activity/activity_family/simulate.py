"""Wrist-accelerometer recordings of four activities, for trying the family without data of your
own: ``python -m activity_family.simulate activity.parquet`` writes a file in the family's schema.

Each row is a 5.12-s window at 50 Hz of three axes in m/s^2. Gravity points along a device
orientation drawn per window (watches sit differently); each subject has their own cadence and
vigour. Still: gravity, tremor and drift. Walking: steps at 1.5-2.1 Hz with a harmonic, arm swing
and sway at half the step rate. Running: 2.3-3.1 Hz, harder, with heel-strike impacts. Cycling:
pedalling at 1.0-1.6 Hz, smooth, with road vibration. Frequencies and amplitudes overlap between
activities and subjects, so a window's dominant frequency and energy alone do not name it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from activity_family.family import ACTIVITIES, RATE_HZ
from trainables.data.tables import write_table

SAMPLES, GRAVITY = 256, 9.81


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3-D rotation (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def body_motion(activity: int, cadence: float, vigour: float, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(3, T) acceleration in the body frame (forward, lateral, vertical), without gravity."""
    phase = rng.uniform(0, 2 * np.pi)
    motion = np.zeros((3, len(t)))
    if activity == 0:
        motion += np.cumsum(rng.normal(0, 0.01, (3, len(t))), axis=1) + rng.normal(0, 0.05, (3, len(t)))
    elif activity in (1, 2):
        steps_hz, amplitudes = ((1.5, 2.1), (1.5, 3.5)) if activity == 1 else ((2.3, 3.1), (4.0, 9.0))
        step = rng.uniform(*steps_hz) * cadence
        amplitude = rng.uniform(*amplitudes) * vigour
        angle = 2 * np.pi * step * t + phase
        motion[2] = amplitude * (np.sin(angle) + 0.5 * np.sin(2 * angle + rng.uniform(0, np.pi)))
        motion[0] = 0.6 * amplitude * np.sin(angle / 2 + rng.uniform(0, np.pi))  # arm swing
        motion[1] = 0.3 * amplitude * np.sin(angle / 2 + rng.uniform(0, np.pi))  # sway
        if activity == 2:  # heel strikes: short pulses once per step
            strikes = np.arange(rng.uniform(0, 1 / step), t[-1], 1 / step)
            motion[2] += amplitude * 0.8 * np.exp(-((t[None, :] - strikes[:, None]) / 0.015) ** 2).sum(axis=0)
    else:
        pedal = rng.uniform(1.0, 1.6) * cadence
        amplitude = rng.uniform(0.5, 2.0) * vigour
        angle = 2 * np.pi * pedal * t + phase
        motion[0] = amplitude * np.sin(angle)
        motion[1] = 0.5 * amplitude * np.cos(angle)
        motion[2] = rng.normal(0, 0.4, len(t))  # road vibration
    return motion


def simulate(windows: int, subjects: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(SAMPLES) / RATE_HZ
    cadence, vigour = rng.uniform(0.85, 1.15, subjects), rng.uniform(0.7, 1.3, subjects)
    subject = rng.integers(0, subjects, windows)
    activity = rng.integers(0, len(ACTIVITIES), windows)
    signal = np.empty((windows, 3, SAMPLES), dtype=np.float32)
    for row in range(windows):
        who = subject[row]
        motion = body_motion(activity[row], cadence[who], vigour[who], t, rng)
        motion[2] += GRAVITY
        signal[row] = random_rotation(rng) @ motion + rng.normal(0, 0.15, (3, SAMPLES))
    return {"signal": signal, "activity": activity.astype(np.int64), "subject": subject.astype(np.int64)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the Parquet file to write")
    parser.add_argument("--windows", type=int, default=3000)
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_table(simulate(args.windows, args.subjects, args.seed), args.out)
    print(f"wrote {args.windows} windows of {args.subjects} subjects to {args.out}")


if __name__ == "__main__":
    main()
