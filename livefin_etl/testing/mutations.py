"""Seeded mutations of landing files: what a careless or hostile platform export looks like.

Shared by the fault tests (``tests/faults/test_fault_fuzz_landing.py``, a few examples per kind)
and the fuzz benchmark (``bench/bench_fuzz.py``, ten thousand files). Each mutation takes
(format, file bytes, another day's file bytes, rng) and returns ({file name: bytes}, the number
of data rows an independent reader counts, or None when no independent count exists).
"""

from __future__ import annotations

import csv
import io
import json
import random
import shutil
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

FORMAT = {
    "merchants": "csv",
    "orders": "csv",
    "fulfillment": "csv",
    "traffic": "jsonl",
    "loans": "parquet",
    "repayments": "parquet",
}
EXT = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}
HUGE = 1 << 20  # a 1 MB cell

# --------------------------------------------------------------------------- text helpers


def decode(data: bytes) -> tuple[str, str] | None:
    """The encodings the platform sends (UTF-8 with/without BOM, GBK); None if none fits."""
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError:
            return None
    for enc in ("utf-8", "gbk"):
        try:
            return data.decode(enc), enc
        except UnicodeDecodeError:
            pass
    return None


def encode(text: str, enc: str) -> bytes:
    return text.encode(enc)


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def csv_text(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def pq_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def jsonl_lines(text: str) -> list[str]:
    return [x for x in text.splitlines() if x.strip()]


# --------------------------------------------------------------------------- mutations
# Each returns ({file name: bytes}, expected rows_read or None when no independent count exists).


def m_truncate(fmt, data, other, rng):
    cut = rng.randrange(1, max(2, len(data) - 1))
    return {"part-0": data[:cut]}, None


def m_random_bytes(fmt, data, other, rng):
    b = bytearray(data)
    at = rng.randrange(0, len(b))
    span = rng.randint(1, 64)
    b[at : at + span] = bytes(rng.getrandbits(8) for _ in range(span))
    return {"part-0": bytes(b)}, None


def m_garbage(fmt, data, other, rng):
    return {"part-0": bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 4096)))}, None


def m_empty(fmt, data, other, rng):
    return {"part-0": b""}, None


def m_header_only(fmt, data, other, rng):
    if fmt == "parquet":
        t = pq.read_table(io.BytesIO(data))
        return {"part-0": pq_bytes(t.slice(0, 0))}, 0
    if fmt == "jsonl":
        return {"part-0": b"\n\n"}, None
    text, enc = decode(data)
    return {"part-0": encode(csv_text(csv_rows(text)[:1]), enc)}, 0


def _csv_rewrite(data, fn):
    text, enc = decode(data)
    rows = csv_rows(text)
    header, body = fn(rows[0], rows[1:])
    return encode(csv_text([header, *body]), enc), len(body)


def m_shuffle_columns(fmt, data, other, rng):
    if fmt == "parquet":
        t = pq.read_table(io.BytesIO(data))
        names = t.column_names[:]
        rng.shuffle(names)
        return {"part-0": pq_bytes(t.select(names))}, t.num_rows
    if fmt == "jsonl":
        lines = []
        for x in jsonl_lines(data.decode()):
            items = list(json.loads(x).items())
            rng.shuffle(items)
            lines.append(json.dumps(dict(items), ensure_ascii=False))
        return {"part-0": ("\n".join(lines) + "\n").encode()}, len(lines)

    def fn(header, body):
        order = list(range(len(header)))
        rng.shuffle(order)
        return [header[i] for i in order], [[r[i] for i in order] for r in body]

    out, n = _csv_rewrite(data, fn)
    return {"part-0": out}, n


def m_drop_column(fmt, data, other, rng):
    if fmt == "parquet":
        t = pq.read_table(io.BytesIO(data))
        return {"part-0": pq_bytes(t.drop([rng.choice(t.column_names)]))}, t.num_rows
    if fmt == "jsonl":
        lines = jsonl_lines(data.decode())
        key = rng.choice(list(json.loads(lines[0]))) if lines else "x"
        out = [json.dumps({k: v for k, v in json.loads(x).items() if k != key}) for x in lines]
        return {"part-0": ("\n".join(out) + "\n").encode()}, len(out)

    def fn(header, body):
        i = rng.randrange(len(header))
        return header[:i] + header[i + 1 :], [r[:i] + r[i + 1 :] for r in body]

    out, n = _csv_rewrite(data, fn)
    return {"part-0": out}, n


def m_extra_column(fmt, data, other, rng):
    if fmt == "parquet":
        t = pq.read_table(io.BytesIO(data))
        return {"part-0": pq_bytes(t.append_column("x_extra", pa.array(["?"] * t.num_rows)))}, None
    if fmt == "jsonl":
        lines = [json.dumps({**json.loads(x), "x_extra": 1}) for x in jsonl_lines(data.decode())]
        return {"part-0": ("\n".join(lines) + "\n").encode()}, len(lines)
    out, _ = _csv_rewrite(data, lambda h, b: (h + ["x_extra"], [r + ["?"] for r in b]))
    return {"part-0": out}, None


