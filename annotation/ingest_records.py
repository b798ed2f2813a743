"""Parsing and validation of pushed pool records: JSON array, JSON Lines, CSV.

Pure Python (no Django): bytes in, ``CleanRecord`` / ``RejectedRecord`` out, so the rules can be
tested and benchmarked alone. Validation is a hand-written loop rather than a DRF serializer per
record: a serializer costs tens of microseconds per field and a 100k-record push must validate in
well under a second.

Rules for one record ``{external_id, text, metadata?, embedding?, label? | labels?, honeypot?}``:
- ``external_id``: a non-empty string (or an integer, kept as its decimal string), at most 255 chars;
  unique within the request.
- ``text``: a non-empty string (not only whitespace), at most ``max_text_chars`` characters.
- ``metadata``: a JSON object; absent or null keeps what the item already has.
- ``embedding``: a list of ``embedding_dim`` finite numbers; absent leaves the embedding to the
  encoder.
- ``label``: the name of one of the project's labels (``labels``, matched exactly): a label the team
  already trusts. The item becomes final with source ``gold`` and is never queued. Absent or null
  keeps whatever label the item has. Single-label projects only.
- ``labels``: multi-label projects' counterpart, a known tag set: a list of label names, each at most
  once (``[]``, the empty set, only where the project allows it). In CSV, the names joined by ``|``
  (``refund|complaint``); an empty cell is absent.
- ``honeypot``: a boolean; ``true`` needs a ``label`` (``labels``) and makes the item a hidden test item (served
  to annotators like any other, scored against its label); ``false`` or absent with a label: plain
  gold. In CSV, ``true``/``false``/``1``/``0``/``yes``/``no`` (any case); an empty cell is absent.
- No other fields (a typo such as ``txt`` is an error, not silently dropped).
- No NUL characters anywhere (PostgreSQL cannot store them in text or JSON), no lone surrogates
  (not encodable as UTF-8), no NaN or infinite numbers in metadata (not JSON that PostgreSQL
  accepts), metadata nested at most ``MAX_METADATA_DEPTH`` levels.

Malformed payloads (broken JSON, broken CSV, not UTF-8, wrong top-level shape, too many records)
raise ``PayloadError``: the whole request is refused. Payloads are parsed as streams, one record
at a time (see "parsing" below), so the error may come after earlier records were validated. Record-level problems are collected as
``RejectedRecord`` with the record's index (JSON) or line (JSON Lines, CSV).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_EXTERNAL_ID_CHARS = 255
MAX_METADATA_DEPTH = 64
RECORD_FIELDS = ("external_id", "text", "metadata", "embedding", "label", "labels", "honeypot")
TAG_SEPARATOR = "|"
CSV_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
MAX_LABEL_NAMES_SHOWN = 20


class PayloadError(ValueError):
    """The payload as a whole cannot be read; nothing in it is accepted."""


@dataclass(frozen=True, slots=True)
class RawRecord:
    position: int  # 0-based index in a JSON array, 1-based line in JSON Lines / CSV
    value: Any


@dataclass(slots=True)
class CleanRecord:
    position: int
    external_id: str
    text: str
    text_hash: str
    metadata: dict | None  # None: not given, keep the item's current metadata
    embedding: bytes | None  # little-endian float32, or None: not given
    label_id: int | None = None  # the gold label's id, or None: not given (keep the item's)
    honeypot: bool = False  # with a gold answer: a hidden test item
    tags: tuple[int, ...] | None = None  # multi-label: the gold tag set (sorted label ids), or None

    @property
    def has_gold(self) -> bool:
        return self.label_id is not None or self.tags is not None

    @property
    def gold(self):
        """The gold answer: a label id, a tag set (tuple), or None."""
        return self.label_id if self.tags is None else self.tags


@dataclass(slots=True)
class RejectedRecord:
    position: int
    external_id: str | None
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ValidationResult:
    records: list[CleanRecord]
    rejected: list[RejectedRecord]
    position_kind: str  # "index" or "line"


def text_digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


# --- parsing ---------------------------------------------------------------------------------
#
# The parsers read a binary stream in chunks and yield one ``RawRecord`` at a time, so a push is
# never held whole in memory: neither its bytes, nor its decoded text, nor its parsed records (the
# validation keeps each record's compact ``CleanRecord`` only). ``parse_*`` take ``bytes`` and
# return lists, for callers that have the payload already.

#: Bytes read from the stream at a time.
CHUNK_BYTES = 1 << 20


class PayloadTooLarge(PayloadError):
    """The stream holds more than the byte limit."""

    def __init__(self, limit: int):
        super().__init__(
            f"payload is larger than the limit of {limit} bytes (QUORUM_INGEST_MAX_BYTES); split it into several requests"
        )
        self.limit = limit


class TextStream:
    """UTF-8 text of a binary stream, chunk by chunk, with a byte limit; a leading BOM is dropped.
    ``bytes_read`` counts what was read so far."""

    def __init__(self, stream, limit: int | None = None, chunk_bytes: int = CHUNK_BYTES):
        self._stream = stream
        self._limit = limit
        self.chunk_bytes = chunk_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._first = True
        self.bytes_read = 0
        self.done = stream is None

    def read(self, at_least: int = 0) -> str:
        """The next piece of text ('' at the end), decoded from at least ``at_least`` more bytes
        when the stream has them."""
        while not self.done:
            want = max(self.chunk_bytes, at_least)
            if self._limit is not None:
                want = min(want, self._limit + 1 - self.bytes_read)
            chunk = self._stream.read(want) if want > 0 else b""
            if self._limit is not None and self.bytes_read + len(chunk) > self._limit:
                raise PayloadTooLarge(self._limit)
            pending = len(self._decoder.getstate()[0])
            before = self.bytes_read
            self.bytes_read += len(chunk)
            self.done = not chunk
            try:
                text = self._decoder.decode(chunk, final=self.done)
            except UnicodeDecodeError as exc:
                raise PayloadError(f"payload is not valid UTF-8 (byte {before - pending + exc.start})") from None
            if self._first and text:
                self._first = False
                text = text.removeprefix("\ufeff")
            if text:
                return text
        return ""

    def read_all(self) -> str:
        parts = []
        while piece := self.read():
            parts.append(piece)
        return "".join(parts)


def _stream_of(payload) -> TextStream:
    if isinstance(payload, TextStream):
        return payload
    return TextStream(io.BytesIO(payload), None)


def _json_loads(text: str) -> Any:
    """``json.loads`` whose failures are all ``ValueError``: besides ``JSONDecodeError``, Python
    raises a bare ``ValueError`` for integers of more than 4,300 digits and ``RecursionError``
    for very deep nesting."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


