"""Data sets: generation, Parquet cache, users' own Parquet files, and train/validation/test splits.

Nothing here is seen by a model directly: the trainable receives the arrays of a
:class:`DataSplits` through the Ray object store.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from trainables.data.tables import Arrays, Schema, read_table, write_table
from trainables.errors import ConfigError, DataError

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
    assigned = assign_groups(np.unique(groups), seed, source)
    return _take(arrays, *(np.flatnonzero(np.isin(groups, members)) for members in assigned), source)


def assign_groups(names: np.ndarray, seed: int, source: str, weights: np.ndarray | None = None) -> list[np.ndarray]:
    """Seeded assignment of whole groups to train / validation / test, each split getting at least one.

    The shuffled groups are cut by SPLIT_FRACTIONS of their number, or, with ``weights`` (one per
    name: its rows, its characters), of their total weight, so that splits of groups of very
    different sizes still hold about SPLIT_FRACTIONS of the data.
    """
    if len(names) < len(SPLITS):
        raise DataError(f"{source}: {len(names)} groups cannot be split into {', '.join(SPLITS)}; give at least 3")
    order = np.random.default_rng(seed).permutation(len(names))
    cuts = _cuts(len(names)) if weights is None else _weighted_cuts(np.asarray(weights, dtype=float)[order])
    return np.split(np.asarray(names)[order], cuts)


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


def read_user_table(path: Path, schema: Schema, seed: int, group: str | None = None) -> DataSplits:
    """A user's Parquet file: validated, split by its ``split`` column if it has one, else by the
    ``group`` column (whole groups, e.g. subjects, per split) if the family names one, else randomly."""
    arrays = read_table(path, schema, extra=("split",))
    labels = arrays.pop("split", None)
    if labels is not None:
        return split_by_column(arrays, labels, str(path))
    if group is not None:
        return split_by_group(arrays, arrays[group], seed, str(path))
    return split_random(arrays, seed, str(path))


def checked_settings(prefix: str, settings_type: type, settings: Mapping[str, object]) -> Any:
    """``settings_type(**settings)`` after checking them: an unknown name or an unusable value (the
    dataclass's ``problems()``) is refused with a message naming it."""
    fields = {f.name for f in dataclasses.fields(settings_type)}
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise ConfigError(f"unknown {prefix} data setting {unknown[0]!r}; known: {', '.join(sorted(fields))}")
    instance = settings_type(**settings)
    problems = instance.problems()
    if problems:
        raise DataError(f"{prefix} data settings: {problems[0]}")
    return instance


def simulated(
    prefix: str, settings_type: type, version: int, simulate: Callable[[object], Arrays], schema: Schema, settings: Mapping[str, object]
) -> tuple[Arrays, Path]:
    """A simulated data set from the Parquet cache, keyed by every setting and the simulator's version."""
    simulation = checked_settings(prefix, settings_type, settings)
    return cached(prefix, {"version": version, **dataclasses.asdict(simulation)}, lambda: simulate(simulation), schema)


def _cuts(count: int) -> np.ndarray:
    """Where to cut ``count`` shuffled items into SPLIT_FRACTIONS, each split keeping at least one."""
    cuts = np.round(np.cumsum(SPLIT_FRACTIONS)[:-1] * count).astype(int)
    return np.clip(cuts, [1, 2], [count - 2, count - 1])


def _weighted_cuts(weights: np.ndarray) -> np.ndarray:
    """Where the running share of ``weights`` first reaches each SPLIT_FRACTIONS boundary."""
    share = np.cumsum(weights) / weights.sum()
    first, second = np.searchsorted(share, np.cumsum(SPLIT_FRACTIONS)[:-1]) + 1
    first = min(max(first, 1), len(weights) - 2)  # a heavy group may cross both boundaries:
    return np.array([first, min(max(second, first + 1), len(weights) - 1)])  # validation still gets one


def _take(arrays: Arrays, train: np.ndarray, validation: np.ndarray, test: np.ndarray, source: str) -> DataSplits:
    def rows(index: np.ndarray) -> Arrays:
        return {name: array[index] for name, array in arrays.items()}

    return DataSplits(rows(train), rows(validation), rows(test), source)
