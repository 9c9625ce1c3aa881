"""Property-based checks of the data contract: a damaged Parquet file given with ``--data`` is
refused while the data loads, before Ray or MLflow start, with a one-line DataError naming the
column or the problem.

Each case damages a valid table of one family (built from the family's schema) and reads it
through the family's own ``load_data``, the call ``sweeper launch`` makes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from hypothesis import given, settings
from hypothesis import strategies as st

from sweeper.cli import run
from trainables.data.tables import Arrays, Schema, write_table
from trainables.errors import DataError
from trainables.families import family_names, get_family

FAMILIES = family_names()
SIZES = {"R": 3, "L": 8, "T": 5, "S": 4}  # the symbolic per-row sizes of the generated tables
ROWS = 6
damage = settings(max_examples=40, deadline=None)


def valid_table(schema: Schema) -> Arrays:
    """Rows every family accepts: active receivers, ids and tokens in [0, 3), three subjects."""
    arrays = {}
    for column in schema.columns:
        shape = (ROWS, *(SIZES[size] if isinstance(size, str) else size for size in column.shape))
        if column.dtype == "bool":
            arrays[column.name] = np.ones(shape, bool)
        elif column.dtype == "int64":
            arrays[column.name] = np.arange(np.prod(shape)).reshape(shape) % 3
        else:
            arrays[column.name] = np.random.default_rng(0).standard_normal(shape).astype(column.dtype)
    return arrays


VALID = {family: valid_table(get_family(family).schema) for family in FAMILIES}


def as_lists(arrays: Arrays) -> pa.Table:
    """The table as plain nested lists, as a user's own Arrow tooling would write it."""
    return pa.table({name: pa.array(array.tolist()) for name, array in arrays.items()})


@dataclass(frozen=True)
class Damaged:
    family: str
    content: Arrays | pa.Table | bytes  # arrays are written as Arrow tensors
    names: tuple[str, ...]  # the message must name one of these columns; empty: no column
    expected: str  # and say this

    def write(self, path: Path) -> None:
        if isinstance(self.content, bytes):
            path.write_bytes(self.content)
        elif isinstance(self.content, pa.Table):
            pq.write_table(self.content, path)
        else:
            write_table(self.content, path)


def columns_of(family: str, *dtypes: str) -> list[str]:
    return [c.name for c in get_family(family).schema.columns if not dtypes or c.dtype in dtypes]


def sharing_sizes(family: str, name: str) -> tuple[str, ...]:
    """``name`` and the columns that share one of its symbolic sizes (either may be reported)."""
    columns = {c.name: c for c in get_family(family).schema.columns}
    symbols = {size for size in columns[name].shape if isinstance(size, str)}
    return tuple(other for other, c in columns.items() if other == name or symbols & set(c.shape))


def fixed_axes(family: str, name: str) -> list[int]:
    """Axes of ``name``'s arrays whose size the file cannot choose: a number, or a symbol another column shares."""
    columns = get_family(family).schema.columns
    shape = next(c.shape for c in columns if c.name == name)
    shared = {size for size in shape if sum(size in c.shape for c in columns) > 1}
    return [axis + 1 for axis, size in enumerate(shape) if isinstance(size, int) or size in shared]


def in_some_form(draw, arrays: Arrays) -> Arrays | pa.Table:
    return draw(st.sampled_from([arrays, as_lists(arrays)]))


# --- one strategy per kind of damage -----------------------------------------------------------


@st.composite
def missing_column(draw) -> Damaged:
    family = draw(st.sampled_from(FAMILIES))
    name = draw(st.sampled_from(columns_of(family)))
    arrays = {other: array for other, array in VALID[family].items() if other != name}
    return Damaged(family, in_some_form(draw, arrays), (name,), "missing column")


