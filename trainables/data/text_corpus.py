"""Real English text that ships with Python: the sentences of the standard library's docstrings.

The corpus is built at run time, with no download: the docstrings of every public standard-library
module, of its public submodules and of their public functions, classes and methods (collected
by ``stdlib_docstrings.py`` in a child process that cannot print into, hang or alter this one),
cleaned and split into sentences. One row per sentence: ``module`` (the top-level stdlib module,
the unit by which data is split), ``source`` (the dotted name of the documented object) and
``sentence``, in a deterministic order (modules sorted, members sorted within each module).

Cleaning, per docstring (:func:`prose_paragraphs`): NFKC normalisation, common indentation
removed; doctest examples (a ``>>>`` line and everything up to the next blank line), literal
blocks (the indented block after a line ending in ``::``), call-signature lines
(``name(args) -> result``), comment lines (``# ...``), table rows (a run of 3 or more spaces
inside the line) and lines that are mostly symbols (rules, code) dropped. A paragraph ends at a
blank line, a bullet, a dedent, or an indent after a line ending in ``:`` (``Args:`` and its
items); other deeper lines continue the paragraph (hanging indents). Each paragraph's lines are
joined and split into sentences by :func:`split_sentences`; a sentence is kept when
:func:`is_prose` says so. A sentence seen before (in an earlier module, or earlier in the same
one) is dropped, so boilerplate ("Return self.") appears once and cannot leak between splits.

The text depends on the Python build (version and platform), which is part of the cache key.
"""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import unicodedata
from dataclasses import asdict
from inspect import cleandoc
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from trainables.data import SPLITS, DataSplits, assign_groups, cached, split_by_column
from trainables.data.stdlib_docstrings import stdlib_modules
from trainables.data.tables import STRING, Arrays, Column, Schema
from trainables.errors import DataError

logger = logging.getLogger(__name__)

CORPUS_VERSION = 1  # bump when extraction or cleaning changes, so cached corpora are rebuilt
BUILD_TIMEOUT_S = 300
EXTRACTOR = Path(__file__).with_name("stdlib_docstrings.py")

SCHEMA = Schema(
    (
        Column("module", STRING, (), "top-level standard-library module the sentence comes from"),
        Column("source", STRING, (), "dotted name of the documented object"),
        Column("sentence", STRING, (), "one cleaned sentence"),
    )
)

# ---------------------------------------------------------------- cleaning

MIN_WORDS, MIN_CHARS, MAX_CHARS = 4, 20, 500
MIN_LETTER_SHARE = 0.6  # of the non-space characters; below it a line or sentence is code or a table
SIGNATURE = re.compile(r"^[\w.]+\(.*\)\s*(-+>.*)?$")  # "name(args) -> result" on its own line
TABLE_ROW = re.compile(r"\S {3,}\S")
BULLET = re.compile(r"^([-*+]|\d+[.)])\s")


def letter_share(text: str) -> float:
    """Letters among the non-space characters: low for code, tables and rules."""
    visible = [char for char in text if not char.isspace()]
    return sum(char.isalpha() for char in visible) / max(len(visible), 1)


def is_prose_line(text: str) -> bool:
    """False for a line of a docstring that is a signature, a comment, a table row or mostly symbols."""
    return not (
        SIGNATURE.match(text) or text.startswith("#") or TABLE_ROW.search(text) or letter_share(text) < MIN_LETTER_SHARE
    )


def prose_paragraphs(docstring: str) -> list[str]:
    """The paragraphs of running text in a docstring, each on one line (rules in the module docstring)."""
    paragraphs: list[list[str]] = [[]]
    skip_deeper_than, in_doctest, previous, previous_indent = None, False, "", 0
    for line in cleandoc(unicodedata.normalize("NFKC", docstring).expandtabs(8)).splitlines():
        text, indent = line.strip(), len(line) - len(line.lstrip())
        if skip_deeper_than is not None and (not text or indent > skip_deeper_than):
            continue  # inside a literal block
        skip_deeper_than = None
        in_doctest = text.startswith(">>>") or (in_doctest and bool(text))
        opens_block = indent > previous_indent and previous.endswith(":")
        if not text or indent < previous_indent or opens_block or BULLET.match(text):
            paragraphs.append([])
        previous, previous_indent = text, indent
        if in_doctest or not is_prose_line(text):
            continue
        if text.endswith("::"):
            text, skip_deeper_than = text[:-1], indent
        paragraphs[-1].append(text)
    return [" ".join(lines) for lines in paragraphs if lines]


# ---------------------------------------------------------------- sentence splitting

# Words ending in a full stop that do not end a sentence. "etc." is not here: mid-sentence it is
# followed by a lowercase word (no split anyway), before a capital it usually ends the sentence.
# Nor are single letters: "the arc tangent of x." ends far more docstring sentences than initials do.
ABBREVIATIONS = frozenset({"al.", "approx.", "cf.", "dr.", "fig.", "mr.", "mrs.", "resp.", "vs.", "viz."})
DOTTED_ABBREVIATION = re.compile(r"^(?:[a-z]\.){2,}$")  # e.g. i.e. a.k.a. U.S.
CODE = re.compile(r"``.+?``|`[^`]+`")
SENTENCE_END = re.compile(r"(?<!\.)[.!?][\"')\]]*\s+(?=[\"'(\[`]?[A-Z])")


