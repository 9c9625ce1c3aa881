from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from trainables.data.segmentation_documents import SegmentationDocuments, generate, hash_sentences, load_documents, word_ids
from trainables.data.text_corpus import load_corpus, module_splits
from trainables.errors import DataError

SETTINGS = SegmentationDocuments(n_documents=60, max_tokens=24, seed=3)


@pytest.fixture
def documents() -> dict[str, np.ndarray]:
    return generate(SETTINGS)  # function scope: the corpus cache must go to the test session's folder


def segments(document: int, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The corpus rows of each segment of one document, cut after its labelled boundaries."""
    ids = arrays["sentence_ids"][document][arrays["sentence_mask"][document]]
    cuts = np.flatnonzero(arrays["boundary"][document][: len(ids)]) + 1
    return np.split(ids, cuts)


def test_words_hash_to_fixed_buckets():
    # CRC-32 buckets, pinned: Python's salted hash() would change them in every process.
    assert word_ids("Return the Value of x2!", 2**14) == [7571, 7936, 3604, 16305, 11307]
    assert word_ids("value", 2**14) == word_ids("VALUE", 2**14) == [3604]
    tokens = hash_sentences(["one two three", "four"], max_tokens=2, vocab_size=8)
    assert tokens.shape == (2, 2) and tokens[1, 1] == 0 and ((tokens[0] >= 1) & (tokens[0] <= 7)).all()


def test_shapes_and_padding(documents):
    rows, sentences = SETTINGS.n_documents, SETTINGS.max_document_sentences
    assert documents["tokens"].shape == (rows, sentences, SETTINGS.max_tokens)
    mask = documents["sentence_mask"]
    assert mask.shape == documents["boundary"].shape == (rows, sentences)
    assert (np.diff(mask.astype(int), axis=1) <= 0).all(), "real sentences come first"
    assert not documents["tokens"][~mask].any() and not documents["boundary"][~mask].any()
    assert (documents["tokens"][mask][:, 0] > 0).all(), "every real sentence has words"


def test_segments_and_boundaries_follow_the_rules(documents):
    corpus = load_corpus()
    for document in range(SETTINGS.n_documents):
        parts = segments(document, documents)
        modules = [corpus["module"][part[0]] for part in parts]
        assert SETTINGS.min_segments <= len(parts) <= SETTINGS.max_segments
        assert all(SETTINGS.min_sentences <= len(part) <= SETTINGS.max_sentences for part in parts)
        assert all((np.diff(part) == 1).all() for part in parts), "consecutive corpus sentences"
        assert all(set(corpus["module"][part]) == {module} for part, module in zip(parts, modules))
        assert len(set(modules)) == len(modules) and ",".join(modules) == documents["modules"][document]
        last = documents["sentence_mask"][document].sum() - 1
        assert documents["boundary"][document, last] == 0, "the end of a document is not a boundary"


def test_tokens_are_the_hashed_sentences(documents):
    corpus = load_corpus()
    ids = documents["sentence_ids"][0][documents["sentence_mask"][0]]
    expected = hash_sentences(corpus["sentence"][ids], SETTINGS.max_tokens, SETTINGS.vocab_size)
    np.testing.assert_array_equal(documents["tokens"][0][: len(ids)], expected)


def test_splits_never_share_a_module():
    splits = load_documents(SETTINGS)
    used = {name: set(",".join(arrays["modules"]).split(",")) for name, arrays in zip(("train", "validation", "test"), (splits.train, splits.validation, splits.test))}
    assert splits.sizes() == {"train": 42, "validation": 9, "test": 9}
    assert used["train"].isdisjoint(used["validation"]) and used["train"].isdisjoint(used["test"])
    assert used["validation"].isdisjoint(used["test"])
    assigned = module_splits(load_corpus(), SETTINGS.seed)
    assert all(used[name] <= set(assigned[name]) for name in used)
    assert "split" not in splits.train


def test_deterministic_for_a_seed(documents):
    again = generate(SETTINGS)
    other = generate(dataclasses.replace(SETTINGS, seed=4))
    assert all(np.array_equal(documents[name], again[name]) for name in documents)
    assert not np.array_equal(documents["sentence_ids"], other["sentence_ids"])


def test_too_few_modules_for_the_segments_is_refused():
    with pytest.raises(DataError, match="documents need up to max_segments=10 different ones"):
        generate(dataclasses.replace(SETTINGS, modules=("argparse", "json", "logging", "typing", "email")))
    with pytest.raises(DataError, match="need 1 <= min_segments <= max_segments"):
        generate(dataclasses.replace(SETTINGS, min_segments=4, max_segments=3))