def m_huge_field(fmt, data, other, rng):
    big = "x" * HUGE
    if fmt == "parquet":
        t = pq.read_table(io.BytesIO(data))
        strings = [i for i, f in enumerate(t.schema) if pa.types.is_string(f.type)]
        if not t.num_rows or not strings:
            return {"part-0": data}, t.num_rows
        i = rng.choice(strings)
        col = t.column(i).to_pylist()
        col[rng.randrange(len(col))] = big
        return {"part-0": pq_bytes(t.set_column(i, t.schema[i], pa.array(col, pa.string())))}, (
            t.num_rows
        )
    if fmt == "jsonl":
        lines = jsonl_lines(data.decode())
        if lines:
            j = rng.randrange(len(lines))
            obj = json.loads(lines[j])
            obj[rng.choice(list(obj))] = big
            lines[j] = json.dumps(obj)
        return {"part-0": ("\n".join(lines) + "\n").encode()}, len(lines)

    def fn(header, body):
        if body:
            r = rng.randrange(len(body))
            body[r][rng.randrange(len(header))] = big
        return header, body

    out, n = _csv_rewrite(data, fn)
    return {"part-0": out}, n


def m_wrong_types(fmt, data, other, rng):
    if fmt == "parquet":
        t = pq.read_table(io.BytesIO(data))
        cols = [
            pa.array([None if v is None else f"~{v}" for v in c.to_pylist()], pa.string())
            for c in t.columns
        ]
        return {"part-0": pq_bytes(pa.table(cols, names=t.column_names))}, t.num_rows
    if fmt == "jsonl":
        lines = [
            json.dumps({k: [v] for k, v in json.loads(x).items()})
            for x in jsonl_lines(data.decode())
        ]
        return {"part-0": ("\n".join(lines) + "\n").encode()}, len(lines)

    def fn(header, body):
        return header, [[c if rng.random() < 0.7 else "bad#" for c in r] for r in body]

    out, n = _csv_rewrite(data, fn)
    return {"part-0": out}, n


def m_utf16(fmt, data, other, rng):
    if fmt == "parquet":
        return m_garbage(fmt, data, other, rng)
    text, _ = decode(data)
    return {"part-0": text.encode("utf-16")}, None


def m_latin1(fmt, data, other, rng):
    if fmt == "parquet":
        return m_truncate(fmt, data, other, rng)
    text, _ = decode(data)
    return {"part-0": text.encode("latin-1", errors="replace")}, None


def m_bom_on_gbk(fmt, data, other, rng):
    if fmt == "parquet":
        return m_random_bytes(fmt, data, other, rng)
    text, _ = decode(data)
    return {"part-0": b"\xef\xbb\xbf" + text.encode("gbk")}, None


def m_duplicate_file(fmt, data, other, rng):
    n = count_rows(fmt, data)
    return {"part-0": data, "part-1": data}, (None if n is None else 2 * n)


def m_mixed_dates(fmt, data, other, rng):
    """Rows of another day appended to L's file (in L's encoding)."""
    if fmt == "parquet":
        a, b = pq.read_table(io.BytesIO(data)), pq.read_table(io.BytesIO(other))
        return {"part-0": pq_bytes(pa.concat_tables([a, b.cast(a.schema)]))}, (
            a.num_rows + b.num_rows
        )
    if fmt == "jsonl":
        lines = jsonl_lines(data.decode()) + jsonl_lines(other.decode())
        return {"part-0": ("\n".join(lines) + "\n").encode()}, len(lines)
    (text, enc), (other_text, _) = decode(data), decode(other)
    rows, extra = csv_rows(text), csv_rows(other_text)
    if sorted(extra[0]) == sorted(rows[0]):  # same columns, maybe another order
        idx = [extra[0].index(h) for h in rows[0]]
        extra_body = [[r[i] for i in idx] for r in extra[1:]]
    else:  # another mapping of the same source: its rows as they are
        extra_body = extra[1:]
    body = rows[1:] + extra_body
    try:
        out = encode(csv_text([rows[0], *body]), enc)
    except UnicodeEncodeError:
        return {"part-0": data, "part-1": other}, None
    return {"part-0": out}, len(body)


def m_unterminated_quote(fmt, data, other, rng):
    """One field opens a quote it never closes: a CSV reader swallows the rest of the file into
    that field, and its error text quotes it (phones, names, addresses)."""
    if fmt == "parquet":
        return m_random_bytes(fmt, data, other, rng)
    text, enc = decode(data)
    lines = text.split("\n")
    if len(lines) < 3:
        return {"part-0": data}, None
    i = rng.randrange(1, len(lines) - 1)
    if fmt == "jsonl":
        lines[i] = lines[i].rstrip("}").rstrip('"') + ', "x": "open'
    else:
        fields = lines[i].split(",")
        j = rng.randrange(len(fields))
        fields[j] = '"' + fields[j].lstrip('"')
        lines[i] = ",".join(fields)
    return {"part-0": encode("\n".join(lines), enc)}, None


