"""Contract tests run against every response-time architecture; a new one adds no test code."""
from __future__ import annotations

import pytest
import torch

from trainables.models import architectures, create_model
from trainables.models.response_time import TimePooling

FAMILY = "response_time"
ARCHITECTURES = architectures(FAMILY)
CONTEXT = {"eeg_scale": 10.0, "target_mean": 0.8, "target_std": 0.25}
# What the seeds report; "798K" is the only one they give rounded.
SEED_COUNTS = {
    "response_time_cnn": 74_753,
    "lightweight_attention_cnn": 79_489,
    "attention_cnn_response_time": 91_521,
    "improved_response_time_cnn": 798_000,
    "lightweight_response_time_cnn_with_attention": 846_289,
    "improved_response_time_cnn_with_attention": 6_163_375,
}
# Added here, not in the seeds: attention over time with time codes and latency-reading pooling.
NEW_COUNTS = {"timing_attention_cnn": 80_773, "timing_localized_cnn": 80_773}
REAL_COUNTS = {**SEED_COUNTS, "improved_response_time_cnn": 798_081, **NEW_COUNTS}


def build(name: str, context: dict = CONTEXT) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(FAMILY, name, context)


def eeg(batch: int, seed: int = 0) -> torch.Tensor:
    return 10.0 * torch.randn(batch, 129, 200, generator=torch.Generator().manual_seed(seed))  # microvolts


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_architecture_is_registered():
    assert set(ARCHITECTURES) == set(REAL_COUNTS)


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize("batch", [1, 4])
def test_shape_and_finite_output_in_train_and_eval(name, batch):
    model = build(name)
    for training in (True, False):
        out = model.train(training)(eeg(batch))
        assert out.shape == (batch,) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_parameter_gets_a_finite_gradient(name):
    model = build(name).train()
    (model(eeg(4)) - 0.5).square().mean().backward()
    bad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.any()]
    assert not bad


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_evaluation_is_deterministic(name):
    model = build(name).eval()
    x = eeg(2)
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_takes_microvolts_and_returns_seconds(name):
    x = eeg(3)
    reference = build(name).eval()(x)
    rescaled = build(name, {"eeg_scale": 20.0, "target_mean": 1.0, "target_std": 0.5}).eval()(2 * x)
    torch.testing.assert_close(rescaled - 1.0, 2 * (reference - 0.8))
    assert {"eeg_scale", "target_mean", "target_std"} <= dict(build(name).named_buffers()).keys()  # not parameters


@pytest.mark.parametrize("name", ["response_time_cnn", "lightweight_attention_cnn", "attention_cnn_response_time"])
def test_parameter_counts_of_the_self_attention_seed_are_exact(name):
    assert count(build(name)) == SEED_COUNTS[name]


def test_parameter_counts_against_the_seeds(capsys):
    counts = {name: count(build(name)) for name in ARCHITECTURES}
    with capsys.disabled():
        print(f"\n{'architecture':46} {'real':>10} {'seed':>10}")
        for name, real in counts.items():
            approximate = "~" if name == "improved_response_time_cnn" else " "
            seed = f"{approximate}{SEED_COUNTS[name]:>9,}" if name in SEED_COUNTS else f"{'-':>10}"
            print(f"{name:46} {real:>10,} {seed}")
    assert counts == REAL_COUNTS  # pinned, so a change to a layer plan is deliberate


def test_time_pooling_reads_when_the_scored_feature_peaks():
    pooling = TimePooling(dim=3, heads=1)
    with torch.no_grad():
        pooling.score.weight.copy_(torch.tensor([[50.0, 0.0, 0.0]]))  # attend where feature 0 is large
        pooling.score.bias.zero_()
    features = torch.zeros(2, 3, 11)  # (B, D, T)
    features[0, 0, 2], features[1, 0, 8] = 1.0, 1.0
    latency = pooling(features)[:, -1]  # the last output is the head's expected time
    torch.testing.assert_close(latency, torch.tensor([-0.3, 0.3]), atol=1e-3, rtol=0)


@pytest.mark.parametrize("name", sorted(NEW_COUNTS))
def test_timing_models_are_not_blind_to_when(name):
    """Unlike the seeds' CNNs, a shift of the whole trial in time changes the prediction."""
    model = build(name).eval()
    x = eeg(2)
    assert (model(x) - model(x.roll(20, dims=-1))).abs().min() > 1e-4
