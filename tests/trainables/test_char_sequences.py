from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from trainables.data.char_sequences import UNKNOWN, VOCAB_SIZE, CharSequences, decode, encode, generate, load_sequences, windows
from trainables.data.text_corpus import load_corpus
from trainables.errors import DataError

SETTINGS = CharSequences(sequence_length=32, seed=2)


def test_fixed_vocabulary():
    assert VOCAB_SIZE == 97  # unknown + newline + 95 printable ASCII characters
    text = "Tab\there, newline\nand ~ tilde"
    tokens = encode(text)
    assert tokens.dtype == np.int64 and tokens.min() >= 0 and tokens.max() < VOCAB_SIZE
    assert decode(tokens) == text.replace("\t", "\ufffd")
    assert encode("é€𝔸").tolist() == [UNKNOWN] * 3 and encode("\n ").tolist() == [1, 2]


def test_windows_overlap_by_one_character():
    rows = windows(np.arange(10), 3)
    np.testing.assert_array_equal(rows, [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]])
    assert windows(np.arange(3), 3).shape == (0, 4)


def test_windows_are_module_text_and_splits_never_share_a_module():
    arrays = generate(SETTINGS)
    corpus = load_corpus()
    assert arrays["tokens"].shape[1] == SETTINGS.sequence_length + 1
    first = np.flatnonzero(arrays["module"] == "json")[0]
    json_text = "".join(sentence + "\n" for sentence in corpus["sentence"][corpus["module"] == "json"])
    assert decode(arrays["tokens"][first]) == json_text[: SETTINGS.sequence_length + 1]
    modules = {split: set(arrays["module"][arrays["split"] == split]) for split in ("train", "validation", "test")}
    assert all(modules.values())
    assert modules["train"].isdisjoint(modules["validation"] | modules["test"]) and modules["validation"].isdisjoint(modules["test"])


def test_subsample_is_seeded_and_keeps_the_split_shares():
    full = load_sequences(SETTINGS)
    small = load_sequences(dataclasses.replace(SETTINGS, max_sequences=300))
    again = load_sequences(dataclasses.replace(SETTINGS, max_sequences=300))
    np.testing.assert_array_equal(small.test["tokens"], again.test["tokens"])
    total = sum(full.sizes().values())
    for name, count in small.sizes().items():
        assert abs(count - 300 * full.sizes()[name] / total) <= 1
    assert "split" not in small.train


def test_unusable_settings_are_refused():
    assert CharSequences(sequence_length=0, max_sequences=2).problems() == [
        "sequence_length must be at least 1, got 0",
        "max_sequences must be at least 3 (one per split) or None, got 2",
    ]
    with pytest.raises(DataError, match="character sequence settings: sequence_length must be at least 1"):
        generate(CharSequences(sequence_length=0))
