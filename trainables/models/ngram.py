"""Interpolated Kneser-Ney character n-gram model, vectorised with numpy: the language model's reference.

Method (Chen and Goodman 1998, modified Kneser-Ney with three discounts per order). The probability
of the next character w after the context h (the last n - 1 characters) is

    P_n(w | h) = max(c(h w) - D(c(h w)), 0) / c(h) + gamma(h) P_{n-1}(w | h'),
    gamma(h)   = (D1 N1(h) + D2 N2(h) + D3 N3+(h)) / c(h),

where h' drops the oldest character of h, N_k(h) counts the characters seen exactly k times (3+:
at least 3 times) after h, and D1, D2, D3 come from the order's counts of counts. At the highest
order c is the raw count; at every lower order it is the continuation count, the number of
distinct characters seen before h w, which is what makes a lower order a good back-off. A context
never seen in training passes its lower order through unchanged; order 1 backs off to the uniform
distribution over the vocabulary, so no character ever gets probability zero.

Contexts are read inside each sequence only (for the character windows: inside each window, as the
network reads them): where fewer than n - 1 characters precede a position, the highest available
order uses raw counts, as at the start of a sentence in word models.

Vectorised: every context of up to 8 characters is one int64 key (base-V digits, V <= 97, exact,
no hashing); each order's counts are sorted arrays of n-gram keys, so a batch of contexts is looked
up with ``np.searchsorted`` and each found context's followers are scattered into the (positions, V)
probability matrix in one indexing operation. Modified Kneser-Ney (three discounts) was measured
against a single discount per order (see the reference in families/language_model.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_ORDER = 9  # 97 ** 9 < 2 ** 63: the n-gram keys of every order up to 9 fit in int64 exactly
DENSE_ENTRIES = 2**21  # orders with at most this many (context, character) cells are kept as a matrix


def suffix_keys(tokens: np.ndarray, length: int, base: int) -> np.ndarray:
    """(N, L) keys of the ``length`` tokens ending at each position (the newest is the lowest digit);
    -1 where fewer than ``length`` tokens are available in the row."""
    keys = np.zeros(tokens.shape, dtype=np.int64)
    for back in range(length):  # the token ``back`` steps before each position, digit ``back``
        keys[:, back:] += tokens[:, : tokens.shape[1] - back].astype(np.int64) * base**back
    keys[:, : max(length - 1, 0)] = -1
    return keys


@dataclass(frozen=True)
class CountTable:
    """Counts of the n-grams of one order, sorted by key (context * V + next character)."""

    keys: np.ndarray  # (M,) int64 sorted n-gram keys
    contexts: np.ndarray  # (C,) sorted distinct contexts
    starts: np.ndarray  # (C + 1,) the n-grams of contexts[i] are keys[starts[i]:starts[i + 1]]
    discounted: np.ndarray  # (M,) (count - D(count)) / c(h): the n-gram's own share of its probability
    backoff: np.ndarray  # (C,) gamma(h): the probability mass the context passes to the lower order
    dense: np.ndarray | None  # (C, V) the discounted shares as a matrix, for orders with few contexts

    @classmethod
    def from_counts(cls, keys: np.ndarray, counts: np.ndarray, base: int) -> CountTable:
        discount = modified_discounts(counts)[np.minimum(counts, 3)]  # (M,)
        context_of, starts = np.unique(keys // base, return_index=True)
        owner = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(keys))))  # (M,) context index
        totals = np.add.reduceat(counts.astype(np.float64), starts)  # (C,) c(h)
        discounted = (counts - discount) / totals[owner]
        dense = None
        if len(starts) * base <= DENSE_ENTRIES:  # low orders: every context has many followers, a matrix is faster
            dense = np.zeros((len(starts), base))
            dense[owner, keys % base] = discounted
        starts = np.append(starts, len(keys))
        return cls(keys, context_of, starts, discounted, np.add.reduceat(discount, starts[:-1]) / totals, dense)

    def interpolate(self, probabilities: np.ndarray, contexts: np.ndarray, base: int) -> None:
        """In place: rows whose context is known become discounted counts + gamma * the row (a lower order)."""
        index = np.minimum(np.searchsorted(self.contexts, contexts), len(self.contexts) - 1)
        rows = np.flatnonzero(self.contexts[index] == contexts)  # positions whose context was seen
        found = index[rows]
        if self.dense is not None:
            probabilities[rows] = probabilities[rows] * self.backoff[found, None] + self.dense[found]
            return
        probabilities[rows] *= self.backoff[found, None]
        lengths = self.starts[found + 1] - self.starts[found]
        first = np.repeat(self.starts[found] - np.cumsum(lengths) + lengths, lengths)
        entries = first + np.arange(lengths.sum())  # every n-gram of every found context
        probabilities[np.repeat(rows, lengths), self.keys[entries] % base] += self.discounted[entries]


def modified_discounts(counts: np.ndarray) -> np.ndarray:
    """(4,) discounts D(0) = 0, D1, D2, D3+ from the counts of counts (Chen and Goodman's estimates)."""
    n1, n2, n3, n4 = (max(int(np.sum(counts == k)), 1) for k in range(1, 5))
    y = n1 / (n1 + 2 * n2)
    return np.clip([0.0, 1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3], 0.0, [0.0, 1.0, 2.0, 3.0])


class KneserNey:
    """Character n-gram model of every order up to ``max_order``, fitted once; pick the order when predicting."""

    def __init__(self, sequences: np.ndarray, vocab_size: int, max_order: int = MAX_ORDER) -> None:
        """``sequences`` (N, L) int tokens in [0, vocab_size); n-grams never cross rows."""
        if not 1 <= max_order <= MAX_ORDER or vocab_size > 97:
            raise ValueError(f"max_order must be in [1, {MAX_ORDER}] and vocab_size <= 97, got {max_order}, {vocab_size}")
        self.vocab_size = vocab_size
        self.max_order = max_order
        self.raw: list[CountTable] = []  # raw[k - 1]: order k, raw counts (the highest order)
        self.continuation: list[CountTable] = []  # continuation[k - 1]: order k, continuation counts
        distinct_above = None
        for order in range(max_order + 1, 0, -1):  # one order beyond, for the continuation counts of max_order
            keys, counts = np.unique(self._ngram_keys(sequences, order), return_counts=True)
            if distinct_above is not None:  # the distinct (order + 1)-grams, oldest character dropped
                continuations = np.unique(distinct_above % vocab_size**order, return_counts=True)
                self.continuation.insert(0, CountTable.from_counts(*continuations, vocab_size))
            if order <= max_order:
                self.raw.insert(0, CountTable.from_counts(keys, counts, vocab_size))
            distinct_above = keys

    def _ngram_keys(self, sequences: np.ndarray, order: int) -> np.ndarray:
        keys = suffix_keys(sequences, order, self.vocab_size)
        return keys[keys >= 0]

    def log_probabilities(self, inputs: np.ndarray, order: int, chunk: int = 256) -> np.ndarray:
        """(N, T) tokens -> (N, T, V) float32 natural-log probabilities of the token after each position.

        Position t reads the t + 1 tokens up to it (all of them if fewer than ``order`` - 1)."""
        if not 1 <= order <= self.max_order:
            raise ValueError(f"order must be in [1, {self.max_order}], got {order}")
        parts = [self._log_probabilities(inputs[start : start + chunk], order) for start in range(0, len(inputs), chunk)]
        return np.concatenate(parts) if parts else np.zeros((0, inputs.shape[1], self.vocab_size), np.float32)

    def _log_probabilities(self, inputs: np.ndarray, order: int) -> np.ndarray:
        rows, length = inputs.shape
        probabilities = np.full((rows * length, self.vocab_size), 1.0 / self.vocab_size)  # order 0: uniform
        read = np.broadcast_to(np.arange(length) + 1, inputs.shape).reshape(-1)  # tokens read up to each position
        top = np.minimum(order, read + 1)  # the highest order each position can use: raw counts there
        for level in range(1, order + 1):
            contexts = suffix_keys(inputs, level - 1, self.vocab_size).reshape(-1)  # (rows * length,)
            for table, selected in ((self.continuation[level - 1], level < top), (self.raw[level - 1], level == top)):
                chosen = np.flatnonzero(selected)
                part = probabilities[chosen]  # (n, V), a copy: interpolate works in place on it
                table.interpolate(part, contexts[chosen], self.vocab_size)
                probabilities[chosen] = part
        return np.log(probabilities, dtype=np.float32).reshape(rows, length, self.vocab_size)
