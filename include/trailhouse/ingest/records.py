"""Delivery files to table rows and back: typed columns plus everything else, losslessly."""

from __future__ import annotations

import hashlib
import re
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa

from trailhouse.warehouse.schema import BOOL, COLUMNS, JSON, MFA, STR, TIME, UTC_TS, Column

try:  # the C builder (setup.py); without a compiler the pure-Python path below does it all
    import trailhouse.ingest._fastjson as _fastjson
except ImportError:  # pragma: no cover - built by `pip install -e .`
    _fastjson = None  # type: ignore[assignment]

try:  # ISA-L inflates 2-3x faster than zlib; zlib stays as the fallback.
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover - isal is pinned in requirements.txt
    _zlib = zlib  # type: ignore[misc]

CANONICAL_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
DERIVED_ID_PREFIX = "sha256:"

# Limits on what one delivery file may be (docs/operations.md, "Quarantined objects"). A file
# past one is quarantined with a reason that names the limit; none of them fails a task.
# Objects and arrays in one another, the file's outer {"Records": [...]} being level 1 (a
# record is level 3). CloudTrail's deepest records nest about 15 levels; Python's and
# msgspec's recursion ends near 1000, which a file must never reach.
MAX_DEPTH = 100
# Inflating a gzip object stops past the smaller of MAX_INFLATED_BYTES and MAX_INFLATE_RATIO
# times its compressed size (but the ratio never refuses a file below RATIO_FLOOR_BYTES
# inflated): CloudTrail's files compress 10-25x, a gzip bomb 1000x. The environment knobs
# TRAILHOUSE_MAX_INFLATED_BYTES and TRAILHOUSE_MAX_INFLATE_RATIO set them (settings.py).
MAX_INFLATED_BYTES = 256 * 1024 * 1024
MAX_INFLATE_RATIO = 100
RATIO_FLOOR_BYTES = 16 * 1024 * 1024


class Envelope(msgspec.Struct):
    """A CloudTrail delivery file as decoded: `{"Records": [...]}` with each record kept raw."""
    # Records stay raw at this level: only the fields that become columns are decoded, the
    # drifting blobs are kept byte for byte, and nothing unknown is dropped.
    Records: list[dict[str, msgspec.Raw]]


_envelope = msgspec.json.Decoder(Envelope)
_top = msgspec.json.Decoder(dict[str, msgspec.Raw])
_any = msgspec.json.Decoder()
_encode = msgspec.json.encode


class BadObject(ValueError):
    """A delivery file that cannot be loaded; str() is the quarantine reason."""


