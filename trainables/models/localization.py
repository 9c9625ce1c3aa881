"""HeimdallNet and HeimdallNetPro: transmitter localization from a variable set of receivers.

Call: ``model(iq, features, positions, receiver_ids, mask) -> (position, uncertainty)``
    iq            (B, R, 2, L)  AGC-normalised complex baseband, I and Q
    features      (B, R, F)     per-receiver measurements in physical units (dB, Hz, us, ...)
    positions     (B, R, 3)     receiver x, y, z in metres
    receiver_ids  (B, R)        site index in [0, max_receivers)
    mask          (B, R) bool   True for an active receiver; padded slots never affect the output
    position      (B, 2)        transmitter x, y in metres
    uncertainty   (B, 2)        predicted standard deviation of x and y in metres

Layer plan after HeimdallNet v1.0 (fulgidus/heimdall): a 1-D EfficientNet-B2-style IQ encoder,
a feature encoder, receiver-identity embeddings, per-receiver calibration, a set aggregator, a
pairwise geometry encoder, global fusion and two heads. Differences, each for a reason:
  * only active receivers are encoded, so padding neither costs compute nor moves BatchNorm
    statistics, and the calibration layers are applied in one batched product instead of a
    Python loop over the batch;
  * max pooling fills padded slots with -inf, so zeroed padding cannot win over negative values;
  * the feature encoder sees the receiver position next to its measurements (the original fed
    lat/lon/alt as features), and inputs are normalised with training-split statistics held as
    buffers, so the model takes and returns physical units.
HeimdallNetPro puts a Performer self-attention block (pre-norm, residual, post-norm) before the
pooling; with ``pooling_fallback=False`` the pooling is a plain masked mean (attention-only ablation).

Why they lose to least squares, measured on the quick data (560 training captures, 6 epochs,
the family's loss, 3 seeds; test error by active receivers 1-2 / 3-5 / 6-10): HeimdallNet 579 / 371 / 213 m,
least squares 1,220 / 107 / 12 m. It learns where a transmitter heard by one receiver tends to
be (0.47x least squares there) but not multilateration: with 6 or more receivers it is 18x
worse. The loss is not why (Gaussian NLL 307 m overall, Euclidean 344 m, one seed). Data helps
but slowly: on 4,000 captures (2,800 for training, 12 epochs, NLL) it reached 441 / 175 / 108 m
against least squares' 950 / 81 / 14 m, 0.86x overall, still 7.8x worse with 6-10 receivers.
Least squares reaches ~12 m from arrival times a sample of 60 m apart by intersecting
hyperbolas; a network that pools per-receiver encodings has to learn that geometry from data.

MultilaterationTransformer therefore does not learn it: it runs the least-squares solver in its
forward pass and learns only the correction, where the physics model is weak (one or two
receivers, shadowed RSSI ranges, noise peaks). Test error over 3 seeds with the quick sweep's
best configuration: on the quick data (6 epochs) 221 +- 6 m, 0.79x least squares; on 4,000
captures (15 epochs) 134 +- 3 m, 0.58x (1-2 / 3-5 / 6-10 receivers: 0.54x / 0.80x / 0.76x).
The same network trained on the Gaussian NLL stayed at 0.97x (see the family). Scaling the
correction by the fixed position scale instead of the least-squares sigma gave 135 m against
138 m (one seed, 6-10 receivers 10 m against 11 m), within the seeds' spread: no measured
difference either way.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from trainables.attention import create_attention
from trainables.models import register_model
from trainables.models.multilateration import Solution, solve

FAMILY = "localization"
HIDDEN = 256


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of ``x`` (B, N, D) where ``mask`` (B, N) is True."""
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def register_statistics(module: nn.Module, context: Mapping[str, Any]) -> None:
    """The training split's normalisation statistics as buffers, saved with the weights."""
    for name in ("feature_mean", "feature_std", "position_center", "position_scale"):
        module.register_buffer(name, torch.tensor(context[name], dtype=torch.float32))


# ---------------------------------------------------------------- per-receiver encoder


