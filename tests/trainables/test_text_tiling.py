"""Lexical cohesion, depth scores, the segment-length decoder and the TextTiling reference."""
from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import torch

from trainables.data import DataSplits
from trainables.families import get_family
from trainables.models.text_tiling import block_cohesion, decode_boundaries, depth_scores, word_idf


def test_idf_weighs_rare_words_more_and_padding_not_at_all():
    tokens = np.array([[[1, 2, 0], [1, 3, 0], [1, 0, 0]]])  # word 1 in every sentence, 2 and 3 in one
    idf = word_idf(tokens, np.ones((1, 3), dtype=bool), vocab_size=5)
    assert idf[0] == 0 and idf[1] < idf[2] == idf[3] < idf[4]  # 4 was never seen: the rarest


def brute_cohesion(tokens: np.ndarray, n: int, idf: np.ndarray, gap: int, window: int) -> float:
    def bag(rows: range) -> Counter:
        counts = Counter()
        for word in tokens[list(rows)].ravel():
            counts[int(word)] += float(idf[word]) if word else 0.0
        return counts

    before, after = bag(range(max(0, gap - window + 1), gap + 1)), bag(range(gap + 1, min(n, gap + 1 + window)))
    norms = np.sqrt(sum(v * v for v in before.values()) * sum(v * v for v in after.values()))
    return sum(before[w] * after[w] for w in before) / norms if norms else 0.0


def test_block_cohesion_is_the_cosine_of_idf_weighted_bags():
    generator = np.random.default_rng(0)
    tokens = generator.integers(0, 12, (3, 9, 5))  # small vocabulary: many shared words
    mask = np.arange(9) < np.array([9, 5, 1])[:, None]
    idf = generator.uniform(0.5, 2.0, 12).astype(np.float32)
    windows = (1, 2, 4)
    got = block_cohesion(torch.from_numpy(tokens), torch.from_numpy(mask), torch.from_numpy(idf), windows)
    for document, gap, (k, window) in itertools.product(range(3), range(9), enumerate(windows)):
        n = int(mask[document].sum())
        expected = brute_cohesion(tokens[document], n, idf, gap, window) if gap < n else 0.0
        assert got[document, gap, k].item() == pytest.approx(expected, abs=1e-5)


def test_depth_is_the_climb_to_the_peaks_on_both_sides():
    cohesion = torch.tensor([[0.5, 0.8, 0.2, 0.4, 0.3, 0.9, 7.0]])
    mask = torch.tensor([[True] * 6 + [False]])  # 6 sentences: 5 gaps, the 7th value is padding
    depth = depth_scores(cohesion, mask)
    expected = [0.0 + 0.3, 0.0 + 0.0, 0.6 + 0.2, 0.0 + 0.0, 0.1 + 0.0, 0.0, 0.0]
    torch.testing.assert_close(depth, torch.tensor([expected]))


def best_by_enumeration(scores: np.ndarray, n: int, shortest: int, longest: int) -> float | None:
    values = []
    for count in range(n):
        for cuts in itertools.combinations(range(n - 1), count):
            lengths = np.diff([-1, *cuts, n - 1])
            if lengths.min() >= shortest and lengths.max() <= longest:
                values.append(sum(scores[c] for c in cuts))
    return max(values) if values else None


def test_the_decoder_finds_the_best_segmentation_within_the_length_limits():
    generator = np.random.default_rng(1)
    for _ in range(60):
        n, shortest, longest = int(generator.integers(1, 11)), int(generator.integers(1, 4)), int(generator.integers(3, 6))
        logits, mask = generator.normal(size=(1, 10)), np.arange(10)[None] < n
        chosen = decode_boundaries(logits, mask, shortest, longest)[0]
        best = best_by_enumeration(logits[0], n, shortest, longest)
        best = best if best is not None else best_by_enumeration(logits[0], n, 1, n)  # no fit: no limits
        assert not chosen[max(n - 1, 0) :].any() and logits[0][chosen > 0].sum() == pytest.approx(best)


@pytest.fixture(scope="module")
def smoke():
    family = get_family("segmentation")
    return family, family.load_data(family.presets["smoke"].data, None, 0)


def test_the_reference_beats_predicting_no_boundary(smoke):
    family, splits = smoke
    arrays = splits.validation
    reference = family.evaluate(family.reference(splits)(arrays), arrays)
    nothing = family.evaluate([np.full(arrays["boundary"].shape, -1.0, dtype=np.float32)], arrays)
    assert reference["pk"] < nothing["pk"] - 0.05 and reference["f1"] > 0.2


def test_the_reference_never_reads_the_test_split(smoke):
    family, splits = smoke
    predict = family.reference(DataSplits(splits.train, splits.validation, None, splits.source))
    expected = family.reference(splits)(splits.validation)[0]
    np.testing.assert_array_equal(predict(splits.validation)[0], expected)