def split_sentences(paragraph: str) -> list[str]:
    """Split running text after ``.``, ``!`` or ``?`` (and closing quotes or brackets) followed by
    whitespace and a capital letter, except after an abbreviation or an ellipsis or inside code in
    backticks. A full stop not followed by whitespace (``3.11``, ``os.path``) never splits.
    """
    code = [match.span() for match in CODE.finditer(paragraph)]
    sentences, start = [], 0
    for end in SENTENCE_END.finditer(paragraph):
        last_word = paragraph[start : end.start() + 1].split()[-1].lstrip("\"'([").lower()
        if any(left <= end.start() < right for left, right in code):
            continue
        if last_word in ABBREVIATIONS or DOTTED_ABBREVIATION.match(last_word):
            continue
        sentences.append(paragraph[start : end.end()].strip())
        start = end.end()
    sentences.append(paragraph[start:].strip())
    return [sentence for sentence in sentences if sentence]


def is_prose(sentence: str) -> bool:
    """Long enough to be a sentence, short enough not to be a run-on table, mostly letters, no doctest."""
    return (
        MIN_CHARS <= len(sentence) <= MAX_CHARS
        and len(re.findall(r"[A-Za-z]+", sentence)) >= MIN_WORDS
        and letter_share(sentence) >= MIN_LETTER_SHARE
        and ">>>" not in sentence
    )


def sentences_of(docstring: str) -> list[str]:
    """The kept sentences of one docstring, in order."""
    return [s for paragraph in prose_paragraphs(docstring) for s in split_sentences(paragraph) if is_prose(s)]


# ---------------------------------------------------------------- building and caching


def build_corpus(modules: Sequence[str] | None = None) -> Arrays:
    """The corpus of ``modules`` (top-level stdlib names; None for all of them), built from scratch."""
    names = _checked_modules(modules)
    started = time.perf_counter()
    seen: set[str] = set()
    rows = []
    for module, source, docstring in _extract(names):
        for sentence in sentences_of(docstring):
            if sentence not in seen:
                seen.add(sentence)
                rows.append((module, source, sentence))
    if not rows:
        raise DataError(f"the docstrings of {', '.join(names)} hold no sentence; name other standard-library modules")
    arrays = {name: np.array([row[index] for row in rows], dtype=object) for index, name in enumerate(SCHEMA.names)}
    logger.info(
        "text corpus: %d modules, %d sentences, %d characters, built in %.1f s",
        len(set(arrays["module"])), len(rows), sum(map(len, arrays["sentence"])), time.perf_counter() - started,
    )
    return arrays


def load_corpus(modules: Sequence[str] | None = None) -> Arrays:
    """The corpus, from the Parquet cache or built (see :func:`build_corpus`)."""
    return cached("text-corpus", corpus_key(modules), lambda: build_corpus(modules), SCHEMA)[0]


def corpus_key(modules: Sequence[str] | None) -> dict[str, Any]:
    """What the corpus depends on: part of the cache key of every data set made from it."""
    return {"version": CORPUS_VERSION, "python": sys.version, "platform": sys.platform, "modules": _checked_modules(modules)}


def module_splits(corpus: Arrays, seed: int) -> dict[str, tuple[str, ...]]:
    """Seeded assignment of the corpus's modules to train / validation / test, about SPLIT_FRACTIONS
    of the characters each, so text from one module never appears in two splits."""
    names, inverse = np.unique(corpus["module"].astype(str), return_inverse=True)
    characters = np.bincount(inverse, weights=[len(sentence) for sentence in corpus["sentence"]])
    assigned = assign_groups(names, seed, "text corpus", weights=characters)
    return {split: tuple(sorted(members.tolist())) for split, members in zip(SPLITS, assigned)}


def cached_splits(prefix: str, version: int, settings: Any, build: Callable[[], Arrays], schema: Schema) -> DataSplits:
    """A data set made from the corpus, cached, then split by its ``split`` column.

    ``settings`` is a dataclass with a ``modules`` field; ``build`` makes arrays with a ``split``
    column, drawing each split's rows from that split's modules (:func:`module_splits`) only.
    """
    key = {"version": version, "corpus": corpus_key(settings.modules), **asdict(settings)}
    arrays, path = cached(prefix, key, build, schema)
    labels = arrays.pop("split")
    return split_by_column(arrays, labels, f"{prefix} from the standard-library corpus ({path.name})")


def _checked_modules(modules: Iterable[str] | None) -> list[str]:
    known = stdlib_modules()
    if modules is None:
        return known
    unknown = sorted(set(modules) - set(known))
    if unknown:
        raise DataError(f"{unknown[0]!r} is not a public standard-library module this corpus can use; e.g. {', '.join(known[:5])}")
    return sorted(set(modules))


def _extract(names: list[str]) -> list[list[str]]:
    """[module, source, docstring] rows from the child process (see stdlib_docstrings.py)."""
    environment = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY")}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "docstrings.json"
        try:
            subprocess.run(
                [sys.executable, "-I", "-S", str(EXTRACTOR), str(out), *names],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                env=environment, timeout=BUILD_TIMEOUT_S, check=True,
            )
        except subprocess.TimeoutExpired:
            raise DataError(f"collecting standard-library docstrings took over {BUILD_TIMEOUT_S} s; name fewer modules") from None
        except subprocess.CalledProcessError as error:
            raise DataError(f"collecting standard-library docstrings failed: {error.stderr.decode(errors='replace')[-500:]}") from None
        return json.loads(out.read_text(encoding="utf-8"))
