"""Streaming parsers: a push is read in pieces, and every piece boundary (inside a multi-byte
character, between \\r and \\n, inside a number, a string or an escape) gives the same records and
the same error messages as parsing the whole payload at once."""

from __future__ import annotations

import io
import json
import tracemalloc

import pytest

from annotation.ingest_records import (
    STREAM_PARSERS,
    PayloadError,
    PayloadTooLarge,
    TextStream,
    iter_json_array,
    parse_csv,
    parse_json_array,
    parse_json_lines,
)

WHOLE = {"json": parse_json_array, "jsonl": parse_json_lines, "csv": parse_csv}

RECORDS = [
    {"external_id": "a", "text": "naïve café ☕ \u2028 inside", "metadata": {"n": 12345, "f": -1.5e-7, "ok": True}},
    {"external_id": 17, "text": 'quote " and \\ backslash \u00e9\U0001f600', "embedding": [0.25, -1, 3e2]},
    {"external_id": "c", "text": "last", "label": "refund", "honeypot": False, "metadata": None},
]

PAYLOADS = {
    "json": [
        json.dumps(RECORDS, ensure_ascii=False).encode(),
        json.dumps(RECORDS, indent=2).encode(),
        ("\ufeff" + json.dumps(RECORDS, ensure_ascii=False)).encode(),
        b"  [ ]  ",
        b'[1, 22, 333, true, null, "s"]',
    ],
    "jsonl": [
        "\n".join(json.dumps(r, ensure_ascii=False) for r in RECORDS).encode(),
        ("\r\n\r\n".join(json.dumps(r) for r in RECORDS) + "\r\n").encode(),
        ("\r".join(json.dumps(r) for r in RECORDS)).encode(),
    ],
    "csv": [
        'external_id,text,label,source\r\na,"multi\r\nline ☕",refund,web\r\nb,"say ""hi""",,app\r\n'.encode(),
        b"external_id,text\nx,one\n\ny,two",
        "\ufeffexternal_id,text\nx,é\r".encode(),
    ],
}

MALFORMED = {
    "json": [
        b'[{"external_id": "a", "text": "x"},\n {"external_id": "b" "text": "y"}]',
        b'[\n{"external_id": "a", "text": "x"},\n{"external_id": "b", "text": }\n]',
        b'[{"external_id": "a", "text": "x"}',
        b'[{"external_id": "a", "text": "x"}] extra',
        b'[{"external_id": "a", "text": "unterminated}]',
        b'[{"external_id": "a", "text": "bad \\q escape"}]',
        b"[1, 2,]",
        b"[1 2]",
        b'{"external_id": "a"}',
        b"",
        b'[{"external_id": "a", "text": "\xff"}]',
        b"[" * 3000 + b"]" * 3000,
    ],
    "jsonl": [
        b'{"external_id": "a", "text": "x"}\n\n{"external_id": "b", "text": "y"\n',
        b"\xc3\x28",
        b'{"a": 1}\r\n{"a": "\xe2\x82"}\r\n',
    ],
    "csv": [
        b'external_id,text\nn,x\nb,"open quote\n',
        b"id,body\nn,x\n",
        b"",
        b"external_id,text\nn,\xff\n",
    ],
}


def stream_parse(fmt: str, payload: bytes, chunk: int, limit: int | None = None) -> list:
    return list(STREAM_PARSERS[fmt](TextStream(io.BytesIO(payload), limit, chunk_bytes=chunk)))


def outcome(parse, *args):
    try:
        return "ok", [(r.position, r.value) for r in parse(*args)]
    except PayloadError as exc:
        return "error", str(exc)


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64])
def test_every_piece_size_gives_the_whole_parse(fmt, chunk):
    for payload in PAYLOADS[fmt] + MALFORMED[fmt]:
        whole = outcome(WHOLE[fmt], payload)
        streamed = outcome(stream_parse, fmt, payload, chunk)
        assert streamed == whole, (payload[:80], chunk)


def test_malformed_payloads_are_errors_in_both():
    for fmt, payloads in MALFORMED.items():
        for payload in payloads:
            assert outcome(WHOLE[fmt], payload)[0] == "error", payload[:60]


def test_the_error_position_counts_from_the_start_of_the_payload():
    body = b"[" + b",\n".join(json.dumps({"external_id": str(i), "text": "t"}).encode() for i in range(200))
    body += b',\n{"external_id": "z", "text": }]'
    message = outcome(stream_parse, "json", body, 16)[1]
    assert message == outcome(parse_json_array, body)[1]
    assert "line 201 column" in message


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_the_byte_limit_stops_reading(fmt):
    payload = PAYLOADS[fmt][0]
    assert stream_parse(fmt, payload, 4, limit=len(payload))  # exactly the limit: fine
    with pytest.raises(PayloadTooLarge, match=f"larger than the limit of {len(payload) - 1} bytes"):
        stream_parse(fmt, payload, 4, limit=len(payload) - 1)


def test_records_come_before_the_rest_is_read():
    """The first record is yielded after reading one piece, not the whole stream."""
    body = json.dumps([{"external_id": str(i), "text": "x" * 50} for i in range(2000)]).encode()
    text = TextStream(io.BytesIO(body), None, chunk_bytes=1024)
    first = next(iter_json_array(text))
    assert first.value["external_id"] == "0"
    assert text.bytes_read <= 4096 < len(body)


def test_a_large_push_is_not_held_whole_in_memory():
    """Peak memory of iterating 20k records stays a small fraction of what the list of them takes."""
    body = ("\n".join(json.dumps({"external_id": f"id-{i}", "text": "word " * 40}) for i in range(20_000))).encode()
    tracemalloc.start()
    for _ in STREAM_PARSERS["jsonl"](TextStream(io.BytesIO(body), None, chunk_bytes=64 * 1024)):
        pass
    _, streaming_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    records = parse_json_lines(body)
    _, whole_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(records) == 20_000
    assert streaming_peak * 10 < whole_peak, (streaming_peak, whole_peak)
