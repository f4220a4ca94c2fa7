"""The extract fast paths give what the plain computation gives: keyed hashes, physical lines."""

from __future__ import annotations

import hashlib

import polars as pl

from livefin_etl.extract import hash_values
from livefin_etl.extract.read import _read_csv

KEY = b"unit-test-key"


def _blake(v: str | None) -> str | None:
    if v is None:
        return None
    return hashlib.blake2b(v.encode(), key=KEY, digest_size=16).hexdigest()


def test_hash_values_is_keyed_blake2b_on_both_paths():
    distinct = [f"1380000{i:04d}" for i in range(50)] + [None, "张三", ""]
    repeated = ["北京市朝阳区", None, "北京市朝阳区", "上海", "上海", "上海"] * 5
    for values in (distinct, repeated):  # mostly distinct: every value; repeated: unique ones
        got = hash_values(pl.Series(values, dtype=pl.Utf8), KEY).to_list()
        assert got == [_blake(v) for v in values]
    other = hash_values(pl.Series(["13800000000"]), b"another-key").item()
    assert other != _blake("13800000000")


def test_lines_with_and_without_embedded_newlines():
    plain = "a,b\n1,x\n2,y\n3,z"  # no final newline
    frame, _ = _read_csv(plain.encode(), "t.csv")
    assert frame["_line"].to_list() == [2, 3, 4]
    quoted = 'a,b\n1,"x\nx"\n2,y\n3,"z\nz"\n'  # a newline inside the first and the last record
    frame, _ = _read_csv(quoted.encode(), "t.csv")
    assert frame["_line"].to_list() == [2, 4, 5]
    assert frame["b"].to_list() == ["x\nx", "y", "z\nz"]
