from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from trainables.models.ngram import KneserNey, modified_discounts

VOCAB = 5


def looped_kneser_ney(sequences: np.ndarray, order: int, context: tuple[int, ...]) -> np.ndarray:
    """The textbook recursion with dictionaries, one context at a time: what the vectorised model must equal."""
    raw = {k: Counter(tuple(row[i : i + k]) for row in sequences.tolist() for i in range(len(row) - k + 1)) for k in range(1, order + 2)}
    continuation = {k: Counter(gram[1:] for gram in raw[k + 1]) for k in range(1, order + 1)}

    def probability(level: int, history: tuple[int, ...], top: bool) -> np.ndarray:
        if level == 0:
            return np.full(VOCAB, 1 / VOCAB)
        table = raw[level] if top else continuation[level]
        lower = probability(level - 1, history[1:], False)
        followers = {gram[-1]: count for gram, count in table.items() if gram[:-1] == history}
        if not followers:
            return lower
        discounts = modified_discounts(np.array(list(table.values())))
        total = sum(followers.values())
        result = lower * sum(discounts[min(c, 3)] for c in followers.values()) / total
        for character, count in followers.items():
            result[character] += (count - discounts[min(count, 3)]) / total
        return result

    top = min(order, len(context) + 1)
    return probability(top, context[len(context) - top + 1 :], True)


@pytest.fixture(scope="module")
def sequences():
    rng = np.random.default_rng(0)
    pattern = np.array([0, 1, 2, 3, 1, 2, 4])
    noisy = np.where(rng.random((40, 21)) < 0.2, rng.integers(0, VOCAB, (40, 21)), np.resize(pattern, (40, 21)))
    return noisy


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_equals_the_looped_recursion_at_every_position(sequences, order):
    model = KneserNey(sequences[:30], VOCAB, max_order=4)
    inputs = sequences[30:, :8]
    predicted = np.exp(model.log_probabilities(inputs, order, chunk=3))  # (N, T, V)
    for row in range(len(inputs)):
        for position in range(inputs.shape[1]):
            expected = looped_kneser_ney(sequences[:30], order, tuple(inputs[row, : position + 1].tolist()))
            np.testing.assert_allclose(predicted[row, position], expected, rtol=1e-5)


def test_probabilities_sum_to_one_and_never_vanish(sequences):
    model = KneserNey(sequences[:30], VOCAB, max_order=4)
    probabilities = np.exp(model.log_probabilities(np.arange(VOCAB)[None].repeat(2, 0), 4).astype(np.float64))
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-6)
    assert probabilities.min() > 0


def test_higher_orders_predict_a_repeating_text_better():
    text = np.resize(np.array([0, 1, 2, 0, 3, 4, 2, 1]), (20, 33))  # two characters settle what follows
    model = KneserNey(text, VOCAB, max_order=3)
    bits = [-np.mean(np.take_along_axis(model.log_probabilities(text[:, :-1], n), text[:, 1:, None], -1)) for n in (1, 2, 3)]
    assert bits[0] > bits[1] > bits[2] and bits[2] < 0.1


def test_rejects_orders_whose_keys_would_overflow():
    with pytest.raises(ValueError, match="max_order"):
        KneserNey(np.zeros((1, 4), np.int64), VOCAB, max_order=10)