def m_quoted_newline(fmt, data, other, rng):
    """Text fields with line breaks inside quotes (legal CSV), then a broken value further down:
    the quarantine must name the broken record's physical line, not its record number."""
    if fmt == "parquet":
        return m_wrong_types(fmt, data, other, rng)
    if fmt == "jsonl":
        lines = jsonl_lines(data.decode())
        out = []
        for x in lines:
            obj = json.loads(x)
            key = next((k for k, v in obj.items() if isinstance(v, str)), None)
            if key and rng.random() < 0.3:
                obj[key] = obj[key] + "\nsecond line"
            out.append(json.dumps(obj, ensure_ascii=False))
        return {"part-0": ("\n".join(out) + "\n").encode()}, len(out)

    def fn(header, body):
        for r in body:
            if rng.random() < 0.3:
                j = rng.randrange(len(header))
                r[j] = r[j] + "\n" + r[j]
        if body:
            r = body[rng.randrange(len(body))]
            r[rng.randrange(len(header))] = "bad#"
        return header, body

    out, n = _csv_rewrite(data, fn)
    return {"part-0": out}, n


def m_all_invalid(fmt, data, other, rng):
    """A readable re-delivery in which no row is valid (every key blanked): it must not replace
    a partition that had valid rows."""
    if fmt == "parquet":
        t = pq.read_table(io.BytesIO(data))
        cols = [pa.array([None] * t.num_rows, f.type) for f in t.schema]
        return {"part-0": pq_bytes(pa.table(cols, schema=t.schema))}, t.num_rows
    if fmt == "jsonl":
        out = [
            json.dumps({k: None for k in json.loads(x)}, ensure_ascii=False)
            for x in jsonl_lines(data.decode())
        ]
        return {"part-0": ("\n".join(out) + "\n").encode()}, len(out)
    out, n = _csv_rewrite(data, lambda h, b: (h, [[""] * len(h) for _ in b]))
    return {"part-0": out}, n


def m_shifted_row(fmt, data, other, rng):
    """A row missing a separator: its values slide one column left (a phone lands in a column
    that is not declared PII) or the row is ragged, which some readers refuse whole."""
    if fmt == "parquet":
        return m_shuffle_columns(fmt, data, other, rng)
    if fmt == "jsonl":
        lines = jsonl_lines(data.decode())
        if lines:
            i = rng.randrange(len(lines))
            obj = json.loads(lines[i])
            keys, vals = list(obj), list(obj.values())
            lines[i] = json.dumps(
                dict(zip(keys, vals[1:] + [None], strict=True)), ensure_ascii=False
            )
        return {"part-0": ("\n".join(lines) + "\n").encode()}, len(lines)
    text, enc = decode(data)
    rows = csv_rows(text)
    if len(rows) > 1:
        i = rng.randrange(1, len(rows))
        j = rng.randrange(len(rows[i]) - 1)
        rows[i] = rows[i][:j] + rows[i][j + 1 :]
        if rng.random() < 0.5:
            rows[i] = rows[i] + [""]
    return {"part-0": encode(csv_text(rows), enc)}, None


MUTATIONS = {
    name.removeprefix("m_"): fn for name, fn in list(globals().items()) if name.startswith("m_")
}


def count_rows(fmt: str, data: bytes) -> int | None:
    """Independent count of the data rows in an unmutated-looking file (None: unknowable)."""
    if fmt == "parquet":
        try:
            return pq.read_metadata(io.BytesIO(data)).num_rows
        except Exception:  # noqa: BLE001 - unreadable: no count
            return None
    dec = decode(data)
    if dec is None:
        return None
    if fmt == "jsonl":
        return len(jsonl_lines(dec[0]))
    return max(0, len(csv_rows(dec[0])) - 1)


# --------------------------------------------------------------------------- landing


def source_file(landing: Path, source: str, as_of_date: date) -> Path:
    return next((landing / source / f"dt={as_of_date}").glob(f"*{EXT[FORMAT[source]]}"))


def other_day_file(landing: Path, source: str, last: date) -> bytes:
    """A delivery of an earlier day (outside L's late window) that has rows."""
    fmt = FORMAT[source]
    for back in range(3, 400):
        p = source_file(landing, source, last - timedelta(days=back))
        data = p.read_bytes()
        if count_rows(fmt, data):
            return data
    raise AssertionError(f"no earlier {source} delivery with rows")


def write_partition(landing: Path, source: str, as_of_date: date, files: dict[str, bytes]) -> Path:
    folder = landing / source / f"dt={as_of_date}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / f"{name}{EXT[FORMAT[source]]}").write_bytes(data)
    return folder


def sweep(n: int, seed: int) -> list[tuple[str, str, int]]:
    """(mutation, source, seed): every mutation kind once per round, sources rotating."""
    rng = random.Random(seed)
    kinds = sorted(MUTATIONS)
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        out.append((kind, rng.choice(sorted(FORMAT)), rng.randrange(1 << 30)))
    return out
