"""Character-level language-modelling windows over the standard-library corpus (text_corpus.py).

Text: each module's sentences in corpus order, one per line (a newline ends every sentence).
Vocabulary, fixed so that every data set and checkpoint agrees: 0 unknown (any other character,
e.g. non-ASCII letters), 1 newline, 2 .. 96 printable ASCII from space to tilde.
Windows: T + 1 consecutive characters (the model reads the first T and predicts the last T),
starting every T characters of a module's text and never crossing from one module into another.

Splits by module, exactly as the segmentation documents (``text_corpus.module_splits``): the same
seed puts the same modules in each split, so no module's text is in two splits. With
``max_sequences`` a seeded subsample of each split's windows is kept, proportional to its size.

Output arrays: tokens (N, T + 1) int64, module (N,) str, split (N,) str (turned into the splits by
:func:`load_sequences`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainables.data import SPLITS, DataSplits
from trainables.data.tables import STRING, Arrays, Column, Schema
from trainables.data.text_corpus import cached_splits, load_corpus, module_splits
from trainables.errors import DataError

SEQUENCES_VERSION = 1  # bump when windowing changes, so cached data sets are rebuilt
UNKNOWN = 0
VOCABULARY = "\n" + "".join(map(chr, range(32, 127)))  # token i + 1 is VOCABULARY[i]
VOCAB_SIZE = len(VOCABULARY) + 1
_TOKEN_OF_ASCII = np.zeros(128, dtype=np.int64)
_TOKEN_OF_ASCII[[ord(char) for char in VOCABULARY]] = np.arange(1, VOCAB_SIZE)

SCHEMA = Schema(
    (
        Column("tokens", "int64", ("T1",), "T + 1 characters as tokens: inputs [:-1], targets [1:]"),
        Column("module", STRING, (), "top-level standard-library module of the window"),
        Column("split", STRING, (), "train, validation or test"),
    )
)


@dataclass(frozen=True)
class CharSequences:
    """Settings of one window set; with the corpus they key its cache."""

    sequence_length: int = 128  # T: characters the model reads per window
    max_sequences: int | None = None  # keep about this many windows over all splits; None: all
    seed: int = 0  # module split and subsample
    modules: tuple[str, ...] | None = None  # corpus subset (top-level stdlib modules); None: all

    def problems(self) -> list[str]:
        """What makes these settings unusable, as messages naming the field and the fix."""
        found = []
        if self.sequence_length < 1:
            found.append(f"sequence_length must be at least 1, got {self.sequence_length}")
        if self.max_sequences is not None and self.max_sequences < len(SPLITS):
            found.append(f"max_sequences must be at least {len(SPLITS)} (one per split) or None, got {self.max_sequences}")
        return found


def encode(text: str) -> np.ndarray:
    """(len(text),) int64 tokens; characters outside the vocabulary become UNKNOWN."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    return np.where(codes < 128, _TOKEN_OF_ASCII[np.minimum(codes, 127)], UNKNOWN)


def decode(tokens: np.ndarray) -> str:
    """Text of ``tokens``, with U+FFFD for UNKNOWN: for looking at data and samples."""
    return "".join(VOCABULARY[token - 1] if token != UNKNOWN else "\ufffd" for token in np.asarray(tokens).tolist())


def windows(tokens: np.ndarray, length: int) -> np.ndarray:
    """(n, length + 1) windows of ``tokens`` starting every ``length`` tokens; the tail that fits none is dropped."""
    count = max(0, (len(tokens) - 1) // length)
    return tokens[np.arange(count)[:, None] * length + np.arange(length + 1)]


def generate(settings: CharSequences) -> Arrays:
    """The window set described by ``settings`` (see the module docstring), with its split column."""
    problems = settings.problems()
    if problems:
        raise DataError(f"character sequence settings: {problems[0]}")
    corpus = load_corpus(settings.modules)
    parts = []
    for split, members in module_splits(corpus, settings.seed).items():
        for name in members:
            text = "".join(sentence + "\n" for sentence in corpus["sentence"][corpus["module"] == name])
            rows = windows(encode(text), settings.sequence_length)
            parts.append({"tokens": rows, "module": np.full(len(rows), name, dtype=object), "split": np.full(len(rows), split, dtype=object)})
    arrays = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    missing = [split for split in SPLITS if split not in set(arrays["split"])]
    if missing:
        raise DataError(f"no module of the {missing[0]} split has {settings.sequence_length + 1} characters: use more modules or a shorter sequence_length")
    return _subsample(arrays, settings)


def _subsample(arrays: Arrays, settings: CharSequences) -> Arrays:
    """About ``max_sequences`` windows, each split keeping its share (at least one), in corpus order."""
    total = len(arrays["tokens"])
    if settings.max_sequences is None or total <= settings.max_sequences:
        return arrays
    rng = np.random.default_rng([settings.seed, total])
    kept = []
    for split in np.unique(arrays["split"].astype(str)):
        rows = np.flatnonzero(arrays["split"] == split)
        kept.append(rng.choice(rows, max(1, round(len(rows) * settings.max_sequences / total)), replace=False))
    index = np.sort(np.concatenate(kept))
    return {name: array[index] for name, array in arrays.items()}


def load_sequences(settings: CharSequences) -> DataSplits:
    """The window set for ``settings``, from the Parquet cache or generated, in its three splits."""
    return cached_splits("char-sequences", SEQUENCES_VERSION, settings, lambda: generate(settings), SCHEMA)