def row_conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """A bias-free 1-D convolution ('same' padding) over signals laid out (M, C, 1, L), one row high.

    The arithmetic is Conv1d's (PyTorch computes a Conv1d as this very Conv2d), but an exported
    graph then runs on ONNX Runtime's blocked (NCHWc) 2-D convolution kernels, which its 1-D
    convolutions do not get: the IQ encoder ran 1.4x faster on one core.
    """
    return nn.Conv2d(in_channels, out_channels, (1, kernel), stride=(1, stride), padding=(0, kernel // 2), groups=groups, bias=False)


class MBConv1d(nn.Module):
    """Mobile inverted bottleneck with squeeze-and-excitation, for 1-D signals laid out (M, C, 1, L)."""

    def __init__(self, in_channels: int, out_channels: int, expand: int = 6, stride: int = 1) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.residual = stride == 1 and in_channels == out_channels
        expansion = [row_conv(in_channels, hidden, 1), nn.BatchNorm2d(hidden), nn.SiLU()] if expand != 1 else []
        self.conv = nn.Sequential(
            *expansion,
            row_conv(hidden, hidden, 3, stride=stride, groups=hidden),
            nn.BatchNorm2d(hidden),
            nn.SiLU(),
        )
        squeeze = max(1, in_channels // 4)
        self.excite = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(hidden, squeeze),
            nn.SiLU(),
            nn.Linear(squeeze, hidden),
            nn.Sigmoid(),
        )
        self.project = nn.Sequential(row_conv(hidden, out_channels, 1), nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)  # (M, hidden, 1, L')
        out = self.project(out * self.excite(out)[..., None, None])
        return out + x if self.residual else out


# (in, out, expand, stride) per block: EfficientNet-B2's stages scaled to 1-D.
IQ_BLOCKS = (
    (32, 16, 1, 1),
    (16, 24, 6, 2), (24, 24, 6, 1),
    (24, 40, 6, 2), (40, 40, 6, 1),
    (40, 80, 6, 2), (80, 80, 6, 1), (80, 80, 6, 1),
    (80, 112, 6, 1), (112, 112, 6, 1),
)  # fmt: skip


class IQEncoder(nn.Module):
    def __init__(self, out_dim: int = HIDDEN) -> None:
        super().__init__()
        self.stem = nn.Sequential(row_conv(2, 32, 3, stride=2), nn.BatchNorm2d(32), nn.SiLU())
        self.blocks = nn.Sequential(*(MBConv1d(*block) for block in IQ_BLOCKS))
        self.head = nn.Sequential(
            row_conv(112, 192, 1),
            nn.BatchNorm2d(192),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(192, out_dim),
        )
        self.register_load_state_dict_pre_hook(add_row_axis_to_kernels)

    def forward(self, iq: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(iq.unsqueeze(2))))  # (M, 2, L) -> (M, 2, 1, L) -> (M, out_dim)


def add_row_axis_to_kernels(module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str, *_: Any) -> None:
    """Checkpoints written when the IQ encoder used Conv1d hold (out, in, k) kernels; its
    convolutions are (out, in, 1, k) now (see row_conv)."""
    for name, tensor in state_dict.items():
        if name.startswith(prefix) and tensor.dim() == 3:
            state_dict[name] = tensor.unsqueeze(2)


class ReceiverCalibration(nn.Module):
    """One Linear + LayerNorm affine per receiver site, applied to all receivers at once."""

    def __init__(self, sites: int, dim: int = HIDDEN) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(sites, dim, dim))
        self.bias = nn.Parameter(torch.zeros(sites, dim))
        self.norm_weight = nn.Parameter(torch.ones(sites, dim))
        self.norm_bias = nn.Parameter(torch.zeros(sites, dim))
        for weight in self.weight:
            nn.init.kaiming_uniform_(weight, a=5**0.5)  # nn.Linear's default

    def forward(self, x: torch.Tensor, site: torch.Tensor) -> torch.Tensor:
        # One GEMM against every site's weights, then a gather: far cheaper than gathering a
        # (M, D, D) weight tensor, since there are few sites.
        sites, dim, _ = self.weight.shape
        every_site = (x @ self.weight.permute(1, 0, 2).reshape(dim, sites * dim)).view(-1, sites, dim)  # (M, S, D)
        x = every_site.gather(1, site.view(-1, 1, 1).expand(-1, 1, dim)).squeeze(1) + self.bias[site]  # (M, D)
        x = F.layer_norm(x, x.shape[-1:]) * self.norm_weight[site] + self.norm_bias[site]
        return F.gelu(x)


