"""Least-squares multilateration: the non-learned reference localizer, and the first guess of the
networks that correct it.

Unknowns per sample: transmitter x, y and the unknown transmit time as a range bias b (metres).
Each active receiver i contributes two weighted residuals:
  time of arrival   (c * toa_i - b - |p - r_i|) / (toa_sigma_m / rho_i^2)
  RSSI range        (|p - r_i| - d_i) / (0.5 d_i + 10),  d_i from inverting the log-distance model
The RSSI ranges are weak (shadowing makes them uncertain by tens of percent) but make the problem
well posed with fewer than three receivers, where time differences alone cannot fix a position.
rho_i, the matched-filter correlation coefficient, discounts arrival times at low SNR, where the
correlation peak may be a noise peak.
Solved with Levenberg-Marquardt, vectorised over the batch, from the RSSI-weighted centroid.

One implementation in torch (float64, no gradient), so a network can run it inside its forward
pass on raw captures; :func:`multilaterate` is the numpy door to the same solver.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from trainables.data.rf_simulation import SPEED_OF_LIGHT

CONVERGED_M = 1e-3  # a step below a millimetre changes no metric


class Solution(NamedTuple):
    """A batch of least-squares solutions, with what a network needs to judge them."""

    xy: torch.Tensor  # (B, 2) transmitter x, y in metres
    xy_sigma: torch.Tensor  # (B, 2) standard deviation of x, y under the weights' noise model
    toa_residual_m: torch.Tensor  # (B, R) c * toa - b - distance at the solution; 0 for padding
    range_residual_m: torch.Tensor  # (B, R) distance - RSSI range at the solution; 0 for padding
    rssi_range_m: torch.Tensor  # (B, R) the ranges the RSSI implies; 1 for padding
    distance_m: torch.Tensor  # (B, R) slant distance from the solution to each receiver


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
    tensors = (torch.tensor(np.asarray(array)) for array in (positions, toa_us, rssi_dbm, correlation, mask))
    solution = solve(
        *tensors,
        tx_power_dbm=tx_power_dbm,
        reference_loss_db=reference_loss_db,
        path_loss_exponent=path_loss_exponent,
        tx_height_m=tx_height_m,
        toa_sigma_m=toa_sigma_m,
        iterations=iterations,
    )
    return solution.xy.numpy()


@torch.no_grad()
def solve(
    positions: torch.Tensor,
    toa_us: torch.Tensor,
    rssi_dbm: torch.Tensor,
    correlation: torch.Tensor,
    mask: torch.Tensor,
    *,
    tx_power_dbm: float,
    reference_loss_db: float,
    path_loss_exponent: float,
    tx_height_m: float = 15.0,
    toa_sigma_m: float = 15.0,
    iterations: int = 40,
) -> Solution:
    """Levenberg-Marquardt over the batch: (B, R, 3) positions, (B, R) measurements -> Solution.

    Padded slots are replaced by neutral values before any arithmetic, so whatever they hold
    (even NaN) never reaches an active receiver's result.
    """
    mask = mask.to(torch.bool)
    active = mask.unsqueeze(-1)
    positions = torch.where(active, positions.double(), 0.0)
    toa_m = torch.where(mask, toa_us.double(), 0.0) * (SPEED_OF_LIGHT * 1e-6)
    rssi_dbm = torch.where(mask, rssi_dbm.double(), tx_power_dbm - reference_loss_db)  # a 1 m range
    correlation = torch.where(mask, correlation.double(), 1.0)
    weight = mask.double()

    rssi_range = 10 ** ((tx_power_dbm - reference_loss_db - rssi_dbm) / (10 * path_loss_exponent))
    closeness = weight / rssi_range.clamp(min=1.0)
    start_xy = (positions[..., :2] * closeness.unsqueeze(-1)).sum(1) / closeness.sum(1, keepdim=True).clamp(min=1e-300)
    toa_sigma = toa_sigma_m / correlation.clamp(min=0.05) ** 2
    problem = _Problem(positions, toa_m, rssi_range, weight, tx_height_m, toa_sigma)
    bias = (weight * (toa_m - rssi_range)).sum(1) / weight.sum(1).clamp(min=1.0)
    theta = torch.cat([start_xy, bias.unsqueeze(-1)], dim=-1)  # (B, 3)

    eye = torch.eye(3, dtype=theta.dtype, device=theta.device)
    damping = torch.full_like(bias, 1e-2)
    cost = problem.cost(theta)
    for _ in range(iterations):
        residual, jacobian = problem.linearise(theta)
        normal = jacobian.transpose(1, 2) @ jacobian  # (B, 3, 3)
        gradient = jacobian.transpose(1, 2) @ residual.unsqueeze(-1)  # (B, 3, 1)
        diagonal = torch.diagonal(normal, dim1=1, dim2=2)  # (B, 3)
        step = torch.linalg.solve(normal + torch.diag_embed(damping.unsqueeze(-1) * diagonal + 1e-9), gradient)[..., 0]
        if step.abs().max() < CONVERGED_M:  # every sample is at its minimum: stop early (batch-1 latency)
            break
        candidate = theta - step
        candidate_cost = problem.cost(candidate)
        better = candidate_cost < cost
        theta = torch.where(better.unsqueeze(-1), candidate, theta)
        cost = torch.where(better, candidate_cost, cost)
        damping = torch.where(better, damping / 3, damping * 10).clamp(1e-9, 1e9)
    return _describe(problem, theta, eye)


def _describe(problem: _Problem, theta: torch.Tensor, eye: torch.Tensor) -> Solution:
    _, jacobian = problem.linearise(theta)
    # (J^T J)^-1 is the covariance of theta when the weights are the true noise levels; the small
    # ridge keeps it finite where the receivers leave a direction undetermined (one receiver).
    covariance = torch.linalg.inv(jacobian.transpose(1, 2) @ jacobian + 1e-8 * eye)
    xy_sigma = torch.diagonal(covariance, dim1=1, dim2=2)[:, :2].clamp(min=0.0).sqrt()
    _, distance = problem.geometry(theta)
    weight = problem.weight
    return Solution(
        xy=theta[:, :2],
        xy_sigma=xy_sigma,
        toa_residual_m=(problem.toa_m - theta[:, 2:3] - distance) * weight,
        range_residual_m=(distance - problem.rssi_range) * weight,
        rssi_range_m=problem.rssi_range,
        distance_m=distance,
    )


class _Problem:
    def __init__(self, positions, toa_m, rssi_range, weight, tx_height_m, toa_sigma) -> None:
        self.positions, self.toa_m, self.rssi_range, self.weight = positions, toa_m, rssi_range, weight
        self.tx_height_m = tx_height_m
        self.range_sigma = 0.5 * rssi_range + 10.0  # (B, R)
        # inverse sigmas of the 2R residuals, zero for padded slots
        self.inverse_sigma = torch.cat([weight / toa_sigma, weight / self.range_sigma], dim=1)  # (B, 2R)

    def geometry(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        delta = torch.cat(
            [theta[:, None, :2] - self.positions[..., :2], self.tx_height_m - self.positions[..., 2:]], dim=-1
        )  # (B, R, 3)
        return delta, delta.norm(dim=-1).clamp(min=1e-3)

    def _residual(self, theta: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
        errors = torch.cat([self.toa_m - theta[:, 2:3] - distance, distance - self.rssi_range], dim=1)
        return errors * self.inverse_sigma  # (B, 2R)

    def cost(self, theta: torch.Tensor) -> torch.Tensor:
        return (self._residual(theta, self.geometry(theta)[1]) ** 2).sum(1)

    def linearise(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Weighted residuals (B, 2R) and their Jacobian with respect to theta (B, 2R, 3)."""
        delta, distance = self.geometry(theta)
        unit = delta[..., :2] / distance.unsqueeze(-1)  # (B, R, 2)
        ones = torch.ones_like(distance).unsqueeze(-1)
        jacobian = torch.cat([torch.cat([-unit, -ones], -1), torch.cat([unit, 0 * ones], -1)], dim=1)
        return self._residual(theta, distance), jacobian * self.inverse_sigma.unsqueeze(-1)