# Column specs as a tree over the record's paths: {"userIdentity": {"type": Column, ...}}.
def _tree(columns: tuple[Column, ...]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for col in columns:
        if col.path is None:
            continue
        node = root
        for part in col.path[:-1]:
            node = node.setdefault(part, {})
        node[col.path[-1]] = col
    return root


TREE = _tree(COLUMNS)
# Per top-level key, how record_to_row handles it (a dict lookup instead of type checks).
_STRING, _BLOB, _SCALAR, _NESTED = 1, 2, 3, 4
_UNKNOWN = (0, None)
_DISPATCH: dict[str, tuple[int, Any]] = {
    key: ((_STRING if spec.kind == STR else _BLOB if spec.kind == JSON else _SCALAR, spec)
          if isinstance(spec, Column) else (_NESTED, spec))
    for key, spec in TREE.items()
}
_SOURCE = tuple(c for c in COLUMNS if c.path is not None)  # the columns a record fills
SOURCE_COLUMNS = tuple(c.name for c in _SOURCE)


def event_file(path: Path) -> list[dict[str, Any]]:
    """The events of a file a person hands over: a delivery file (gzip or plain), a JSON array
    of events (Stratus Red Team's logs, console exports), one bare event, or JSON lines.
    ValueError names the file (and line) that is none of these."""
    data = path.read_bytes()
    try:
        text = decompress(data) if data[:2] == b"\x1f\x8b" else data
        check_structure(text)
    except BadObject as exc:
        raise ValueError(f"{path}: {exc}") from None
    stripped = text.lstrip()
    if stripped.startswith(b"{"):
        try:
            doc = msgspec.json.decode(text)
        except msgspec.DecodeError:
            doc = None  # not one JSON document: try JSON lines
        if isinstance(doc, dict):
            records = doc.get("Records", [doc])
            if isinstance(records, list) and all(isinstance(e, dict) for e in records):
                return records
    if stripped.startswith(b"["):
        try:
            listed = msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            raise ValueError(f"{path}: not a JSON array of events ({exc})") from None
        if not all(isinstance(e, dict) for e in listed):
            raise ValueError(f"{path}: a JSON array here holds event objects only")
        return listed
    events: list[dict[str, Any]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                events.append(msgspec.json.decode(line))
            except msgspec.DecodeError as exc:
                raise ValueError(f"{path}:{n}: not a JSON event ({exc})") from None
    return events


def decompress(data: bytes, key: str = "", *, max_bytes: int = MAX_INFLATED_BYTES,
               max_ratio: int = MAX_INFLATE_RATIO) -> bytes:
    """Gunzip CloudTrail's files; plain JSON (e.g. a hand-copied sample) passes through.

    Inflating stops at the cap (inflate_cap): memory stays bounded whatever the object holds.
    """
    if not data:
        raise BadObject("empty object (0 bytes): CloudTrail never delivers one; re-copy the file")
    if data[:2] == b"\x1f\x8b":
        return _inflate(data, inflate_cap(len(data), max_bytes, max_ratio), max_bytes, max_ratio)
    if data.lstrip()[:1] in (b"{", b"["):
        return data
    raise BadObject("not gzip and not JSON: not a CloudTrail delivery file")


def inflate_cap(compressed: int, max_bytes: int = MAX_INFLATED_BYTES, max_ratio: int = MAX_INFLATE_RATIO) -> int:
    """The most bytes an object of `compressed` gzip bytes may inflate to."""
    return min(max_bytes, max(max_ratio * compressed, RATIO_FLOOR_BYTES))


def _inflate(data: bytes, cap: int, max_bytes: int, max_ratio: int) -> bytes:
    """gzip members one after another (as gzip.decompress reads them), never more than `cap` bytes out."""
    out: list[bytes] = []
    total = 0
    rest = data
    try:
        while rest:
            inflater = _zlib.decompressobj(wbits=31)
            # Asks for one byte past the cap: getting it means the object is over.
            chunk = inflater.decompress(rest, cap + 1 - total)
            total += len(chunk)
            out.append(chunk)
            if total > cap:
                raise BadObject(
                    f"inflates past {cap:,} bytes, the cap for {len(data):,} compressed bytes (at most "
                    f"{max_ratio}x, {RATIO_FLOOR_BYTES // 2**20} MiB whatever the ratio, and never past "
                    f"{max_bytes:,}: TRAILHOUSE_MAX_INFLATE_RATIO, TRAILHOUSE_MAX_INFLATED_BYTES): a gzip bomb or "
                    "not a CloudTrail file; if it is genuine, raise the cap and re-upload it")
            if not inflater.eof:
                raise BadObject("truncated or corrupt gzip (the stream ends before its last block); re-upload "
                                "the object")
            rest = inflater.unused_data
            if not rest.strip(b"\0"):  # padding after the last member, which gzip readers skip
                break
            if rest[:2] != b"\x1f\x8b":
                raise BadObject("truncated or corrupt gzip (bytes after the last member that are not gzip); "
                                "re-upload the object")
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        if isinstance(exc, BadObject):
            raise
        raise BadObject(f"truncated or corrupt gzip ({exc}); re-upload the object") from exc
    return out[0] if len(out) == 1 else b"".join(out)


def decode_envelope(text: bytes, *, checked: bool = False) -> list[dict[str, msgspec.Raw]]:
    """The raw records of a delivery file, or BadObject naming why it is none.

    `checked`: the C builder read the whole text already (which refuses what check_structure
    refuses), so the structure is not checked again.
    """
    if not text.strip():
        raise BadObject("empty file: no JSON inside")
    try:  # msgspec does not look inside the raw values: check the whole text first
        text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadObject(f"not UTF-8 text (byte {exc.start}: {exc.reason}); CloudTrail writes UTF-8: re-copy the "
                        "file from its source") from None
    members = 0 if checked else check_structure(text)
    try:
        if members > 1 and len(_top.decode(text)) < members:
            raise BadObject(DUPLICATE_KEY)
        return _envelope.decode(text).Records
    except msgspec.ValidationError as exc:
        raise BadObject(f"not a CloudTrail log file: expected {{\"Records\": [...]}} ({exc})") from exc
    except msgspec.DecodeError as exc:
        raise BadObject(f"invalid JSON ({exc})") from exc
    except RecursionError:  # not reached: check_structure refuses deeper files first
        raise BadObject(NESTING) from None


NESTING = (f"nesting deeper than {MAX_DEPTH} levels (objects and arrays in one another, the file's outer object "
           "being 1): CloudTrail writes far fewer; the file is not loaded")
DUPLICATE_KEY = ('a key given twice at the top level of the file (e.g. {"Records": [...], "Records": []}): which '
                 "copy counts would be a guess, so the file is not loaded")
OUT_OF_RANGE = ("a number out of range (beyond a 64-bit float, e.g. 1e999, or an integer of more than 4300 "
                "digits): CloudTrail writes none; the file is not loaded")

# A JSON string (escapes included), and an object or array holding no other one.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_INNERMOST = re.compile(rb"\{[^{}\[\]]*\}|\[[^{}\[\]]*\]")
_TOP_OBJECT = re.compile(rb"\s*\{[^{}\[\]]*\}\s*")
# A number that may be out of msgspec's range: 300 digits in a row, or an exponent of 100 or more.
_BIG_NUMBER = re.compile(rb"\d{300,}|[eE]\+?0*[1-9]\d{2,}")


def check_structure(text: bytes) -> int:
    """BadObject if the JSON text nests deeper than MAX_DEPTH or holds a number out of range;
    else the number of members of its outer object (0 if it is no object).

    Without recursion (a file nested 100,000 deep is as cheap as any): in one pass of the C
    extension (_fastjson.scan), or without it, strings blanked and then the innermost
    objects and arrays removed, one level per pass, at most MAX_DEPTH passes (about 10x
    slower). Invalid JSON is left for the decoder to name.
    """
    if _fastjson is not None:
        depth, members, big = _fastjson.scan(text)
        if big:
            _check_numbers(text)
        if depth > MAX_DEPTH:
            raise BadObject(NESTING)
        return members
    skeleton = _JSON_STRING.sub(b'""', text)
    if _BIG_NUMBER.search(skeleton):
        _check_numbers(text)
    members = 0
    for _ in range(MAX_DEPTH):
        if _TOP_OBJECT.fullmatch(skeleton):
            members = skeleton.count(b":")
        reduced = _INNERMOST.sub(b"0", skeleton)
        if len(reduced) == len(skeleton):  # nothing left to remove: no container, or unbalanced
            return members
        skeleton = reduced
    if b"{" in skeleton or b"[" in skeleton:
        raise BadObject(NESTING)
    return members


def _check_numbers(text: bytes) -> None:
    """BadObject if the text holds a number msgspec cannot decode (the exact answer to a cheap suspicion)."""
    try:
        _any.decode(text)
    except msgspec.ValidationError:
        raise BadObject(OUT_OF_RANGE) from None
    except (msgspec.DecodeError, RecursionError):
        pass  # invalid JSON or too deep: named by the depth check or by the decoder


def _convert(col: Column, value: Any) -> tuple[Any, bool]:
    """(column value, whether the column alone rebuilds the original value exactly)."""
    kind = col.kind
    if kind == STR:
        if isinstance(value, str):
            return value, True
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value), False
        return None, False
    if kind == BOOL:
        if isinstance(value, bool):
            return value, True
        if value in ("true", "false"):
            return value == "true", False
        return None, False
    if kind == MFA:
        if value in ("true", "false"):
            return value == "true", True
        if isinstance(value, bool):
            return value, False
        return None, False
    if kind == TIME:
        if isinstance(value, str):
            return value, CANONICAL_TIME.match(value) is not None and _valid_time(value)
        return None, False
    raise AssertionError(kind)


def _valid_time(value: str) -> bool:
    # The format alone admits 2026-02-30 or a leap second, which no timestamp column can
    # hold: such text must also stay in extra_fields.
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _strip(obj: dict[str, Any], tree: dict[str, Any], row: dict[str, Any]) -> bool:
    """Move the values the columns hold out of `obj` (in place); True if any was moved."""
    moved = False
    for key in list(obj):
        spec = tree.get(key)
        if spec is None:
            continue
        value = obj[key]
        if spec.__class__ is Column:
            if spec.kind == STR and value.__class__ is str:  # the common case, without a call
                row[spec.name] = value
                del obj[key]
                moved = True
                continue
            col_value, exact = _convert(spec, value)
            if col_value is not None:
                row[spec.name] = col_value
            if exact:
                del obj[key]
                moved = True
        elif isinstance(value, dict) and _strip(value, spec, row):
            moved = True
            # An emptied object is dropped only when something was moved out of it, since
            # rebuilding recreates exactly those; an object that arrived empty is kept.
            if not value:
                del obj[key]
    return moved


def record_to_row(record: dict[str, msgspec.Raw]) -> dict[str, Any]:
    """One raw record to the source columns plus `extra_fields` (JSON text or None)."""
    row: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    for key, raw in record.items():
        how, spec = _DISPATCH.get(key, _UNKNOWN)
        if how == _STRING:  # the common case, kept free of calls: a string that is a string
            value = _any.decode(raw)
            if value.__class__ is str:
                row[spec.name] = value
                continue
            col_value, exact = _convert(spec, value)
            if col_value is not None:
                row[spec.name] = col_value
            if not exact:
                extras[key] = raw
        elif how == _BLOB:
            text = bytes(raw)
            if text == b"null":  # kept in extra_fields, so the column is null, not 'null'
                extras[key] = raw
            else:
                row[spec.name] = text.decode()
        elif how == _SCALAR:
            col_value, exact = _convert(spec, _any.decode(raw))
            if col_value is not None:
                row[spec.name] = col_value
            if not exact:
                extras[key] = raw
        elif how == _UNKNOWN[0]:
            extras[key] = raw
        else:
            value = _any.decode(raw)
            if not isinstance(value, dict):
                extras[key] = raw
            elif not _strip(value, spec, row) or value:
                # Same rule as in _strip: drop the object only when emptied by the columns.
                extras[key] = value
    if "eventID" not in extras and str(row.get("event_id", "")).startswith(DERIVED_ID_PREFIX):
        extras["eventID"] = record["eventID"]  # a real id that looks derived: keep it verbatim
    if "event_id" not in row or "eventID" in extras:
        row["event_id"] = _derived_id(record)
    row["extra_fields"] = _encode(extras).decode() if extras else None
    return row


def _derived_id(record: dict[str, msgspec.Raw]) -> str:
    # Hash the content, not the bytes: the same record pretty-printed or compacted (a
    # re-formatted copy of a file) gets the same id, so it is still deduplicated.
    canonical = _encode({k: _any.decode(v) for k, v in record.items()}, order="sorted")
    return DERIVED_ID_PREFIX + hashlib.sha256(canonical).hexdigest()


def parse_file(data: bytes, key: str = "") -> list[dict[str, Any]]:
    """All rows of one delivery file, or BadObject naming why the file cannot be loaded."""
    records = decode_envelope(decompress(data, key))
    return [record_to_row(r) for r in records]


def rebuild(row: dict[str, Any]) -> dict[str, Any]:
    """The original CloudTrail record from a warehouse row (the inverse of record_to_row)."""
    record: dict[str, Any] = {}
    for col in COLUMNS:
        if col.path is None:
            continue
        value = row.get(col.name)
        if value is None:
            continue
        if col.name == "event_id" and str(value).startswith(DERIVED_ID_PREFIX):
            continue
        if col.kind == JSON:
            value = _any.decode(value.encode() if isinstance(value, str) else value)
        elif col.kind == MFA:
            value = "true" if value else "false"
        elif col.kind == TIME and not isinstance(value, str):
            value = value.strftime("%Y-%m-%dT%H:%M:%SZ")
        node = record
        for part in col.path[:-1]:
            node = node.setdefault(part, {})
        node[col.path[-1]] = value
    extras = row.get("extra_fields")
    if extras:
        _merge(record, _any.decode(extras.encode()))
    return record


def _merge(base: dict[str, Any], over: dict[str, Any]) -> None:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


# The C builder of columns (trailhouse/_fastjson.c). It applies record_to_row's rules to
# the records that need no conversion (nearly all of them) and hands back the others, so
# the two paths give the same rows; tests/include/ingest/test_fastjson.py compares them.
_KINDS: dict[str | None, int] = {STR: 0, BOOL: 1, MFA: 2, TIME: 3, JSON: 4}


def _index_tree(tree: dict[str, Any]) -> dict[str, Any]:
    index = {c.name: i for i, c in enumerate(_SOURCE)}
    return {k: index[v.name] if isinstance(v, Column) else _index_tree(v) for k, v in tree.items()}


def column_builder() -> Any:
    """A fresh C builder for SOURCE_COLUMNS + extra_fields, or None without the extension."""
    if _fastjson is None:
        return None
    return _fastjson.Builder(
        _index_tree(TREE), [_KINDS[c.kind] for c in _SOURCE], event_id_column=SOURCE_COLUMNS.index("event_id")
    )


def builder_table(builder: Any) -> pa.Table:
    """The rows a builder holds, as Arrow (strings as large_string); the builder starts empty."""
    rows, buffers = builder.finish()
    arrays = []
    for kind, (valid, *data) in zip([c.kind for c in _SOURCE] + [JSON], buffers, strict=True):
        validity = pa.py_buffer(valid) if valid is not None else None
        if kind in (BOOL, MFA):
            arrays.append(pa.Array.from_buffers(pa.bool_(), rows, [validity, pa.py_buffer(data[0])]))
        elif kind == TIME:  # int64 microseconds since the epoch (the builder takes canonical times only)
            arrays.append(pa.Array.from_buffers(UTC_TS, rows, [validity, pa.py_buffer(data[0])]))
        else:
            offsets, text = data
            arrays.append(pa.Array.from_buffers(pa.large_string(), rows, [validity, pa.py_buffer(offsets), pa.py_buffer(text)]))
    return pa.Table.from_arrays(arrays, names=[*SOURCE_COLUMNS, "extra_fields"])