class ReceiverEncoder(nn.Module):
    """Encodes each active receiver's IQ, measurements, position and identity to (HIDDEN,):
    (B, R, ...) -> (B, R, HIDDEN), zero at inactive receivers.

    Only the active receivers are encoded: padding costs no compute and never enters BatchNorm's
    batch statistics. Their number M depends on the data; torch.export traces it as a symbolic
    size (hence model.pt2 and model.onnx) once told that M is positive. Encoding every slot and
    zeroing the inactive ones instead would give fixed shapes and the same outputs in
    evaluation, but costs R / M times the IQ encoder's work: with 6 of 10 receivers active, ONNX
    Runtime took 1.6x as long.
    """

    def __init__(self, sites: int, n_features: int) -> None:
        super().__init__()
        self.iq = IQEncoder(HIDDEN)
        self.measurements = nn.Sequential(nn.Linear(n_features + 3, 64), nn.LayerNorm(64), nn.GELU(), nn.Linear(64, 128))
        self.identity = nn.Embedding(sites, 64)
        self.fusion = nn.Sequential(nn.Linear(HIDDEN + 128 + 64, HIDDEN), nn.LayerNorm(HIDDEN), nn.GELU(), nn.Linear(HIDDEN, HIDDEN))
        self.calibration = ReceiverCalibration(sites)

    def forward(self, iq: torch.Tensor, measurements: torch.Tensor, site: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        iq, measurements, site = iq[mask], measurements[mask], site[mask]  # (M, 2, L), (M, F + 3), (M,)
        torch._check(site.shape[0] > 0)  # every capture has an active receiver (the family checks it)
        fused = self.fusion(torch.cat([self.iq(iq), self.measurements(measurements), self.identity(site)], dim=-1))
        encoded = self.calibration(fused, site)  # (M, HIDDEN)
        return encoded.new_zeros(*mask.shape, HIDDEN).index_put((mask,), encoded)  # (B, R, HIDDEN)


# ---------------------------------------------------------------- aggregation


class MultiStrategyPooling(nn.Module):
    """Max, mean and quality-weighted pooling over active receivers, fused to one vector."""

    def __init__(self, dim: int = HIDDEN, dropout: float = 0.1) -> None:
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), nn.GELU(), nn.Dropout(dropout))
        self.quality = nn.Sequential(nn.Linear(dim, 64), nn.GELU(), nn.Linear(64, 1))
        self.combine = nn.Sequential(nn.Linear(3 * dim, dim), nn.LayerNorm(dim), nn.GELU(), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.transform(x)  # (B, N, D)
        hidden = ~mask.unsqueeze(-1)
        max_pooled = x.masked_fill(hidden, float("-inf")).amax(dim=1)
        weights = self.quality(x).masked_fill(hidden, float("-inf")).softmax(dim=1)  # (B, N, 1)
        weighted = (x.masked_fill(hidden, 0.0) * weights).sum(dim=1)
        return self.combine(torch.cat([max_pooled, masked_mean(x, mask), weighted], dim=-1))


class MaskedMeanPooling(nn.Module):
    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_mean(x, mask)


class SetAttentionBlock(nn.Module):
    """LayerNorm -> Performer self-attention -> dropout + residual -> LayerNorm -> pooling."""

    def __init__(self, attention: nn.Module, pooling: nn.Module, dim: int = HIDDEN, dropout: float = 0.1) -> None:
        super().__init__()
        self.pre_norm, self.post_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention, self.pooling = attention, pooling
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.post_norm(x + self.dropout(self.attention(self.pre_norm(x), mask)))
        return self.pooling(x, mask)


class GeometryEncoder(nn.Module):
    """Distances, bearings and height differences between every pair of active receivers."""

    def __init__(self, dim: int = HIDDEN, dropout: float = 0.1) -> None:
        super().__init__()
        self.distance = nn.Sequential(nn.Linear(1, 32), nn.GELU(), nn.Linear(32, 64))
        self.bearing = nn.Sequential(nn.Linear(2, 32), nn.GELU(), nn.Linear(32, 64))
        self.height = nn.Sequential(nn.Linear(1, 32), nn.GELU(), nn.Linear(32, 32))
        self.aggregate = nn.Sequential(nn.Linear(160, dim), nn.LayerNorm(dim), nn.GELU(), nn.Dropout(dropout))

    def forward(self, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        delta = positions.unsqueeze(1) - positions.unsqueeze(2)  # (B, N, N, 3): j - i
        distance = delta[..., :2].norm(dim=-1, keepdim=True)
        bearing = delta[..., :2] / distance.clamp(min=1e-6)  # (cos, sin); zero on the diagonal
        pairs = torch.cat([self.distance(distance), self.bearing(bearing), self.height(delta[..., 2:])], dim=-1)
        eye = torch.eye(mask.shape[1], dtype=torch.bool, device=mask.device)
        pair_mask = mask.unsqueeze(1) & mask.unsqueeze(2) & ~eye  # (B, N, N)
        pooled = masked_mean(pairs.flatten(1, 2), pair_mask.flatten(1, 2))
        return self.aggregate(pooled)


# ---------------------------------------------------------------- the network


class HeimdallNet(nn.Module):
    def __init__(self, context: Mapping[str, Any], aggregator: nn.Module, dropout: float) -> None:
        super().__init__()
        register_statistics(self, context)
        self.encoder = ReceiverEncoder(context["max_receivers"], len(context["feature_mean"]))
        self.aggregator = aggregator
        self.geometry = GeometryEncoder(HIDDEN, dropout)
        self.fusion = nn.Sequential(nn.Linear(2 * HIDDEN, HIDDEN), nn.LayerNorm(HIDDEN), nn.GELU(), nn.Dropout(dropout))
        self.position_head = nn.Linear(HIDDEN, 2)
        self.uncertainty_head = nn.Sequential(nn.Linear(HIDDEN, 64), nn.ReLU(), nn.Linear(64, 2), nn.Softplus())

    def forward(
        self,
        iq: torch.Tensor,
        features: torch.Tensor,
        positions: torch.Tensor,
        receiver_ids: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        positions = (positions - self.position_center) / self.position_scale  # (B, R, 3)
        measurements = torch.cat([(features - self.feature_mean) / self.feature_std, positions], dim=-1)
        receivers = self.encoder(iq, measurements, receiver_ids, mask)  # (B, R, HIDDEN), zero where inactive
        shared = self.fusion(torch.cat([self.aggregator(receivers, mask), self.geometry(positions, mask)], dim=-1))
        position = self.position_center[:2] + self.position_scale * self.position_head(shared)
        uncertainty = self.position_scale * (self.uncertainty_head(shared) + 1e-3)
        return position, uncertainty


@register_model(FAMILY, "heimdall_net")
def heimdall_net(context: Mapping[str, Any], *, dropout: float = 0.1) -> HeimdallNet:
    """HeimdallNet v1.0: pooling-only aggregation (max, mean, quality-weighted)."""
    return HeimdallNet(context, MultiStrategyPooling(HIDDEN, dropout), dropout)


@register_model(FAMILY, "heimdall_net_pro")
def heimdall_net_pro(
    context: Mapping[str, Any],
    *,
    dropout: float = 0.1,
    heads: int = 8,
    nb_features: int = 64,
    kernel: str = "relu",
    pooling_fallback: bool = True,
) -> HeimdallNet:
    """HeimdallNetPro: Performer self-attention between receivers before the pooling."""
    attention = create_attention("performer", HIDDEN, heads=heads, nb_features=nb_features, kernel=kernel, dropout=dropout)
    pooling = MultiStrategyPooling(HIDDEN, dropout) if pooling_fallback else MaskedMeanPooling()
    return HeimdallNet(context, SetAttentionBlock(attention, pooling, HIDDEN, dropout), dropout)


# ---------------------------------------------------------------- least squares, corrected by a set transformer


TOKEN_INPUTS = 15  # per receiver: 6 measurements, 3 position, 2 offset from the estimate, 4 fit terms
GLOBAL_INPUTS = 5  # per capture: the estimate (2), its log sigma (2), the fraction of receivers active


class SetTransformerBlock(nn.Module):
    """Pre-norm residual attention between receivers, then a pre-norm residual MLP."""

    def __init__(self, attention: nn.Module, width: int, dropout: float) -> None:
        super().__init__()
        self.attention_norm, self.mlp_norm = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = attention
        self.mlp = nn.Sequential(
            nn.Linear(width, 2 * width), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * width, width)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x), mask))
        return x + self.dropout(self.mlp(self.mlp_norm(x)))  # (B, N, D)