@st.composite
def wrong_dtype(draw) -> Damaged:
    family = draw(st.sampled_from(FAMILIES))
    name = draw(st.sampled_from(columns_of(family)))
    original = VALID[family][name]
    if original.dtype == np.int64:
        beyond_int64 = original.astype(np.uint64) + np.uint64(2**63)
        options = [(original + 0.5, "expected int64"), (beyond_int64, "outside the int64 range")]
    elif original.dtype == bool:
        options = [(original * 0.5, "expected bool"), (original * 2, "expected bool")]
    else:
        times = (original * 1e3).astype(np.int64).astype("datetime64[s]")
        options = [(original.astype(np.float64) * 1e39, "too large for float32"), (times, "expected float32")]
    options.append((original.astype(str), "values of type str, expected"))
    values, expected = draw(st.sampled_from(options))
    arrays = {**VALID[family], name: values}
    return Damaged(family, arrays if values.dtype.kind in "iufb" else as_lists(arrays), (name,), expected)


@st.composite
def wrong_shape(draw) -> Damaged:
    family = draw(st.sampled_from(FAMILIES))
    name = draw(st.sampled_from(columns_of(family)))
    original = VALID[family][name]
    axes = fixed_axes(family, name)
    if axes and draw(st.booleans()):
        axis = draw(st.sampled_from(axes))
        size = draw(st.integers(1, 10).filter(lambda n: n != original.shape[axis]))
        values = np.take(original, np.resize(np.arange(original.shape[axis]), size), axis=axis)
    elif original.ndim > 1 and draw(st.booleans()):
        values = original[(slice(None),) * (original.ndim - 1) + (0,)]  # one dimension fewer
    else:
        values = original[..., None].repeat(draw(st.integers(1, 3)), axis=-1)  # one dimension more
    arrays = {**VALID[family], name: values}
    return Damaged(family, in_some_form(draw, arrays), sharing_sizes(family, name), "has rows of shape")


@st.composite
def ragged_rows(draw) -> Damaged:
    family = draw(st.sampled_from(FAMILIES))
    name = draw(st.sampled_from([n for n in columns_of(family) if VALID[family][n].ndim > 1]))
    rows = VALID[family][name].tolist()
    row = draw(st.integers(0, ROWS - 1))
    level = rows[row]
    for _ in range(draw(st.integers(0, VALID[family][name].ndim - 2))):  # descend to a random depth
        level = level[draw(st.integers(0, len(level) - 1))]
    if draw(st.booleans()) or len(level) == 1:
        level.append(level[-1])
    else:
        level.pop()
    table = as_lists(VALID[family]).set_column(columns_of(family).index(name), name, pa.array(rows))
    return Damaged(family, table, (name,), "rows of different lengths")


@st.composite
def empty_dimension(draw) -> Damaged:
    family = draw(st.sampled_from(FAMILIES))
    schema = get_family(family).schema
    symbol = draw(st.sampled_from(sorted({size for c in schema.columns for size in c.shape if isinstance(size, str)})))
    arrays = {}
    for column in schema.columns:  # every axis of that size cut to length 0
        index = tuple(slice(0, 0) if size == symbol else slice(None) for size in (None, *column.shape))
        arrays[column.name] = VALID[family][column.name][index]
    sharing = tuple(c.name for c in schema.columns if symbol in c.shape)
    return Damaged(family, as_lists(arrays), sharing, "has empty rows")