_DECODER = json.JSONDecoder()
_WHITESPACE = re.compile(r"[ \t\n\r]*")
# Errors that may only mean the buffer ends inside a value (more text can complete it).
_TRUNCATION_HINTS = ("Unterminated string", "Invalid \\uXXXX escape", "Invalid \\escape")


def _parse_whole_json(text: str) -> list[RawRecord]:
    try:
        data = _json_loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except ValueError as exc:
        raise PayloadError(f"malformed JSON: {exc}") from None
    if not isinstance(data, list):
        raise PayloadError(
            f"expected a JSON array of records, got a JSON {type(data).__name__}"
            " (send JSON Lines as application/x-ndjson)"
        )
    return [RawRecord(index, value) for index, value in enumerate(data)]


class _JsonArrayReader:
    """The elements of a top-level JSON array, decoded one by one from a text stream.

    A buffer holds the text from the current element on; ``json.JSONDecoder.raw_decode`` decodes
    one element, and when it fails because the buffer ends inside the element, more text is read
    (as much again as the buffer holds, so a long element costs linear time) and it is tried again.
    Lines and columns in error messages count from the start of the payload."""

    def __init__(self, text: TextStream):
        self.text = text
        self.buf = ""
        self.pos = 0
        self.line = 1  # line of buf[0]
        self.col = 1  # column of buf[0]

    def _more(self) -> bool:
        if self.pos > self.text.chunk_bytes:  # drop what was consumed, keeping track of where buf starts
            dropped = self.buf[: self.pos]
            newlines = dropped.count("\n")
            if newlines:
                self.line += newlines
                self.col = len(dropped) - dropped.rfind("\n")
            else:
                self.col += len(dropped)
            self.buf, self.pos = self.buf[self.pos :], 0
        piece = self.text.read(at_least=len(self.buf))
        self.buf += piece
        return bool(piece)

    def _where(self, pos: int) -> tuple[int, int]:
        before = self.buf[:pos]
        newlines = before.count("\n")
        if newlines:
            return self.line + newlines, pos - before.rfind("\n")
        return self.line, self.col + pos

    def _error(self, pos: int, msg: str) -> PayloadError:
        line, col = self._where(pos)
        return PayloadError(f"malformed JSON at line {line} column {col}: {msg}")

    def _skip_space(self) -> None:
        while True:
            self.pos = _WHITESPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf) or not self._more():
                return

    def records(self):
        self._skip_space()
        if self.buf[self.pos : self.pos + 1] != "[":
            # Not an array (or nothing): read the rest and let the whole-document parse say why.
            rest = self.text.read_all()
            yield from _parse_whole_json(self.buf + rest)
            return
        self.pos += 1
        self._skip_space()
        if self.buf[self.pos : self.pos + 1] == "]":
            self.pos += 1
        else:
            index = 0
            scan = _DECODER.scan_once
            while True:
                # Fast path: the element ends inside the buffer. Anything else (more text needed, an
                # error to report with its position) goes through the careful ``_value``.
                buf, pos = self.buf, self.pos
                try:
                    value, end = scan(buf, pos)
                except (StopIteration, ValueError, RecursionError):
                    end = len(buf)
                if end < len(buf):
                    self.pos = end
                else:
                    value = self._value()
                yield RawRecord(index, value)
                index += 1
                char = self.buf[self.pos : self.pos + 1]
                if char in " \t\n\r":  # also "": the end of the buffer
                    self._skip_space()
                    char = self.buf[self.pos : self.pos + 1]
                if char == ",":
                    self.pos += 1
                    if self.buf[self.pos : self.pos + 1] in " \t\n\r":
                        self._skip_space()
                    continue
                if char == "]":
                    self.pos += 1
                    break
                raise self._error(self.pos, "Expecting ',' delimiter")
        self._skip_space()
        if self.pos < len(self.buf):
            raise self._error(self.pos, "Extra data")

    def _value(self) -> Any:
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except RecursionError:
                raise PayloadError("malformed JSON: nested too deeply") from None
            except json.JSONDecodeError as exc:
                truncated = exc.pos >= len(self.buf) - 6 or exc.msg.startswith(_TRUNCATION_HINTS)
                if truncated and not self.text.done:
                    self._more()  # may move the buffer: decode again rather than use exc.pos
                    continue
                raise self._error(exc.pos, exc.msg) from None
            except ValueError as exc:  # e.g. an integer of more than 4,300 digits
                raise PayloadError(f"malformed JSON: {exc}") from None
            # A number or a literal may go on in the next piece of text: decode it again with more.
            if end >= len(self.buf) and not self.text.done:
                self._more()
                continue
            self.pos = end
            return value