class MultilaterationTransformer(nn.Module):
    """Least-squares multilateration, then a learned correction of its estimate.

    The solver (trainables/models/multilateration.py) runs inside the forward pass on the raw
    measurements, with the nominal propagation constants the family puts in the context. Each
    receiver becomes a token of its measurements, its position, its offset from the estimate and
    how it fits the estimate (arrival-time and RSSI-range residuals); every token also carries the
    estimate, its least-squares sigma and the number of receivers. After the set transformer and
    a masked mean, a gated (GLU) head predicts the correction in units of the least-squares sigma
    (so a fix from ten receivers moves by metres, one from a single receiver by hundreds); its
    last layer starts at zero, so training starts at least squares. The uncertainty is the
    least-squares sigma rescaled per axis by the same head.
    """

    def __init__(self, context: Mapping[str, Any], attention: list[nn.Module], width: int, dropout: float) -> None:
        super().__init__()
        register_statistics(self, context)
        self.propagation = {name: float(value) for name, value in context["propagation"].items()}
        self.columns = [context["feature_names"].index(name) for name in ("toa_us", "rssi_dbm", "correlation")]
        self.embed = nn.Sequential(nn.Linear(TOKEN_INPUTS + GLOBAL_INPUTS, width), nn.GELU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList(SetTransformerBlock(block, width, dropout) for block in attention)
        self.norm = nn.LayerNorm(width)
        self.value = nn.Linear(width + GLOBAL_INPUTS, width)
        self.gate = nn.Linear(width + GLOBAL_INPUTS, width)
        self.correction = nn.Linear(width, 2)
        self.log_sigma_scale = nn.Linear(width, 2)
        nn.init.zeros_(self.correction.weight)
        nn.init.zeros_(self.correction.bias)

    def least_squares(self, features: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> Solution:
        toa, rssi, correlation = (features[..., column] for column in self.columns)
        return solve(positions, toa, rssi, correlation, mask, **self.propagation)

    def inputs(
        self, features: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, fit: Solution
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token inputs (B, R, TOKEN_INPUTS + GLOBAL_INPUTS), capture inputs (B, GLOBAL_INPUTS), base sigma (B, 2)."""
        scale = self.position_scale
        estimate = fit.xy.float()  # (B, 2)
        sigma = fit.xy_sigma.float().clamp(min=1.0, max=float(scale))  # (B, 2)
        active = mask.float().mean(1, keepdim=True)  # (B, 1)
        capture = torch.cat([(estimate - self.position_center[:2]) / scale, torch.log(sigma / scale), active], dim=-1)
        fit_terms = torch.stack(
            [
                torch.asinh(fit.toa_residual_m / 15.0),  # in units of the solver's arrival-time sigma
                torch.asinh(fit.range_residual_m / (0.5 * fit.rssi_range_m + 10.0)),
                torch.log(fit.rssi_range_m.clamp(min=1.0) / 1000.0),
                torch.log(fit.distance_m / 1000.0),
            ],
            dim=-1,
        ).float()  # (B, R, 4)
        tokens = torch.cat(
            [
                (features - self.feature_mean) / self.feature_std,
                (positions - self.position_center) / scale,
                (positions[..., :2] - estimate.unsqueeze(1)) / scale,
                fit_terms,
                capture.unsqueeze(1).expand(-1, mask.shape[1], -1),
            ],
            dim=-1,
        )
        return torch.where(mask.unsqueeze(-1), tokens, 0.0), capture, sigma

    def forward(
        self,
        iq: torch.Tensor,
        features: torch.Tensor,
        positions: torch.Tensor,
        receiver_ids: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        fit = self.least_squares(features, positions, mask)
        tokens, capture, sigma = self.inputs(features, positions, mask, fit)
        x = self.embed(tokens)  # (B, R, D)
        for block in self.blocks:
            x = block(x, mask)
        pooled = torch.cat([masked_mean(self.norm(x), mask), capture], dim=-1)
        hidden = F.gelu(self.value(pooled)) * torch.sigmoid(self.gate(pooled))  # (B, D)
        correction_scale = sigma.pow(2).mean(-1, keepdim=True).sqrt()  # (B, 1) metres
        position = fit.xy.float() + correction_scale * self.correction(hidden)
        uncertainty = sigma * torch.exp(self.log_sigma_scale(hidden).clamp(-8.0, 8.0))
        return position, uncertainty


@register_model(FAMILY, "multilateration_transformer")
def multilateration_transformer(
    context: Mapping[str, Any],
    *,
    dropout: float = 0.0,
    attention: str = "softmax",
    heads: int = 4,
    nb_features: int = 32,
    kernel: str = "relu",
    width: int = 64,
    layers: int = 2,
) -> MultilaterationTransformer:
    """Least squares plus a set-transformer correction; ``attention`` is "softmax" or "performer"
    (``nb_features`` and ``kernel`` apply to the Performer only)."""
    options = {"nb_features": nb_features, "kernel": kernel} if attention == "performer" else {}
    blocks = [create_attention(attention, width, heads=heads, dropout=dropout, **options) for _ in range(layers)]
    return MultilaterationTransformer(context, blocks, width, dropout)
