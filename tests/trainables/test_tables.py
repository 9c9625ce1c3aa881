from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trainables.data import SPLIT_FRACTIONS, assign_groups, read_user_table, split_by_group, split_random
from trainables.data.tables import STRING, Column, Schema, read_table, write_table
from trainables.errors import DataError
from trainables.families.localization import SCHEMA


def test_round_trip(tmp_path, rf_arrays):
    path = tmp_path / "data.parquet"
    write_table(rf_arrays, path)
    back = read_table(path, SCHEMA)
    assert all(np.array_equal(back[name], rf_arrays[name]) for name in rf_arrays)
    assert not list(tmp_path.glob(".*tmp")), "the temporary file must be renamed into place"


def test_plain_nested_lists_are_accepted(tmp_path, rf_arrays):
    table = pa.table({name: pa.array(array.tolist()) for name, array in rf_arrays.items()})
    pq.write_table(table, tmp_path / "lists.parquet")
    back = read_table(tmp_path / "lists.parquet", SCHEMA)
    np.testing.assert_allclose(back["iq"], rf_arrays["iq"])
    assert back["mask"].dtype == bool


def broken(rf_arrays, **changes):
    arrays = dict(rf_arrays)
    for name, value in changes.items():
        if value is None:
            del arrays[name]
        else:
            arrays[name] = value
    return arrays


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: broken(a, features=None), "missing column 'features'"),
        (lambda a: broken(a, positions=a["positions"][..., :2]), "column 'positions' has rows of shape [10, 2], expected ['R', 3]"),
        (lambda a: broken(a, iq=a["iq"][:, :5]), "with R=5 as in the other columns"),
        (lambda a: broken(a, receiver_ids=a["receiver_ids"].astype(np.float64)), "column 'receiver_ids' has dtype float64, expected int64"),
        (lambda a: broken(a, features=np.where(np.arange(6) == 2, np.nan, a["features"]).astype(np.float32)), "NaN or infinite values in 24 rows"),
    ],
)
def test_bad_tables_are_refused_naming_the_problem(tmp_path, rf_arrays, change, message):
    path = tmp_path / "bad.parquet"
    write_table(change(rf_arrays), path)
    with pytest.raises(DataError) as error:
        read_table(path, SCHEMA)
    assert message in str(error.value) and str(path) in str(error.value)


def test_empty_table_is_refused(tmp_path, rf_arrays):
    table = pa.table({name: pa.array(array.tolist()) for name, array in rf_arrays.items()}).slice(0, 0)
    pq.write_table(table, tmp_path / "empty.parquet")
    with pytest.raises(DataError, match="has no rows"):
        read_table(tmp_path / "empty.parquet", SCHEMA)