@st.composite
def non_finite(draw) -> Damaged:
    family = draw(st.sampled_from([family for family in FAMILIES if columns_of(family, "float32")]))
    name = draw(st.sampled_from(columns_of(family, "float32")))
    values = VALID[family][name].copy()
    cells = draw(st.lists(st.integers(0, values.size - 1), min_size=1, max_size=5, unique=True))
    values.flat[cells] = [draw(st.sampled_from([np.nan, np.inf, -np.inf])) for _ in cells]
    bad_rows = len({cell // (values.size // ROWS) for cell in cells})
    table = in_some_form(draw, {**VALID[family], name: values})
    return Damaged(family, table, (name,), f"NaN or infinite values in {bad_rows} rows")


@st.composite
def missing_values(draw) -> Damaged:
    family = draw(st.sampled_from(FAMILIES))
    name = draw(st.sampled_from(columns_of(family)))
    rows = VALID[family][name].tolist()
    row = draw(st.integers(0, ROWS - 1))
    if isinstance(rows[row], list) and draw(st.booleans()):
        rows[row][draw(st.integers(0, len(rows[row]) - 1))] = None  # inside a row
    else:
        rows[row] = None
    table = as_lists(VALID[family]).set_column(columns_of(family).index(name), name, pa.array(rows))
    return Damaged(family, table, (name,), "missing values")


@st.composite
def zero_rows(draw) -> Damaged:
    family = draw(st.sampled_from(FAMILIES))
    return Damaged(family, as_lists(VALID[family]).slice(0, 0), (), "the table has no rows")


@st.composite
def truncated(draw) -> Damaged:
    family = draw(st.sampled_from(FAMILIES))
    sink = pa.BufferOutputStream()
    pq.write_table(as_lists(VALID[family]), sink)
    content = sink.getvalue().to_pybytes()
    return Damaged(family, content[: draw(st.integers(0, len(content) - 1))], (), "is not a readable Parquet file")


@st.composite
def not_parquet(draw) -> Damaged:
    family = draw(st.sampled_from(FAMILIES))
    header = ",".join(VALID[family]) + "\n"
    between_magic_numbers = st.binary(max_size=50).map(lambda junk: b"PAR1" + junk + b"PAR1")
    content = draw(st.one_of(st.binary(max_size=200), st.just(header.encode()), between_magic_numbers))
    return Damaged(family, content, (), "is not a readable Parquet file")


DAMAGE = {
    "missing column": missing_column(),
    "wrong dtype": wrong_dtype(),
    "wrong per-row shape": wrong_shape(),
    "ragged rows": ragged_rows(),
    "empty dimension": empty_dimension(),
    "NaN or inf": non_finite(),
    "missing (null) values": missing_values(),
    "zero rows": zero_rows(),
    "truncated file": truncated(),
    "not a Parquet file": not_parquet(),
}


@pytest.fixture(scope="module")
def table_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tables") / "data.parquet"


@pytest.mark.parametrize("family", FAMILIES)
def test_the_undamaged_tables_are_accepted(table_file, family):
    write_table(VALID[family], table_file)
    splits = get_family(family).load_data({}, table_file, 0)
    assert sum(splits.sizes().values()) == ROWS


@pytest.mark.parametrize("kind", DAMAGE)
@damage
@given(data=st.data())
def test_damaged_tables_are_refused_naming_the_column_or_problem(table_file, kind, data):
    case = data.draw(DAMAGE[kind])
    case.write(table_file)
    with pytest.raises(DataError) as error:
        get_family(case.family).load_data({}, table_file, 0)
    message = str(error.value)
    assert len(message.splitlines()) == 1 and str(table_file) in message, message
    assert case.expected in message, message
    if case.names:
        assert any(f"column {name!r}" in message for name in case.names), message


def test_launch_with_a_bad_table_exits_2_before_anything_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    arrays = VALID["localization"]
    targets = np.where(np.arange(ROWS)[:, None] == 2, np.nan, arrays["transmitter_xy"])  # row 2 lost its target
    write_table({**arrays, "transmitter_xy": targets}, tmp_path / "bad.parquet")
    code = run(["launch", "localization", "--data", "bad.parquet", "--preset", "smoke"])
    error = capsys.readouterr().err.strip()
    assert code == 2
    assert error.startswith("sweeper: error: ") and "\n" not in error
    assert "column 'transmitter_xy' has NaN or infinite values in 1 rows" in error
    assert not ray.is_initialized()
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()
    assert not (tmp_path / "ray_results").exists()
