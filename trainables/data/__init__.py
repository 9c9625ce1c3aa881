"""Data sets: generation, Parquet cache, users' own Parquet files, and train/validation/test splits.

Nothing here is seen by a model directly: the trainable receives the arrays of a
:class:`DataSplits` through the Ray object store.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from trainables.data.tables import Arrays, Schema, read_table, write_table
from trainables.errors import DataError

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)


@dataclass(frozen=True)
class DataSplits:
    train: Arrays
    validation: Arrays
    test: Arrays | None  # None once handed to a sweep: sweeps never see the test split
    source: str

    def without_test(self) -> DataSplits:
        return replace(self, test=None)

    def sizes(self) -> dict[str, int]:
        return {
            name: len(next(iter(arrays.values())))
            for name, arrays in (("train", self.train), ("validation", self.validation), ("test", self.test))
            if arrays is not None
        }


def cache_dir() -> Path:
    return Path(os.environ.get("SWEEPER_CACHE_DIR", Path.home() / ".cache" / "attention-sweeper"))


def cached(prefix: str, key: Mapping[str, object], build: Callable[[], Arrays], schema: Schema) -> tuple[Arrays, Path]:
    """Arrays for ``key``: read from the Parquet cache, or built, validated and written to it."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = cache_dir() / f"{prefix}-{digest}.parquet"
    if path.exists():
        logger.info("reading cached data set %s", path)
        return read_table(path, schema), path
    arrays = schema.validate(build(), f"generated {prefix} data")
    write_table(arrays, path)
    logger.info("cached data set at %s", path)
    return arrays, path


def split_random(arrays: Arrays, seed: int, source: str) -> DataSplits:
    """Seeded random split into train / validation / test by SPLIT_FRACTIONS."""
    rows = len(next(iter(arrays.values())))
    if rows < len(SPLITS):
        raise DataError(f"{source}: {rows} rows cannot be split into {', '.join(SPLITS)}; give at least 3")
    order = np.random.default_rng(seed).permutation(rows)
    return _take(arrays, *np.split(order, _cuts(rows)), source)


def split_by_group(arrays: Arrays, groups: np.ndarray, seed: int, source: str) -> DataSplits:
    """Seeded split that keeps each group (a subject, a source document) within one split.

    Whole groups are assigned by SPLIT_FRACTIONS of the groups, so no group leaks from the
    training data into validation or test.
    """
    names = np.unique(groups)
    if len(names) < len(SPLITS):
        raise DataError(f"{source}: {len(names)} groups cannot be split into {', '.join(SPLITS)}; give at least 3")
    assigned = np.split(np.random.default_rng(seed).permutation(names), _cuts(len(names)))
    return _take(arrays, *(np.flatnonzero(np.isin(groups, members)) for members in assigned), source)


def split_by_column(arrays: Arrays, labels: np.ndarray, source: str) -> DataSplits:
    """Split by a user's ``split`` column holding 'train', 'validation' or 'test' per row."""
    labels = labels.astype(str)
    unknown = sorted(set(labels) - set(SPLITS))
    if unknown:
        raise DataError(f"{source}: column 'split' has values {unknown}; allowed: {', '.join(SPLITS)}")
    indices = [np.flatnonzero(labels == name) for name in SPLITS]
    for name, index in zip(SPLITS, indices):
        if not len(index):
            raise DataError(f"{source}: column 'split' marks no row as {name!r}; every split needs rows")
    return _take(arrays, *indices, source)


def read_user_table(path: Path, schema: Schema, seed: int) -> DataSplits:
    """A user's Parquet file: validated, split by its ``split`` column if it has one, else randomly."""
    arrays = read_table(path, schema, extra=("split",))
    labels = arrays.pop("split", None)
    if labels is not None:
        return split_by_column(arrays, labels, str(path))
    return split_random(arrays, seed, str(path))


def _cuts(count: int) -> np.ndarray:
    """Where to cut ``count`` shuffled items into SPLIT_FRACTIONS, each split keeping at least one."""
    cuts = np.round(np.cumsum(SPLIT_FRACTIONS)[:-1] * count).astype(int)
    return np.clip(cuts, [1, 2], [count - 2, count - 1])


def _take(arrays: Arrays, train: np.ndarray, validation: np.ndarray, test: np.ndarray, source: str) -> DataSplits:
    def rows(index: np.ndarray) -> Arrays:
        return {name: array[index] for name, array in arrays.items()}

    return DataSplits(rows(train), rows(validation), rows(test), source)