def test_truncated_and_missing_files(tmp_path, rf_arrays):
    path = tmp_path / "data.parquet"
    write_table(rf_arrays, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_table(path, SCHEMA)
    with pytest.raises(DataError, match="does not exist"):
        read_table(tmp_path / "nowhere.parquet", SCHEMA)


def test_split_column_is_honoured(tmp_path, rf_arrays):
    rows = len(rf_arrays["mask"])
    labels = np.array(["train", "validation", "test"] * (rows // 3))
    table = pa.table({**{n: pa.array(a.tolist()) for n, a in rf_arrays.items()}, "split": labels})
    pq.write_table(table, tmp_path / "split.parquet")
    splits = read_user_table(tmp_path / "split.parquet", SCHEMA, seed=0)
    assert splits.sizes() == {"train": rows // 3, "validation": rows // 3, "test": rows // 3}
    np.testing.assert_array_equal(splits.validation["transmitter_xy"], rf_arrays["transmitter_xy"][1::3])


def test_random_split_is_seeded_and_disjoint(rf_arrays):
    first, again = split_random(rf_arrays, 1, "x"), split_random(rf_arrays, 1, "x")
    np.testing.assert_array_equal(first.test["transmitter_xy"], again.test["transmitter_xy"])
    seen = np.concatenate([s["transmitter_xy"] for s in (first.train, first.validation, first.test)])
    assert len(np.unique(seen, axis=0)) == len(rf_arrays["transmitter_xy"])
    assert first.without_test().test is None


def test_group_split_keeps_each_group_in_one_split(rf_arrays):
    groups = np.arange(len(rf_arrays["mask"])) % 7
    splits = split_by_group({**rf_arrays, "group": groups}, groups, seed=2, source="x")
    seen = [set(s["group"].tolist()) for s in (splits.train, splits.validation, splits.test)]
    assert all(a.isdisjoint(b) for a, b in [(seen[0], seen[1]), (seen[0], seen[2]), (seen[1], seen[2])])
    assert set().union(*seen) == set(range(7)) and all(seen)


TEXT_SCHEMA = Schema((Column("text", STRING, (), "one text per row"), Column("length", "int64")))


def test_string_columns_round_trip_as_python_strings(tmp_path):
    texts = np.array(["a", "Ünïcode text, longer than the others", ""], dtype=object)
    path = tmp_path / "text.parquet"
    write_table(TEXT_SCHEMA.validate({"text": texts, "length": np.array([1, 2, 3])}, "x"), path)
    back = read_table(path, TEXT_SCHEMA)
    assert back["text"].dtype == object and back["text"].tolist() == texts.tolist()
    fixed_width = TEXT_SCHEMA.validate({"text": np.array(["a", "bc"]), "length": np.array([1, 2])}, "x")
    assert fixed_width["text"].dtype == object  # numpy unicode would pad every row to the longest


def test_string_columns_refuse_other_values():
    with pytest.raises(DataError, match="column 'text' has dtype int64, expected str"):
        TEXT_SCHEMA.validate({"text": np.array([1, 2]), "length": np.array([1, 2])}, "x")
    with pytest.raises(DataError, match="expected str"):
        TEXT_SCHEMA.validate({"text": np.array(["a", None], dtype=object), "length": np.array([1, 2])}, "x")
    with pytest.raises(ValueError, match="shape must be"):
        Column("texts", STRING, (2,))


def test_weighted_group_assignment_splits_the_weight_and_keeps_every_split():
    names = np.array([f"g{i:03d}" for i in range(100)])
    weights = np.random.default_rng(0).integers(1, 50, 100)
    assigned = assign_groups(names, 4, "x", weights=weights)
    shares = [weights[np.isin(names, members)].sum() / weights.sum() for members in assigned]
    np.testing.assert_allclose(shares, SPLIT_FRACTIONS, atol=0.03)
    assert sorted(np.concatenate(assigned).tolist()) == names.tolist()
    # One group heavier than all others together still leaves validation and test a group each.
    assert [len(members) for members in assign_groups(names[:5], 0, "x", weights=[1, 100, 1, 1, 1])] == [3, 1, 1]


@pytest.mark.parametrize("tokens, message", [([[0, 5, 9]], None), ([[0, 5, 10]], "values outside [0, 10) in 1 rows"), ([[-1, 0, 1]], "values outside [0, 10)")])
def test_ids_outside_their_range_are_refused(tokens, message):
    schema = Schema((Column("tokens", "int64", (3,), bounds=(0, 10)),))
    if message is None:
        assert schema.validate({"tokens": np.array(tokens)}, "ids")["tokens"].tolist() == tokens
        return
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace(")", r"\)")):
        schema.validate({"tokens": np.array(tokens)}, "ids")


def test_text_families_bound_their_token_ids():
    from trainables.data.char_sequences import VOCAB_SIZE
    from trainables.families import get_family

    columns = {column.name: column for column in get_family("language_model").schema.columns}
    assert columns["inputs"].bounds == columns["targets"].bounds == (0, VOCAB_SIZE)
    assert get_family("segmentation").schema.columns[0].bounds == (0, None)
