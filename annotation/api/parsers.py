"""Request parsers for pool ingest: JSON array, JSON Lines and CSV, with a size limit.

The parsers read nothing themselves: the view gets a ``ParsedPayload`` whose ``records`` is an
iterator over the request body (``annotation.ingest_records``' streaming parsers), which reads at
most ``QUORUM_INGEST_MAX_BYTES`` (+1 to detect overflow) in pieces as the validation consumes the
records. A malformed or oversized body therefore raises ``PayloadError`` while the view iterates.
"""

from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser, JSONParser

from quorum.errors import ServiceError
from quorum.security import find_unsafe_text

from ..ingest_records import STREAM_PARSERS, RawRecord, TextStream


@dataclass
class ParsedPayload:
    format: str
    records: Iterator[RawRecord]  # lazy: reads the body as it is consumed
    text: TextStream  # ``text.bytes_read``: bytes read so far

    @property
    def size_bytes(self) -> int:
        return self.text.bytes_read


class _IngestParser(BaseParser):
    format_name = ""

    def parse(self, stream, media_type=None, parser_context=None):
        text = TextStream(stream, settings.QUORUM_INGEST_MAX_BYTES)
        return ParsedPayload(self.format_name, STREAM_PARSERS[self.format_name](text), text)


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
