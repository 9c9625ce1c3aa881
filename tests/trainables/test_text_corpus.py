from __future__ import annotations

import numpy as np
import pytest

from trainables.data import SPLITS
from trainables.data.stdlib_docstrings import SKIPPED, is_public, stdlib_modules
from trainables.data.text_corpus import (
    MAX_CHARS,
    build_corpus,
    is_prose,
    load_corpus,
    module_splits,
    prose_paragraphs,
    split_sentences,
)
from trainables.errors import DataError


@pytest.fixture(scope="module")
def corpus() -> dict[str, np.ndarray]:
    return build_corpus()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Return the value. Raise an error otherwise.", ["Return the value.", "Raise an error otherwise."]),
        ("Use a mapping, e.g. A dict. Then stop.", ["Use a mapping, e.g. A dict.", "Then stop."]),
        ("Works on strings (i.e. Text) only.", ["Works on strings (i.e. Text) only."]),
        ("New in version 3.11. The old form is gone.", ["New in version 3.11.", "The old form is gone."]),
        ("See os.path.join for details.", ["See os.path.join for details."]),
        ("Call ``f(). X`` twice. Done!", ["Call ``f(). X`` twice.", "Done!"]),
        ("Wait... Then go.", ["Wait... Then go."]),
        ("Lists, tuples, etc. and sets.", ["Lists, tuples, etc. and sets."]),
        ("Is it empty? Yes. It is.", ["Is it empty?", "Yes.", "It is."]),
        ('He said "stop." Then he left.', ['He said "stop."', "Then he left."]),
        ("Return the arc tangent of x. The result is in radians.", ["Return the arc tangent of x.", "The result is in radians."]),
        ("Compare with the others (cf. Smith). Good.", ["Compare with the others (cf. Smith).", "Good."]),
    ],
)
def test_sentence_splitter(text, expected):
    assert split_sentences(text) == expected


def test_docstring_cleaning_keeps_prose_and_drops_code():
    docstring = '''join(a, *p) -> str

    Join two or more pathname components.  Inserting '/' as needed,
    it never fails.

    Example::

        x = join("a", "b")
        print(x)

    >>> join("a", "b")
    'a/b'

    Args:
        a: the first component, which may be
            absolute.
        p: the others.

    +-------+-------+
    | table | row   |
    # a comment line
    '''
    assert prose_paragraphs(docstring) == [
        "Join two or more pathname components.  Inserting '/' as needed, it never fails.",
        "Example:",
        "Args:",
        "a: the first component, which may be absolute.",
        "p: the others.",
    ]


@pytest.mark.parametrize(
    "sentence, kept",
    [
        ("Return the number of items in the container.", True),
        ("Stop it.", False),  # too short
        ("x[i:j] = t[0] + u[1] * 2 ** k", False),  # mostly symbols
        (">>> print(the_answer_to_everything)", False),
        ("word " * (MAX_CHARS // 5 + 1), False),  # a run-on table, not a sentence
    ],
)
def test_prose_filter(sentence, kept):
    assert is_prose(sentence) == kept


def test_module_selection_skips_private_test_and_gui_modules():
    names = stdlib_modules()
    assert names == sorted(names) and {"json", "textwrap", "typing"} <= set(names)
    assert not SKIPPED & set(names) and all(is_public(name) for name in names)
    assert not is_public("_json") and not is_public("unittest.test") and not is_public("lib2to3.tests.data")


def test_corpus_is_deterministic_and_reasonable(corpus):
    again = build_corpus()
    assert all(corpus[name].tolist() == again[name].tolist() for name in corpus)
    sentences = corpus["sentence"].tolist()
    characters = sum(map(len, sentences))
    print(f"text corpus: {len(set(corpus['module']))} modules, {len(sentences)} sentences, {characters} characters")
    assert len(set(corpus["module"])) > 150 and len(sentences) > 10_000 and characters > 800_000
    assert len(set(sentences)) == len(sentences), "sentences are deduplicated"
    assert not any(">>>" in sentence for sentence in sentences)
    assert list(dict.fromkeys(corpus["module"])) == sorted(set(corpus["module"])), "modules in sorted order"
    assert all(source.split(".")[0] == module for module, source in zip(corpus["module"], corpus["source"]))


def test_corpus_of_a_subset_is_cached(corpus):
    subset = load_corpus(["textwrap", "json"])
    assert set(subset["module"]) == {"json", "textwrap"}
    assert load_corpus(("json", "textwrap"))["sentence"].tolist() == subset["sentence"].tolist()
    json_rows = corpus["module"] == "json"
    assert subset["sentence"][subset["module"] == "json"].tolist() == corpus["sentence"][json_rows].tolist()


def test_unknown_modules_are_refused():
    with pytest.raises(DataError, match="'tkinter' is not a public standard-library module"):
        load_corpus(["json", "tkinter"])


def test_module_splits_are_disjoint_seeded_and_weighted_by_text(corpus):
    splits = module_splits(corpus, seed=0)
    assert list(splits) == list(SPLITS) and module_splits(corpus, seed=0) == splits
    assert module_splits(corpus, seed=1) != splits
    members = [set(names) for names in splits.values()]
    assert all(a.isdisjoint(b) for i, a in enumerate(members) for b in members[i + 1 :])
    assert set().union(*members) == set(corpus["module"])
    characters = {name: 0 for name in corpus["module"]}
    for module, sentence in zip(corpus["module"], corpus["sentence"]):
        characters[module] += len(sentence)
    share = sum(characters[name] for name in splits["train"]) / sum(characters.values())
    assert 0.65 < share < 0.75
