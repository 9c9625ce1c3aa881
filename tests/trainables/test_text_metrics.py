from __future__ import annotations

import math

import numpy as np
import pytest

from trainables.metrics.language_model import bits_per_character
from trainables.metrics.segmentation import document_scores, probe_width, segmentation_scores

# Reference for the hand examples: 6 sentences in segments of 3 and 3, a boundary after sentence 2.
REFERENCE = np.array([0, 0, 1, 0, 0, 0])


def test_probe_width_is_half_the_mean_segment_length_rounded_half_up():
    assert probe_width(REFERENCE) == 2  # 6 sentences / 2 segments = 3; 3 / 2 = 1.5 -> 2
    assert probe_width(np.array([0, 1, 0, 1, 0, 0, 1, 0, 0, 0])) == 1  # 10 / 4 = 2.5; 1.25 -> 1
    assert probe_width(np.zeros(3)) == 2  # 3 / 1 = 3; 1.5 -> 2 (= n - 1, the largest usable)


def test_boundary_one_sentence_early():
    # Prediction: a boundary after sentence 1 instead of 2. k = 2, probes i = 0..3 (n - k = 4),
    # each counting the boundaries after sentences i and i + 1:
    #   reference counts  i0: 0+0=0  i1: 0+1=1  i2: 1+0=1  i3: 0+0=0
    #   predicted counts  i0: 0+1=1  i1: 1+0=1  i2: 0+0=0  i3: 0+0=0
    # Pk: same-segment answers differ at i0 and i2 -> 2/4; WindowDiff: counts differ at i0, i2 -> 2/4.
    # No predicted boundary is right: precision 0/1, recall 0/1, F1 0.
    scores = document_scores(np.array([0, 1, 0, 0, 0, 0]), REFERENCE)
    assert scores == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "pk": 0.5, "window_diff": 0.5}


def test_extra_boundary_is_punished_by_window_diff_more_than_by_pk():
    # Prediction: boundaries after sentences 2 and 3. k = 2.
    #   reference counts  i0: 0  i1: 1  i2: 1  i3: 0
    #   predicted counts  i0: 0  i1: 0+1=1  i2: 1+1=2  i3: 1+0=1
    # Pk: "same segment?" differs only at i3 (0 vs 1) -> 1/4, since i2 has >0 boundaries in both.
    # WindowDiff: counts differ at i2 (1 vs 2) and i3 (0 vs 1) -> 2/4.
    # Precision 1/2, recall 1/1, F1 = 2 * 0.5 * 1 / 1.5 = 2/3.
    scores = document_scores(np.array([0, 0, 1, 1, 0, 0]), REFERENCE)
    assert scores == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "pk": 0.25, "window_diff": 0.5})


def test_perfect_prediction_and_the_ignored_last_sentence():
    perfect = {"precision": 1.0, "recall": 1.0, "f1": 1.0, "pk": 0.0, "window_diff": 0.0}
    assert document_scores(REFERENCE, REFERENCE) == perfect
    # A "boundary" after the last sentence is no boundary: it is ignored.
    assert document_scores(np.array([0, 0, 1, 0, 0, 1]), REFERENCE) == perfect


def test_scores_are_averaged_per_document_over_the_mask():
    # Document 1 is the early-boundary example (F1 0, Pk 0.5), document 2 a perfect 4-sentence
    # document padded to 6: means F1 (0 + 1) / 2 = 0.5 and Pk (0.5 + 0) / 2 = 0.25. The padded
    # slots hold a predicted boundary that must not count.
    predicted = np.array([[0, 1, 0, 0, 0, 0], [1, 0, 0, 0, 1, 1]])
    reference = np.array([REFERENCE, [1, 0, 0, 0, 0, 0]])
    mask = np.array([[True] * 6, [True] * 4 + [False] * 2])
    scores = segmentation_scores(predicted, reference, mask)
    assert scores == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "pk": 0.25, "window_diff": 0.25})


def segment_index(boundary: np.ndarray) -> np.ndarray:
    """The segment each sentence belongs to, counting from 0."""
    return np.concatenate([[0], np.cumsum(boundary[:-1])])


def test_pk_and_window_diff_match_their_definitions_on_random_documents():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(2, 30))
        reference, predicted = (np.append(rng.random(n - 1) < 0.3, 0).astype(int) for _ in range(2))
        k = probe_width(reference)
        ref, hyp = segment_index(reference), segment_index(predicted)
        pk = np.mean([(ref[i] == ref[i + k]) != (hyp[i] == hyp[i + k]) for i in range(n - k)])
        wd = np.mean([(ref[i + k] - ref[i]) != (hyp[i + k] - hyp[i]) for i in range(n - k)])
        scores = document_scores(predicted, reference)
        assert scores["pk"] == pytest.approx(pk) and scores["window_diff"] == pytest.approx(wd)


def test_bits_per_character():
    assert bits_per_character(math.log(2)) == pytest.approx(1.0)
    assert bits_per_character(math.log(97)) == pytest.approx(math.log2(97))  # uniform over the vocabulary