def iter_json_array(payload) -> Iterator[RawRecord]:
    """Records of a JSON array (``bytes`` or a ``TextStream``), one at a time."""
    return _JsonArrayReader(_stream_of(payload)).records()


def parse_json_array(payload: bytes) -> list[RawRecord]:
    return list(iter_json_array(payload))


# A line ends at \n, \r\n or \r only: str.splitlines() would also split at U+2028, U+2029 and
# U+0085, which JSON allows unescaped inside strings.
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)")


def _lines(text: TextStream) -> Iterator[str]:
    """The lines of a text stream with their line ends (as a file opened with ``newline=""``
    gives them); a ``\r`` at the end of a piece waits for the next piece, which may start with ``\n``."""
    carry = ""
    while True:
        piece = text.read()
        buf = carry + piece
        if not piece:
            if buf:
                yield buf
            return
        pos = 0
        for match in _LINE.finditer(buf):
            if match.end() == len(buf) and buf.endswith("\r"):
                break
            yield match.group()
            pos = match.end()
        carry = buf[pos:]


def iter_json_lines(payload) -> Iterator[RawRecord]:
    """Records of JSON Lines (``bytes`` or a ``TextStream``), one at a time; blank lines are skipped
    and positions are line numbers."""
    for line_number, line in enumerate(_lines(_stream_of(payload)), start=1):
        if not line.strip():
            continue
        try:
            value = _json_loads(line)
        except json.JSONDecodeError as exc:
            raise PayloadError(f"malformed JSON on line {line_number} column {exc.colno}: {exc.msg}") from None
        except ValueError as exc:
            raise PayloadError(f"malformed JSON on line {line_number}: {exc}") from None
        yield RawRecord(line_number, value)


