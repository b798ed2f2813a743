"""Request parsers for pool ingest: JSON array, JSON Lines and CSV, with a size limit.

Each parser reads at most ``QUORUM_INGEST_MAX_BYTES`` (+1 to detect overflow) and hands the bytes
to ``annotation.ingest_records``; the view gets a ``ParsedPayload`` with the raw records.
"""

from dataclasses import dataclass

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser, JSONParser

from quorum.errors import ServiceError
from quorum.security import find_unsafe_text

from ..ingest_records import PARSERS, PayloadError, RawRecord


@dataclass
class ParsedPayload:
    format: str
    records: list[RawRecord]
    size_bytes: int


def read_limited(stream) -> bytes:
    limit = settings.QUORUM_INGEST_MAX_BYTES
    if stream is None:
        return b""
    payload = stream.read(limit + 1)
    if len(payload) > limit:
        raise ParseError(
            f"payload is larger than the limit of {limit} bytes (QUORUM_INGEST_MAX_BYTES); split it into several requests",
            code="payload_too_large",
        )
    return payload


class _IngestParser(BaseParser):
    format_name = ""

    def parse(self, stream, media_type=None, parser_context=None):
        payload = read_limited(stream)
        try:
            records = PARSERS[self.format_name](payload)
        except PayloadError as exc:
            raise ParseError(str(exc), code="malformed") from None
        return ParsedPayload(self.format_name, records, len(payload))


class IngestJSONParser(_IngestParser):
    media_type = "application/json"
    format_name = "json"


class IngestJSONLinesParser(_IngestParser):
    media_type = "application/x-ndjson"
    format_name = "jsonl"


class IngestJSONLinesAltParser(IngestJSONLinesParser):
    media_type = "application/jsonl"


class IngestCSVParser(_IngestParser):
    media_type = "text/csv"
    format_name = "csv"


INGEST_PARSERS = [IngestJSONParser, IngestJSONLinesParser, IngestJSONLinesAltParser, IngestCSVParser]


class SafeJSONParser(JSONParser):
    """DRF's JSON parser, except that JSON nested too deeply for Python's decoder is a 400 like any
    other malformed JSON (DRF only catches ``ValueError``, so ``RecursionError`` became a 500), and a
    string holding a NUL character or a lone surrogate anywhere is a 400 naming where (PostgreSQL
    cannot store it)."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
        unsafe = find_unsafe_text(data)
        if unsafe is not None:
            field, reason = unsafe
            raise ServiceError({"detail": f"invalid request: {field}: {reason}", "errors": {field: reason}})
        return data
