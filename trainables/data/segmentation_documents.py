"""Choi-style text-segmentation documents made of standard-library docstring sentences.

A document concatenates ``min_segments`` to ``max_segments`` segments, each of ``min_sentences``
to ``max_sentences`` consecutive sentences of one module of the corpus (text_corpus.py), every
segment from a different module, as Choi (2000) built his benchmark from 3-11 sentence segments
of the Brown corpus. A sentence's label is 1 when a segment boundary follows it: after the last
sentence of every segment except the document's last. The task is to find where the topic changes.

Splits by module: the corpus's modules are assigned to train / validation / test first
(``text_corpus.module_splits``, about SPLIT_FRACTIONS of the characters each), then each split's
documents are drawn from that split's modules only, so no module's text is in two splits. A module
can give a segment only if it has at least ``max_sentences`` sentences, so every segment length
is possible from every module.

Words: lowercase runs of ASCII letters and digits, hashed with CRC-32 (stable across processes and
platforms, unlike Python's salted ``hash()``) into buckets 1 .. ``vocab_size`` - 1; 0 is padding.
A sentence keeps its first ``max_tokens`` words.

Output arrays (S = max_segments * max_sentences, T = max_tokens; padding is 0 / False / -1):
  tokens (N, S, T) int64, sentence_mask (N, S) bool, boundary (N, S) float32,
  sentence_ids (N, S) int64 corpus rows (for inspection), modules (N,) str (the segments' modules
  in order, comma-separated) and split (N,) str, which :func:`load_documents` turns into the splits.

Documents depend only on the settings (and the Python build, through the corpus): each split's
documents come from their own generator seeded by (seed, split index).
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from trainables.data import SPLIT_FRACTIONS, SPLITS, DataSplits
from trainables.data.tables import STRING, Arrays, Column, Schema
from trainables.data.text_corpus import cached_splits, load_corpus, module_splits
from trainables.errors import DataError

DOCUMENTS_VERSION = 1  # bump when generation changes, so cached document sets are rebuilt
WORD = re.compile(r"[a-z0-9]+")

SCHEMA = Schema(
    (
        Column("tokens", "int64", ("S", "T"), "hashed words per sentence, 0 = padding"),
        Column("sentence_mask", "bool", ("S",), "true for a real sentence"),
        Column("boundary", "float32", ("S",), "target: 1 when a segment boundary follows the sentence"),
        Column("sentence_ids", "int64", ("S",), "corpus row of each sentence, -1 for padding"),
        Column("modules", STRING, (), "the segments' source modules, comma-separated, in order"),
        Column("split", STRING, (), "train, validation or test"),
    )
)


@dataclass(frozen=True)
class SegmentationDocuments:
    """Settings of one document set; with the corpus they key its cache."""

    n_documents: int = 2000  # over all three splits, by SPLIT_FRACTIONS
    min_segments: int = 3
    max_segments: int = 10
    min_sentences: int = 3  # per segment
    max_sentences: int = 11
    max_tokens: int = 32  # words kept per sentence
    vocab_size: int = 2**14  # hash buckets, including 0 for padding
    seed: int = 0  # module split and document draws
    modules: tuple[str, ...] | None = None  # corpus subset (top-level stdlib modules); None: all

    def problems(self) -> list[str]:
        """What makes these settings unusable, as messages naming the field and the fix."""
        found = []
        if self.n_documents < len(SPLITS):
            found.append(f"n_documents must be at least {len(SPLITS)} (one per split), got {self.n_documents}")
        if not 1 <= self.min_segments <= self.max_segments:
            found.append(f"need 1 <= min_segments <= max_segments, got {self.min_segments} and {self.max_segments}")
        if not 1 <= self.min_sentences <= self.max_sentences:
            found.append(f"need 1 <= min_sentences <= max_sentences, got {self.min_sentences} and {self.max_sentences}")
        if self.max_tokens < 1 or self.vocab_size < 2:
            found.append(f"max_tokens must be >= 1 and vocab_size >= 2, got {self.max_tokens} and {self.vocab_size}")
        return found

    @property
    def max_document_sentences(self) -> int:
        return self.max_segments * self.max_sentences


def word_ids(sentence: str, vocab_size: int) -> list[int]:
    """The sentence's words as hash buckets in 1 .. vocab_size - 1."""
    return [zlib.crc32(word.encode()) % (vocab_size - 1) + 1 for word in WORD.findall(sentence.lower())]