def parse_json_lines(payload: bytes) -> list[RawRecord]:
    return list(iter_json_lines(payload))


def iter_csv(payload) -> Iterator[RawRecord]:
    """CSV with a header row (``bytes`` or a ``TextStream``), one record at a time. Columns
    ``external_id`` and ``text`` are required; ``metadata`` (a JSON object), ``embedding`` (a JSON
    array), ``label`` (a label name), ``labels`` (names joined by ``|``) and ``honeypot`` (a boolean
    word) are optional, an empty cell
    counting as absent; any other column is added to the item's metadata as a string."""
    # strict: an unterminated quote is an error instead of swallowing the rest of the file.
    reader = csv.reader(_lines(_stream_of(payload)), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise PayloadError("CSV payload is empty: expected a header row with external_id,text") from None
    except csv.Error as exc:
        raise PayloadError(f"malformed CSV on line 1: {exc}") from None
    header = [name.strip() for name in header]
    missing = [name for name in ("external_id", "text") if name not in header]
    if missing:
        raise PayloadError(f"CSV header (line 1) lacks required column(s): {', '.join(missing)}; found {header}")
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise PayloadError(f"CSV header (line 1) repeats column(s): {', '.join(duplicated)}")
    extra_columns = [name for name in header if name not in RECORD_FIELDS]

    line_after_previous = 2
    try:
        for row in reader:
            start_line, line_after_previous = line_after_previous, reader.line_num + 1
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                yield RawRecord(start_line, _CsvWidthError(len(row), len(header)))
                continue
            cells = dict(zip(header, row, strict=True))
            yield RawRecord(start_line, _csv_record(cells, extra_columns))
    except csv.Error as exc:
        raise PayloadError(
            f"malformed CSV on line {reader.line_num} (in the row starting on line {line_after_previous}): {exc}"
        ) from None


def parse_csv(payload: bytes) -> list[RawRecord]:
    return list(iter_csv(payload))


@dataclass(frozen=True, slots=True)
class _CsvWidthError:
    found: int
    expected: int


@dataclass(frozen=True, slots=True)
class _CsvJsonError:
    column: str
    message: str
    external_id: str | None = None


def _csv_record(cells: dict[str, str], extra_columns: list[str]) -> dict | _CsvJsonError:
    record: dict[str, Any] = {"external_id": cells["external_id"], "text": cells["text"]}
    metadata: dict[str, Any] | None = None
    if cells.get("metadata", "").strip():
        try:
            metadata = _json_loads(cells["metadata"])
        except ValueError as exc:
            return _CsvJsonError("metadata", f"not valid JSON ({getattr(exc, 'msg', exc)})")
        if not isinstance(metadata, dict):
            return _CsvJsonError("metadata", "must be a JSON object")
    if extra_columns:
        metadata = dict(metadata or {})
        for name in extra_columns:
            metadata[name] = cells[name]
    if metadata is not None:
        record["metadata"] = metadata
    if cells.get("embedding", "").strip():
        try:
            record["embedding"] = _json_loads(cells["embedding"])
        except ValueError as exc:
            return _CsvJsonError("embedding", f"not valid JSON ({getattr(exc, 'msg', exc)})")
    if cells.get("label", ""):
        record["label"] = cells["label"]
    if cells.get("labels", "").strip():
        record["labels"] = [name.strip() for name in cells["labels"].split(TAG_SEPARATOR)]
    honeypot = cells.get("honeypot", "").strip()
    if honeypot:
        if honeypot.lower() not in CSV_BOOLEANS:
            return _CsvJsonError(
                "honeypot", f"must be one of true, false, 1, 0, yes, no; got {honeypot[:20]!r}", cells["external_id"]
            )
        record["honeypot"] = CSV_BOOLEANS[honeypot.lower()]
    return record


PARSERS = {"json": parse_json_array, "jsonl": parse_json_lines, "csv": parse_csv}
#: The same, streaming: ``bytes`` or a ``TextStream`` in, an iterator of ``RawRecord`` out.
STREAM_PARSERS = {"json": iter_json_array, "jsonl": iter_json_lines, "csv": iter_csv}
POSITION_KIND = {"json": "index", "jsonl": "line", "csv": "line"}


# --- validation ------------------------------------------------------------------------------


# NUL: PostgreSQL cannot store it in text or JSON. Lone surrogates (legal as JSON \uXXXX
# escapes): not encodable as UTF-8, so no database can store them.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _string_problem(value: str) -> str | None:
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "must not contain NUL characters"
    return "must not contain lone surrogates (invalid Unicode)"


def _metadata_problem(metadata: dict) -> str | None:
    """Iterative (no recursion limit to hit) check that the metadata can be stored as JSON."""
    stack: list[tuple[Any, int]] = [(metadata, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            problem = _string_problem(value)
            if problem:
                return problem
        elif isinstance(value, float):
            if not math.isfinite(value):
                return "must not contain NaN or infinite numbers"
        elif isinstance(value, (dict, list)):
            if depth > MAX_METADATA_DEPTH:
                return f"is nested more than {MAX_METADATA_DEPTH} levels deep"
            if isinstance(value, dict):
                stack.extend((key, depth) for key in value)
                stack.extend((child, depth + 1) for child in value.values())
            else:
                stack.extend((child, depth + 1) for child in value)
    return None


def _clean_embedding(value: Any, dim: int) -> tuple[bytes | None, str | None]:
    if not isinstance(value, list):
        return None, f"must be a list of {dim} numbers"
    if len(value) != dim:
        return None, f"has {len(value)} values, this project's embeddings have {dim}"
    if any(type(v) not in (int, float) for v in value):
        return None, "must contain only numbers"
    try:
        vector = np.asarray(value, dtype=np.float64)
    except OverflowError:  # an integer beyond float64
        return None, "must contain only finite float32 values"
    if not np.isfinite(vector).all() or np.abs(vector).max(initial=0.0) > np.finfo(np.float32).max:
        return None, "must contain only finite float32 values"
    return vector.astype("<f4").tobytes(), None


def _clean_tags(names, labels: Mapping[str, int], allow_empty: bool) -> tuple[tuple[int, ...] | None, str | None]:
    """A record's ``labels``: (sorted label ids, None) or (None, the problem)."""
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        return None, "must be a list of label names"
    if not names and not allow_empty:
        return None, "must name at least one label (this project does not allow an empty tag set)"
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        return None, f"names {', '.join(map(repr, repeated[:10]))} more than once"
    for name in names:
        if name not in labels:
            return None, _label_problem(name, labels)
    return tuple(sorted(labels[name] for name in names)), None


def _label_problem(name: str, labels: Mapping[str, int]) -> str:
    names = list(labels)
    shown = ", ".join(map(repr, names[:MAX_LABEL_NAMES_SHOWN]))
    if len(names) > MAX_LABEL_NAMES_SHOWN:
        shown += f" … ({len(names)} in all)"
    return f"unknown label {name[:100]!r}; this project's labels: {shown}"


def validate_records(
    raw_records: Iterable[RawRecord],
    *,
    embedding_dim: int,
    max_text_chars: int,
    position_kind: str,
    labels: Mapping[str, int] | None = None,
    multi_label: bool = False,
    allow_empty_tags: bool = True,
) -> ValidationResult:
    """Validate raw records (rules in the module docstring). ``labels``: the project's label names
    and ids, for records that carry a ``label`` or ``labels`` (none known when omitted);
    ``multi_label``: the project takes tag sets (``labels``) instead of one ``label``."""
    labels = labels or {}
    allowed = [name for name in RECORD_FIELDS if name != ("label" if multi_label else "labels")]
    records: list[CleanRecord] = []
    rejected: list[RejectedRecord] = []
    first_seen: dict[str, int] = {}

    for raw in raw_records:
        value = raw.value
        if isinstance(value, _CsvWidthError):
            rejected.append(
                RejectedRecord(
                    raw.position, None, {"row": f"has {value.found} fields, the header has {value.expected}"}
                )
            )
            continue
        if isinstance(value, _CsvJsonError):
            external_id = value.external_id if value.external_id and not _string_problem(value.external_id) else None
            rejected.append(RejectedRecord(raw.position, external_id, {value.column: value.message}))
            continue
        if not isinstance(value, dict):
            rejected.append(
                RejectedRecord(raw.position, None, {"record": f"must be an object, got {type(value).__name__}"})
            )
            continue

        errors: dict[str, str] = {}
        unknown = [key for key in value if key not in RECORD_FIELDS]
        if unknown:
            errors["record"] = f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}"

        external_id = value.get("external_id")
        if type(external_id) is int:
            external_id = str(external_id)
        if external_id is None:
            errors["external_id"] = "is required"
        elif not isinstance(external_id, str):
            errors["external_id"] = f"must be a string, got {type(external_id).__name__}"
            external_id = None
        elif not external_id.strip():
            errors["external_id"] = "must not be empty"
        elif len(external_id) > MAX_EXTERNAL_ID_CHARS:
            errors["external_id"] = f"is longer than {MAX_EXTERNAL_ID_CHARS} characters"
        elif problem := _string_problem(external_id):
            errors["external_id"] = problem
            # Reported back in the response, which must be encodable: "\\udfff" instead of the character.
            external_id = external_id.encode("utf-8", "backslashreplace").decode("utf-8")
        elif external_id in first_seen:
            errors["external_id"] = (
                f"duplicate within this request (first at {position_kind} {first_seen[external_id]})"
            )
        if "external_id" not in errors:
            first_seen[external_id] = raw.position

        text = value.get("text")
        if text is None:
            errors["text"] = "is required"
        elif not isinstance(text, str):
            errors["text"] = f"must be a string, got {type(text).__name__}"
        elif not text.strip():
            errors["text"] = "must not be empty"
        elif len(text) > max_text_chars:
            errors["text"] = f"has {len(text)} characters, the limit is {max_text_chars}"
        elif problem := _string_problem(text):
            errors["text"] = problem

        metadata = value.get("metadata")
        if metadata is not None:
            if not isinstance(metadata, dict):
                errors["metadata"] = f"must be an object, got {type(metadata).__name__}"
            elif problem := _metadata_problem(metadata):
                errors["metadata"] = problem

        embedding = None
        if value.get("embedding") is not None:
            embedding, problem = _clean_embedding(value["embedding"], embedding_dim)
            if problem:
                errors["embedding"] = problem

        label_id = None
        tags = None
        label = value.get("label")
        tag_names = value.get("labels")
        if multi_label and label is not None:
            errors["label"] = "this project takes tag sets: send labels (a list of names) instead of label"
        elif not multi_label and tag_names is not None:
            errors["labels"] = "this project takes one label per item: send label (a name) instead of labels"
        elif tag_names is not None:
            tags, problem = _clean_tags(tag_names, labels, allow_empty_tags)
            if problem:
                errors["labels"] = problem
        elif label is not None:
            if not isinstance(label, str):
                errors["label"] = f"must be a label name (a string), got {type(label).__name__}"
            elif label not in labels:
                errors["label"] = _label_problem(label, labels)
            else:
                label_id = labels[label]
        honeypot = value.get("honeypot")
        if honeypot is not None and not isinstance(honeypot, bool):
            errors["honeypot"] = f"must be true or false, got {type(honeypot).__name__}"
        elif honeypot and label is None and tag_names is None:
            needs = "labels (a tag set)" if multi_label else "a label"
            errors["honeypot"] = f"a honeypot needs {needs} (the answer annotators are scored against)"

        if errors:
            rejected.append(RejectedRecord(raw.position, external_id if isinstance(external_id, str) else None, errors))
            continue
        records.append(
            CleanRecord(
                raw.position, external_id, text, text_digest(text), metadata, embedding, label_id, bool(honeypot), tags
            )
        )

    return ValidationResult(records, rejected, position_kind)
