"""Lexical cohesion between the sentences before and after each gap: TextTiling's signal, in torch.

A topic change shows as a dip in word overlap: the sentences just before a boundary share few
words with those just after it. For the gap after sentence i and a window w, the two blocks are
sentences i-w+1 .. i and i+1 .. i+w (cut at the document's ends); each block is the sum of its
sentences' bags of hashed words, weighted by idf, and the gap's cohesion is the cosine of the two
blocks (Hearst 1997, with idf weights). Depth scores turn the cohesion curve into boundary
evidence: how far the curve climbs on each side of a gap before it turns down.

Word ids are hash buckets (up to 2^14), so bags are built over the ids that actually occur in a
few documents at a time (``torch.unique``), not as (documents, sentences, vocabulary) tensors.
No I/O and no parameters: the same functions serve the non-learned reference and, as input
features, the networks (trainables/models/segmentation.py).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

DOCUMENTS_PER_CHUNK = 16  # bounds the bag tensor (chunk, S, distinct ids) to a few MB
EMPTY_BLOCK = 1e-6  # squared norm below which a block holds no word (a word weighs its idf, about 1 or more)


def word_idf(tokens: np.ndarray, sentence_mask: np.ndarray, vocab_size: int) -> np.ndarray:
    """(vocab_size,) float32 smoothed idf log((1 + n) / (1 + df)) + 1 over the n real sentences of
    ``tokens`` (N, S, T); df counts the sentences holding the word. Words never seen get the
    largest weight, as the rarest: in test documents those are the new topics' own words. Id 0
    (padding) weighs 0."""
    sentences = tokens[sentence_mask]  # (n, T)
    rows = np.repeat(np.arange(len(sentences)), sentences.shape[1])
    present = np.unique(np.stack([rows, sentences.ravel()]), axis=1)[1]  # each (sentence, word) once
    df = np.bincount(present, minlength=vocab_size)[:vocab_size]
    idf = np.log((1.0 + len(sentences)) / (1.0 + df)) + 1.0
    idf[0] = 0.0
    return idf.astype(np.float32)


@torch.no_grad()
def block_cohesion(tokens: torch.Tensor, sentence_mask: torch.Tensor, idf: torch.Tensor, windows: Sequence[int]) -> torch.Tensor:
    """(B, S, W) idf-weighted cosine between the ``w`` sentences up to i and the ``w`` after it,
    for each window w; 0 where a block is empty (after the last real sentence) or has no word.
    tokens (B, S, T) int64, sentence_mask (B, S) bool, idf (V,) float."""
    parts = [_chunk_cohesion(tokens[start : start + DOCUMENTS_PER_CHUNK], sentence_mask[start : start + DOCUMENTS_PER_CHUNK], idf, windows)
             for start in range(0, len(tokens), DOCUMENTS_PER_CHUNK)]  # fmt: skip
    return torch.cat(parts) if parts else tokens.new_zeros(0, tokens.shape[1], len(windows), dtype=torch.float32)


def _chunk_cohesion(tokens: torch.Tensor, sentence_mask: torch.Tensor, idf: torch.Tensor, windows: Sequence[int]) -> torch.Tensor:
    batch, sentences, _ = tokens.shape
    tokens = tokens * sentence_mask[..., None]  # words of padded sentences never count
    ids, local = torch.unique(tokens, return_inverse=True)  # local (B, S, T) indexes ids
    weights = torch.where(tokens > 0, idf[tokens], idf.new_zeros(()))  # (B, S, T), padding words weigh 0
    bags = idf.new_zeros(batch, sentences, len(ids)).scatter_add_(2, local, weights)  # (B, S, U)
    # Block dot products are sums of sentence-pair products: one matrix product, then 2-D prefix
    # sums, instead of (B, S, U) block bags per window (5 times slower).
    # In float64: differences of large prefix sums lose the digits of small blocks in float32.
    gram = torch.bmm(bags, bags.transpose(1, 2)).double()  # (B, S, S)
    prefix = torch.nn.functional.pad(gram.cumsum(1).cumsum(2), (1, 0, 1, 0))  # (B, S + 1, S + 1)
    gap = torch.arange(1, sentences + 1, device=tokens.device)  # prefix index just after sentence i
    cosines = []
    for w in windows:
        start, end = (gap - w).clamp(min=0), (gap + w).clamp(max=sentences)
        across = _block_sum(prefix, start, gap, gap, end)  # (B, S)
        before, after = _block_sum(prefix, start, gap, start, gap), _block_sum(prefix, gap, end, gap, end)
        empty = (before < EMPTY_BLOCK) | (after < EMPTY_BLOCK)
        cosines.append(torch.where(empty, 0.0, across / (before * after).clamp(min=EMPTY_BLOCK**2).sqrt()))
    return torch.stack(cosines, dim=-1).float()  # (B, S, W)


def _block_sum(prefix: torch.Tensor, row_start: torch.Tensor, row_end: torch.Tensor, col_start: torch.Tensor, col_end: torch.Tensor) -> torch.Tensor:
    """(B, S) sums of gram[b, row_start[i]:row_end[i], col_start[i]:col_end[i]] from its 2-D prefix sums."""
    def at(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return prefix[:, rows, cols]

    return at(row_end, col_end) - at(row_start, col_end) - at(row_end, col_start) + at(row_start, col_start)


def depth_scores(cohesion: torch.Tensor, sentence_mask: torch.Tensor) -> torch.Tensor:
    """(B, S) TextTiling depth of each gap's cohesion (B, S): the highest value reached climbing
    left while the curve rises, plus the same to the right, minus twice the gap's own value.
    Gaps are those after sentences 0 .. n-2; the others get depth 0."""
    gaps = sentence_mask & torch.roll(sentence_mask, -1, dims=1)
    gaps[:, -1] = False
    curve = torch.where(gaps, cohesion, torch.full_like(cohesion, float("-inf")))  # (B, S)
    left, right = curve.clone(), curve.clone()
    for i in range(1, curve.shape[1]):  # a peak is carried on while the curve keeps rising away from the gap
        left[:, i] = torch.where(curve[:, i - 1] > curve[:, i], left[:, i - 1], curve[:, i])
        j = curve.shape[1] - 1 - i
        right[:, j] = torch.where(curve[:, j + 1] > curve[:, j], right[:, j + 1], curve[:, j])
    return torch.where(gaps, left + right - 2 * curve, torch.zeros_like(cohesion))


def decode_boundaries(logits: np.ndarray, sentence_mask: np.ndarray, shortest: int, longest: int) -> np.ndarray:
    """(N, S) 0/1 boundaries that maximise the sum of the chosen gaps' logits (the likelihood when
    the logits are independent log-odds) among segmentations whose segments all have ``shortest``
    to ``longest`` sentences. A document no such segmentation fits is decoded without the limits.
    logits (N, S), sentence_mask (N, S) bool (a prefix of each row)."""
    lengths = sentence_mask.sum(axis=1)
    boundaries, feasible = _best_segmentations(logits, lengths, shortest, longest)
    if not feasible.all():
        boundaries[~feasible] = _best_segmentations(logits[~feasible], lengths[~feasible], 1, logits.shape[1])[0]
    return boundaries


def _best_segmentations(logits: np.ndarray, lengths: np.ndarray, shortest: int, longest: int) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic programming over all documents at once: (N, S) 0/1 boundaries and (N,) whether a
    segmentation with every segment length in [shortest, longest] exists."""
    count, slots = logits.shape
    rows = np.arange(count)
    # gain of cutting after sentence end - 1; cutting at the document's end is free (no boundary)
    gain = np.where(np.arange(1, slots + 1) < lengths[:, None], logits, 0.0)  # (N, S)
    best = np.full((count, slots + 1), -np.inf)  # best[:, j]: sentences 0 .. j-1 in whole segments
    best[:, 0] = 0.0
    previous = np.zeros((count, slots + 1), dtype=np.int64)
    for end in range(shortest, slots + 1):
        first = max(0, end - longest)
        pick = first + np.argmax(best[:, first : end - shortest + 1], axis=1)  # (N,)
        best[:, end], previous[:, end] = best[rows, pick] + gain[:, end - 1], pick
    boundaries = np.zeros((count, slots), dtype=np.float32)
    cursor = lengths.astype(np.int64).copy()
    while (cursor > 0).any():  # walk back from each document's end along the chosen cuts
        cursor = np.where(cursor > 0, previous[rows, cursor], 0)
        boundaries[rows[cursor > 0], cursor[cursor > 0] - 1] = 1.0
    return boundaries, np.isfinite(best[rows, lengths])
