"""Parquet tables of fixed-shape tensors: the on-disk form of every family's data set.

A :class:`Schema` names each column's dtype and per-row shape. Shapes may use symbolic sizes
(``"R"``, ``"L"``) that are fixed by the file but must agree across columns. Written tensors use
Arrow's ``fixed_shape_tensor`` type; when reading, plain nested lists of the right shape are
accepted too, so users can write files with whatever Arrow tooling they have. A column of dtype
``"str"`` holds one text per row (an Arrow string column; in memory a 1-D object array of str,
which, unlike numpy's fixed-width unicode, does not pad every row to the longest text).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Union

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from trainables.errors import DataError

Arrays = dict[str, np.ndarray]
Size = Union[int, str]
STRING = "str"


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # numpy dtype name (float32, int64, bool) or STRING
    shape: tuple[Size, ...] = ()  # per row
    description: str = ""
    bounds: tuple[int, int | None] | None = None  # valid values: low <= value < high (None: no upper limit)

    def __post_init__(self) -> None:
        if self.dtype == STRING and self.shape:
            raise ValueError(f"column {self.name!r}: a {STRING} column holds one text per row, so its shape must be ()")


@dataclass(frozen=True)
class Schema:
    columns: tuple[Column, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def describe(self) -> str:
        return ", ".join(f"{c.name} {c.dtype}{list(c.shape)}" for c in self.columns)

    def validate(self, arrays: Mapping[str, np.ndarray], source: str) -> Arrays:
        """Check names, dtypes, shapes and finiteness; return the arrays cast to the schema."""
        sizes: dict[str, int] = {}
        rows = {len(array) for array in arrays.values()}
        if rows == {0}:
            raise DataError(f"{source}: the table has no rows; give at least one sample")
        checked = {}
        for column in self.columns:
            if column.name not in arrays:
                raise DataError(
                    f"{source}: missing column {column.name!r} ({column.dtype} of shape {list(column.shape)} "
                    f"per row); expected columns: {self.describe()}"
                )
            checked[column.name] = _check_column(column, np.asarray(arrays[column.name]), sizes, source)
        return checked


def _check_column(column: Column, array: np.ndarray, sizes: dict[str, int], source: str) -> np.ndarray:
    where = f"{source}: column {column.name!r}"
    if array.ndim != len(column.shape) + 1:
        raise DataError(f"{where} has rows of shape {list(array.shape[1:])}, expected {list(column.shape)}")
    for actual, expected in zip(array.shape[1:], column.shape):
        expected_size = sizes.setdefault(expected, actual) if isinstance(expected, str) else expected
        if actual != expected_size:
            raise DataError(
                f"{where} has rows of shape {list(array.shape[1:])}, expected {list(column.shape)}"
                + (f" with {expected}={expected_size} as in the other columns" if isinstance(expected, str) else "")
            )
    if 0 in array.shape[1:]:
        shape = list(array.shape[1:])
        raise DataError(f"{where} has empty rows of shape {shape}; every dimension needs at least one element")
    if column.dtype == STRING:
        return _check_strings(array, where)
    return _check_bounds(_cast_numbers(array, np.dtype(column.dtype), where), column.bounds, where)


def _check_bounds(array: np.ndarray, bounds: tuple[int, int | None] | None, where: str) -> np.ndarray:
    """Ids outside their range would fail only inside a trial (an embedding lookup), after Ray started."""
    if bounds is None:
        return array
    low, high = bounds
    outside = (array < low) | (array >= high if high is not None else False)
    if outside.any():
        expected = f"[{low}, {high})" if high is not None else f">= {low}"
        raise DataError(f"{where} has values outside {expected} in {_rows(outside)} rows")
    return array


def _cast_numbers(array: np.ndarray, target: np.dtype, where: str) -> np.ndarray:
    """``array`` as ``target``, refusing casts that would change a value or let a non-finite one in."""
    if not np.can_cast(array.dtype, target, casting="same_kind") and not (
        target.kind == "b" and array.dtype.kind in "iu" and np.isin(array, (0, 1)).all()
    ):
        raise DataError(f"{where} has {_describe_dtype(array)}, expected {target}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = _rows(~np.isfinite(array))
        raise DataError(f"{where} has NaN or infinite values in {bad} rows; remove or repair those rows")
    if target.kind in "iu" and not np.can_cast(array.dtype, target):  # e.g. uint64 values beyond int64
        limits = np.iinfo(target)
        outside = (array < limits.min) | (array > limits.max)
        if outside.any():
            raise DataError(f"{where} has values outside the {target} range in {_rows(outside)} rows")
    with np.errstate(over="ignore"):
        cast = array.astype(target, copy=False)
    if target.kind == "f" and not np.isfinite(cast).all():  # e.g. float64 beyond float32's largest value
        raise DataError(f"{where} has values too large for {target} in {_rows(~np.isfinite(cast))} rows; rescale them")
    return cast


def _rows(bad: np.ndarray) -> int:
    """How many rows (first axis) have at least one bad element."""
    return int(bad.reshape(len(bad), -1).any(axis=1).sum())


def _describe_dtype(array: np.ndarray) -> str:
    if array.dtype.kind == "O" and array.size:  # Arrow text, structs, decimals...: name the Python type
        return f"values of type {type(array.flat[0]).__name__}"
    return f"dtype {array.dtype}"


def _check_strings(array: np.ndarray, where: str) -> np.ndarray:
    """A 1-D object array of str, from numpy unicode or object arrays."""
    if array.dtype.kind == "U":
        return array.astype(object)
    if array.dtype.kind != "O" or not all(isinstance(value, str) for value in array):
        raise DataError(f"{where} has dtype {array.dtype}, expected {STRING} (one text per row)")
    return array


def write_table(arrays: Mapping[str, np.ndarray], path: Path) -> None:
    """Write arrays as one Parquet file, atomically (a temporary file renamed into place)."""
    columns = {name: _to_arrow(np.ascontiguousarray(array)) for name, array in arrays.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        pq.write_table(pa.table(columns), temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _to_arrow(array: np.ndarray) -> pa.Array:
    if array.ndim == 1:
        return pa.array(array)
    if array.dtype.kind in "iuf":
        return pa.FixedShapeTensorArray.from_numpy_ndarray(array)
    nested = pa.array(array.reshape(-1))  # Arrow tensors hold numbers only: nest fixed-size lists
    for size in reversed(array.shape[1:]):
        nested = pa.FixedSizeListArray.from_arrays(nested, size)
    return nested


def read_table(path: Path, schema: Schema, extra: tuple[str, ...] = ()) -> Arrays:
    """Read and validate ``schema``'s columns (plus optional ``extra`` columns) from a Parquet file."""
    if path.is_dir():
        raise DataError(f"data file {path} is a folder; pass the path of one Parquet file")
    if not path.is_file():
        raise DataError(f"data file {path} does not exist; pass the path of a Parquet file")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{path} is not a readable Parquet file ({error}); rewrite it with pyarrow.parquet.write_table") from None
    arrays = {}
    for name in schema.names + extra:
        if name in table.column_names:
            arrays[name] = _to_numpy(table.column(name), f"{path}: column {name!r}")
    return {**schema.validate(arrays, str(path)), **{name: arrays[name] for name in extra if name in arrays}}


def _to_numpy(column: pa.ChunkedArray, where: str) -> np.ndarray:
    array = column.combine_chunks()
    if array.null_count:
        raise DataError(f"{where} has {array.null_count} missing values; every row needs a value")
    if isinstance(array.type, pa.FixedShapeTensorType):
        return array.to_numpy_ndarray()
    shape = [len(array)]
    while pa.types.is_list(array.type) or pa.types.is_large_list(array.type) or pa.types.is_fixed_size_list(array.type):
        lengths = np.unique(array.value_lengths().to_numpy(zero_copy_only=False))
        if len(lengths) > 1:
            raise DataError(f"{where} has rows of different lengths {lengths.tolist()}; every row needs the same shape")
        if lengths.tolist() == [0]:  # the sizes of any deeper dimensions are lost: stop here
            raise DataError(f"{where} has empty rows; every dimension needs at least one element")
        if array.flatten().null_count:
            raise DataError(f"{where} has missing values inside its rows")
        shape.append(int(lengths[0]) if len(lengths) else 0)
        array = array.flatten()
    try:
        return array.to_numpy(zero_copy_only=False).reshape(shape)
    except (pa.ArrowException, ValueError) as error:
        raise DataError(f"{where} cannot be read as numbers ({error})") from None