def hash_sentences(sentences: Iterable[str], max_tokens: int, vocab_size: int) -> np.ndarray:
    """(n, max_tokens) int64: each sentence's first ``max_tokens`` word buckets, 0-padded."""
    rows = [word_ids(sentence, vocab_size)[:max_tokens] for sentence in sentences]
    out = np.zeros((len(rows), max_tokens), dtype=np.int64)
    for index, row in enumerate(rows):
        out[index, : len(row)] = row
    return out


def generate(settings: SegmentationDocuments) -> Arrays:
    """The document set described by ``settings`` (see the module docstring), with its split column."""
    problems = settings.problems()
    if problems:
        raise DataError(f"segmentation document settings: {problems[0]}")
    corpus = load_corpus(settings.modules)
    words = hash_sentences(corpus["sentence"], settings.max_tokens, settings.vocab_size)  # (sentences, T)
    rows = {name: np.flatnonzero(corpus["module"] == name) for name in np.unique(corpus["module"].astype(str))}
    counts = _documents_per_split(settings.n_documents)
    parts = []
    for index, (split, members) in enumerate(module_splits(corpus, settings.seed).items()):
        usable = {name: rows[name] for name in members if len(rows[name]) >= settings.max_sentences}
        if len(usable) < settings.max_segments:
            raise DataError(
                f"the {split} split has {len(usable)} modules with at least {settings.max_sentences} sentences, "
                f"but documents need up to max_segments={settings.max_segments} different ones: "
                "use more modules, or lower max_segments or max_sentences"
            )
        rng = np.random.default_rng([settings.seed, index])
        parts.append(_draw(usable, counts[index], settings, rng) | {"split": np.full(counts[index], split, dtype=object)})
    arrays = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    mask = arrays["sentence_ids"] >= 0
    arrays["tokens"] = np.where(mask[..., None], words[np.maximum(arrays["sentence_ids"], 0)], 0)  # (N, S, T)
    arrays["sentence_mask"] = mask
    return arrays


def _documents_per_split(total: int) -> list[int]:
    """Validation and test get SPLIT_FRACTIONS of ``total`` (at least one each), train the rest."""
    counts = [max(1, round(total * fraction)) for fraction in SPLIT_FRACTIONS[1:]]
    return [total - sum(counts), *counts]


def _draw(modules: dict[str, np.ndarray], count: int, settings: SegmentationDocuments, rng: np.random.Generator) -> Arrays:
    """``count`` documents from ``modules`` (name -> corpus rows): sentence ids, boundaries, sources."""
    names = sorted(modules)
    ids = np.full((count, settings.max_document_sentences), -1, dtype=np.int64)  # (N, S)
    boundary = np.zeros((count, settings.max_document_sentences), dtype=np.float32)
    sources = np.empty(count, dtype=object)
    for document in range(count):
        chosen = rng.choice(len(names), rng.integers(settings.min_segments, settings.max_segments + 1), replace=False)
        position = 0
        for name in (names[index] for index in chosen):
            length = int(rng.integers(settings.min_sentences, settings.max_sentences + 1))
            start = int(rng.integers(0, len(modules[name]) - length + 1))
            ids[document, position : position + length] = modules[name][start : start + length]
            position += length
            boundary[document, position - 1] = 1.0
        boundary[document, position - 1] = 0.0  # the document's end is not a boundary
        sources[document] = ",".join(names[index] for index in chosen)
    return {"sentence_ids": ids, "boundary": boundary, "modules": sources}


def load_documents(settings: SegmentationDocuments) -> DataSplits:
    """The document set for ``settings``, from the Parquet cache or generated, in its three splits."""
    return cached_splits("segmentation", DOCUMENTS_VERSION, settings, lambda: generate(settings), SCHEMA)
