"""Least-squares multilateration: the non-learned reference localizer.

Unknowns per sample: transmitter x, y and the unknown transmit time as a range bias b (metres).
Each active receiver i contributes two weighted residuals:
  time of arrival   (c * toa_i - b - |p - r_i|) / (toa_sigma_m / rho_i^2)
  RSSI range        (|p - r_i| - d_i) / (0.5 d_i + 10),  d_i from inverting the log-distance model
The RSSI ranges are weak (shadowing makes them uncertain by tens of percent) but make the problem
well posed with fewer than three receivers, where time differences alone cannot fix a position.
rho_i, the matched-filter correlation coefficient, discounts arrival times at low SNR, where the
correlation peak may be a noise peak.
Solved with Levenberg-Marquardt, vectorised over the batch, from the RSSI-weighted centroid.
"""
from __future__ import annotations

import numpy as np

from trainables.data.rf_simulation import SPEED_OF_LIGHT


def multilaterate(
    positions: np.ndarray,
    toa_us: np.ndarray,
    rssi_dbm: np.ndarray,
    correlation: np.ndarray,
    mask: np.ndarray,
    *,
    tx_power_dbm: float,
    reference_loss_db: float,
    path_loss_exponent: float,
    tx_height_m: float = 15.0,
    toa_sigma_m: float = 15.0,
    iterations: int = 40,
) -> np.ndarray:
    """Estimate transmitter (x, y) in metres from (N, R, 3) positions and (N, R) measurements -> (N, 2)."""
    weight = mask.astype(np.float64)
    rssi_range = 10 ** ((tx_power_dbm - reference_loss_db - rssi_dbm) / (10 * path_loss_exponent))
    closeness = weight / rssi_range.clip(min=1.0)
    start_xy = (positions[..., :2] * closeness[..., None]).sum(1) / closeness.sum(1, keepdims=True)
    toa_sigma = toa_sigma_m / correlation.clip(min=0.05) ** 2
    problem = _Problem(positions, SPEED_OF_LIGHT * 1e-6 * toa_us, rssi_range, weight, tx_height_m, toa_sigma)
    bias = (weight * (problem.toa_m - rssi_range)).sum(1) / weight.sum(1)
    theta = np.column_stack([start_xy, bias])  # (N, 3)

    damping = np.full(len(theta), 1e-2)
    cost = problem.cost(theta)
    for _ in range(iterations):
        residual, jacobian = problem.linearise(theta)
        normal = np.einsum("nki,nkj->nij", jacobian, jacobian)
        gradient = np.einsum("nki,nk->ni", jacobian, residual)
        diagonal = np.einsum("nii->ni", normal)
        system = normal + (damping[:, None] * diagonal + 1e-9)[..., None] * np.eye(3)
        candidate = theta - np.linalg.solve(system, gradient[..., None])[..., 0]
        candidate_cost = problem.cost(candidate)
        better = candidate_cost < cost
        theta = np.where(better[:, None], candidate, theta)
        cost = np.where(better, candidate_cost, cost)
        damping = np.where(better, damping / 3, damping * 10).clip(1e-9, 1e9)
    return theta[:, :2]


class _Problem:
    def __init__(self, positions, toa_m, rssi_range, weight, tx_height_m, toa_sigma) -> None:
        self.positions, self.toa_m, self.rssi_range, self.weight = positions, toa_m, rssi_range, weight
        self.tx_height_m, self.toa_sigma = tx_height_m, toa_sigma  # (N, R)
        self.range_sigma = 0.5 * rssi_range + 10.0

    def _geometry(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        delta = np.concatenate(
            [theta[:, None, :2] - self.positions[..., :2], self.tx_height_m - self.positions[..., 2:]], axis=-1
        )  # (N, R, 3)
        return delta, np.linalg.norm(delta, axis=-1).clip(min=1e-3)

    def residual(self, theta: np.ndarray) -> np.ndarray:
        _, distance = self._geometry(theta)
        toa = (self.toa_m - theta[:, 2:3] - distance) / self.toa_sigma
        rssi = (distance - self.rssi_range) / self.range_sigma
        return np.concatenate([toa, rssi], axis=1) * np.tile(self.weight, 2)  # (N, 2R)

    def cost(self, theta: np.ndarray) -> np.ndarray:
        return (self.residual(theta) ** 2).sum(1)

    def linearise(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        delta, distance = self._geometry(theta)
        unit = delta[..., :2] / distance[..., None]  # (N, R, 2)
        toa = np.concatenate([-unit, -np.ones_like(distance)[..., None]], -1) / self.toa_sigma[..., None]
        rssi = np.concatenate([unit, np.zeros_like(distance)[..., None]], -1) / self.range_sigma[..., None]
        jacobian = np.concatenate([toa, rssi], axis=1) * np.tile(self.weight, 2)[..., None]  # (N, 2R, 3)
        return self.residual(theta), jacobian
