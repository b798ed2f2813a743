"""The pure parsing / validation layer of pool ingest (no database)."""

import json
import math

import numpy as np
import pytest

from annotation.ingest_records import (
    MAX_EXTERNAL_ID_CHARS,
    MAX_METADATA_DEPTH,
    PARSERS,
    POSITION_KIND,
    CleanRecord,
    PayloadError,
    RawRecord,
    parse_csv,
    parse_json_array,
    parse_json_lines,
    text_digest,
    validate_records,
)

DIM = 4
MAX_TEXT = 50


def validate(raw, *, kind="index", dim=DIM, max_text=MAX_TEXT):
    return validate_records(raw, embedding_dim=dim, max_text_chars=max_text, position_kind=kind)


def check_one(value, **kwargs):
    """Validate a single record given as a Python value; returns (records, rejected)."""
    result = validate([RawRecord(0, value)], **kwargs)
    return result.records, result.rejected


def errors_of(value, **kwargs) -> dict:
    records, rejected = check_one(value, **kwargs)
    assert records == [], f"expected {value!r} to be rejected"
    assert len(rejected) == 1
    return rejected[0].errors


def parse_and_validate(fmt: str, payload: bytes, **kwargs):
    return validate(PARSERS[fmt](payload), kind=POSITION_KIND[fmt], **kwargs)


# --- JSON array -----------------------------------------------------------------------------


class TestJsonArray:
    def test_records_with_indexes(self):
        payload = json.dumps(
            [
                {"external_id": "a", "text": "first"},
                {"external_id": "b", "text": "second", "metadata": {"k": 1}},
            ]
        ).encode()
        raw = parse_json_array(payload)
        assert [r.position for r in raw] == [0, 1]
        assert raw[1].value == {"external_id": "b", "text": "second", "metadata": {"k": 1}}

    def test_empty_array_is_no_records(self):
        assert parse_json_array(b"[]") == []

    def test_utf8_and_bom(self):
        payload = "\ufeff" + json.dumps([{"external_id": "é", "text": "naïve café ☕"}], ensure_ascii=False)
        raw = parse_json_array(payload.encode("utf-8"))
        assert raw[0].value == {"external_id": "é", "text": "naïve café ☕"}

    @pytest.mark.parametrize(
        "payload, where",
        [
            (b'[{"external_id": "a", "text": "x"},\n {"external_id": "b" "text": "y"}]', "line 2 column"),
            (b'[{"external_id": "a", "text": "x"}', "line 1 column"),
            (b"", "line 1 column 1"),
            (b"[1, 2,]", "line 1 column"),
        ],
    )
    def test_malformed_json_names_the_position(self, payload, where):
        with pytest.raises(PayloadError, match="malformed JSON") as exc:
            parse_json_array(payload)
        assert where in str(exc.value)

    def test_error_position_is_exact(self):
        with pytest.raises(PayloadError) as exc:
            parse_json_array(b'[\n{"external_id": "a", "text": "x"},\n{"external_id": "b", "text": }\n]')
        assert "line 3 column 30" in str(exc.value)

    @pytest.mark.parametrize(
        "payload, kind", [(b'{"external_id": "a", "text": "x"}', "dict"), (b'"hello"', "str"), (b"3", "int")]
    )
    def test_top_level_must_be_an_array(self, payload, kind):
        with pytest.raises(PayloadError, match=f"expected a JSON array of records, got a JSON {kind}"):
            parse_json_array(payload)

    def test_not_utf8(self):
        with pytest.raises(PayloadError, match=r"not valid UTF-8 \(byte 31\)"):
            parse_json_array(b'[{"external_id": "a", "text": "\xff"}]')

    def test_latin1_payload_is_refused_not_mis_decoded(self):
        with pytest.raises(PayloadError, match="UTF-8"):
            parse_json_array('[{"external_id": "a", "text": "café"}]'.encode("latin-1"))

    def test_deeply_nested_json_is_a_payload_error(self):
        with pytest.raises(PayloadError):
            parse_json_array(b"[" * 100_000 + b"]" * 100_000)

    def test_integer_too_long_to_convert_is_a_payload_error(self):
        with pytest.raises(PayloadError):
            parse_json_array(b'[{"external_id": ' + b"7" * 5000 + b', "text": "x"}]')


# --- JSON Lines -----------------------------------------------------------------------------


class TestJsonLines:
    def test_blank_lines_skipped_and_line_numbers_kept(self):
        payload = b'{"external_id": "a", "text": "x"}\n\n   \n{"external_id": "b", "text": "y"}\n\n'
        raw = parse_json_lines(payload)
        assert [(r.position, r.value["external_id"]) for r in raw] == [(1, "a"), (4, "b")]

    def test_crlf_line_endings(self):
        payload = b'{"external_id": "a", "text": "x"}\r\n\r\n{"external_id": "b", "text": "y"}\r\n'
        raw = parse_json_lines(payload)
        assert [(r.position, r.value["text"]) for r in raw] == [(1, "x"), (3, "y")]

    def test_bom_tolerated(self):
        raw = parse_json_lines(b'\xef\xbb\xbf{"external_id": "a", "text": "x"}\n')
        assert raw[0].value == {"external_id": "a", "text": "x"}

    def test_malformed_line_names_its_number(self):
        payload = b'{"external_id": "a", "text": "x"}\n\n{"external_id": "b", "text": "y"\n'
        with pytest.raises(PayloadError, match=r"malformed JSON on line 3 column \d+"):
            parse_json_lines(payload)

    def test_a_json_array_on_one_line_is_one_non_object_record(self):
        raw = parse_json_lines(b'[{"external_id": "a", "text": "x"}]\n')
        result = validate(raw, kind="line")
        assert result.records == []
        assert result.rejected[0].position == 1
        assert result.rejected[0].errors == {"record": "must be an object, got list"}

    @pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
    def test_unicode_line_separators_inside_strings_do_not_split_lines(self, separator):
        # JSON allows these characters unescaped inside strings; only \n ends a JSON Lines record.
        line = json.dumps({"external_id": "a", "text": f"one{separator}two"}, ensure_ascii=False)
        raw = parse_json_lines((line + "\n" + json.dumps({"external_id": "b", "text": "z"}) + "\n").encode())
        assert [(r.position, r.value["text"]) for r in raw] == [(1, f"one{separator}two"), (2, "z")]

    def test_not_utf8(self):
        with pytest.raises(PayloadError, match=r"not valid UTF-8 \(byte 0\)"):
            parse_json_lines(b"\xc3\x28")

    def test_deeply_nested_line_is_a_payload_error(self):
        with pytest.raises(PayloadError, match="line 2"):
            parse_json_lines(b'{"external_id": "a", "text": "x"}\n' + b"[" * 100_000 + b"\n")


# --- CSV ------------------------------------------------------------------------------------


class TestCsv:
    def test_basic_rows_and_line_numbers(self):
        raw = parse_csv(b"external_id,text\na,hello\nb,world\n")
        assert [(r.position, r.value) for r in raw] == [
            (2, {"external_id": "a", "text": "hello"}),
            (3, {"external_id": "b", "text": "world"}),
        ]

    def test_column_order_does_not_matter(self):
        raw = parse_csv(b"text,external_id\nhello,a\n")
        assert raw[0].value == {"external_id": "a", "text": "hello"}

    def test_quoted_newlines_inside_text_and_line_numbers_after_them(self):
        payload = b'external_id,text\na,"line one\nline two\nline three"\nb,"say ""hi"", twice"\n'
        raw = parse_csv(payload)
        assert [r.position for r in raw] == [2, 5]
        assert raw[0].value["text"] == "line one\nline two\nline three"
        assert raw[1].value["text"] == 'say "hi", twice'

    def test_crlf_and_blank_lines(self):
        raw = parse_csv(b"external_id,text\r\na,x\r\n\r\nb,y\r\n")
        assert [(r.position, r.value["external_id"]) for r in raw] == [(2, "a"), (4, "b")]

    def test_bom_tolerated_in_header(self):
        raw = parse_csv("\ufeffexternal_id,text\na,x\n".encode("utf-8"))
        assert raw[0].value == {"external_id": "a", "text": "x"}

    def test_header_names_are_stripped(self):
        raw = parse_csv(b" external_id , text \na,x\n")
        assert raw[0].value == {"external_id": "a", "text": "x"}

    def test_extra_columns_go_to_metadata_as_strings(self):
        raw = parse_csv(b"external_id,text,channel,priority\na,x,chat,3\n")
        assert raw[0].value == {"external_id": "a", "text": "x", "metadata": {"channel": "chat", "priority": "3"}}

    def test_metadata_and_embedding_json_columns(self):
        payload = b'external_id,text,metadata,embedding\na,x,"{""lang"": ""en"", ""n"": 2}","[0.5, 1, -2, 3.25]"\n'
        result = parse_and_validate("csv", payload)
        assert result.rejected == []
        (record,) = result.records
        assert record.metadata == {"lang": "en", "n": 2}
        assert np.frombuffer(record.embedding, dtype="<f4").tolist() == [0.5, 1.0, -2.0, 3.25]

    def test_metadata_column_merged_with_extra_columns(self):
        payload = b'external_id,text,metadata,channel\na,x,"{""lang"": ""en""}",chat\n'
        raw = parse_csv(payload)
        assert raw[0].value["metadata"] == {"lang": "en", "channel": "chat"}

    def test_empty_metadata_and_embedding_cells_mean_absent(self):
        raw = parse_csv(b"external_id,text,metadata,embedding\na,x,,\n")
        assert raw[0].value == {"external_id": "a", "text": "x"}

    @pytest.mark.parametrize(
        "cell, column, message",
        [
            ('"{not json"', "metadata", "not valid JSON"),
            ('"[1, 2]"', "metadata", "must be a JSON object"),
        ],
    )
    def test_bad_metadata_cell_rejects_the_row(self, cell, column, message):
        payload = f"external_id,text,metadata\na,x,{cell}\nb,y,\n".encode()
        result = parse_and_validate("csv", payload)
        assert [r.external_id for r in result.records] == ["b"]
        (rejected,) = result.rejected
        assert rejected.position == 2
        assert message in rejected.errors[column]

    def test_bad_embedding_cell_rejects_the_row(self):
        result = parse_and_validate("csv", b'external_id,text,embedding\na,x,"[1, 2,"\n')
        assert result.records == []
        assert "not valid JSON" in result.rejected[0].errors["embedding"]

    def test_embedding_cell_of_wrong_length(self):
        result = parse_and_validate("csv", b'external_id,text,embedding\na,x,"[1, 2]"\n')
        assert result.rejected[0].errors == {"embedding": "has 2 values, this project's embeddings have 4"}

    def test_rows_with_wrong_number_of_fields(self):
        payload = b"external_id,text\na,x\nb,y,extra\nc\nd,z\n"
        result = parse_and_validate("csv", payload)
        assert [r.external_id for r in result.records] == ["a", "d"]
        assert [(r.position, r.errors) for r in result.rejected] == [
            (3, {"row": "has 3 fields, the header has 2"}),
            (4, {"row": "has 1 fields, the header has 2"}),
        ]

    @pytest.mark.parametrize(
        "payload, message",
        [
            (b"", "CSV payload is empty"),
            (b"id,text\na,x\n", "lacks required column(s): external_id"),
            (b"external_id,body\na,x\n", "lacks required column(s): text"),
            (b"a,x\nb,y\n", "lacks required column(s): external_id, text"),
            (b"external_id,text,text\na,x,y\n", "repeats column(s): text"),
        ],
    )
    def test_bad_header(self, payload, message):
        with pytest.raises(PayloadError, match="line 1" if payload else "empty") as exc:
            parse_csv(payload)
        assert message in str(exc.value)

    def test_unterminated_quote_is_malformed_not_swallowing_later_rows(self):
        # A lenient reader would read rows 3-4 as one text "never closed\nc,y\n".
        with pytest.raises(PayloadError) as exc:
            parse_csv(b'external_id,text\na,x\nb,"never closed\nc,y\n')
        assert "malformed CSV" in str(exc.value)
        assert "row starting on line 3" in str(exc.value)

    def test_text_after_a_closing_quote_is_malformed(self):
        with pytest.raises(PayloadError, match=r"malformed CSV on line 3 .*line 3"):
            parse_csv(b'external_id,text\na,x\nb,"quoted"trailing\n')

    def test_a_quote_inside_an_unquoted_field_is_kept(self):
        raw = parse_csv(b'external_id,text\na,5" screen\n')
        assert raw[0].value["text"] == '5" screen'

    def test_not_utf8(self):
        with pytest.raises(PayloadError, match=r"not valid UTF-8 \(byte 19\)"):
            parse_csv(b"external_id,text\na,\xe9t\xe9\n")

    def test_header_only_gives_no_records(self):
        assert parse_csv(b"external_id,text\n") == []

    def test_nul_in_csv_text_is_a_record_error(self):
        result = parse_and_validate("csv", b"external_id,text\na,x\x00y\n")
        assert result.rejected[0].errors == {"text": "must not contain NUL characters"}


# --- record rules ---------------------------------------------------------------------------


class TestRecordRules:
    def test_a_valid_record_is_cleaned(self):
        (record,), rejected = check_one(
            {"external_id": "a-1", "text": "  Hello  ", "metadata": {"x": [1, "y"]}, "embedding": [1, 2.5, -3, 0]}
        )
        assert rejected == []
        assert isinstance(record, CleanRecord)
        assert record.position == 0
        assert record.external_id == "a-1"
        assert record.text == "  Hello  "  # stored as given
        assert record.text_hash == text_digest("  Hello  ")
        assert len(record.text_hash) == 32
        assert record.metadata == {"x": [1, "y"]}
        assert record.embedding == np.array([1, 2.5, -3, 0], dtype="<f4").tobytes()

    def test_absent_and_null_metadata_and_embedding_mean_not_given(self):
        for value in (
            {"external_id": "a", "text": "x"},
            {"external_id": "a", "text": "x", "metadata": None, "embedding": None},
        ):
            (record,), _ = check_one(value)
            assert record.metadata is None
            assert record.embedding is None

    def test_empty_metadata_object_is_given(self):
        (record,), _ = check_one({"external_id": "a", "text": "x", "metadata": {}})
        assert record.metadata == {}

    def test_text_hash_differs_for_different_texts(self):
        assert text_digest("a") != text_digest("a ")
        assert text_digest("é") == text_digest("é")

    @pytest.mark.parametrize(
        "value, field, message",
        [
            ({"external_id": "a"}, "text", "is required"),
            ({"external_id": "a", "text": None}, "text", "is required"),
            ({"external_id": "a", "text": ""}, "text", "must not be empty"),
            ({"external_id": "a", "text": " \t\n "}, "text", "must not be empty"),
            ({"external_id": "a", "text": 12}, "text", "must be a string, got int"),
            ({"external_id": "a", "text": ["x"]}, "text", "must be a string, got list"),
            ({"external_id": "a", "text": True}, "text", "must be a string, got bool"),
            (
                {"external_id": "a", "text": "x" * (MAX_TEXT + 1)},
                "text",
                f"has {MAX_TEXT + 1} characters, the limit is {MAX_TEXT}",
            ),
            ({"external_id": "a", "text": "x\x00y"}, "text", "must not contain NUL characters"),
            ({"text": "x"}, "external_id", "is required"),
            ({"external_id": None, "text": "x"}, "external_id", "is required"),
            ({"external_id": "", "text": "x"}, "external_id", "must not be empty"),
            ({"external_id": "   ", "text": "x"}, "external_id", "must not be empty"),
            ({"external_id": True, "text": "x"}, "external_id", "must be a string, got bool"),
            ({"external_id": 1.5, "text": "x"}, "external_id", "must be a string, got float"),
            ({"external_id": 2.0, "text": "x"}, "external_id", "must be a string, got float"),
            ({"external_id": ["a"], "text": "x"}, "external_id", "must be a string, got list"),
            ({"external_id": {"a": 1}, "text": "x"}, "external_id", "must be a string, got dict"),
            (
                {"external_id": "e" * (MAX_EXTERNAL_ID_CHARS + 1), "text": "x"},
                "external_id",
                "is longer than 255 characters",
            ),
            ({"external_id": "a\x00b", "text": "x"}, "external_id", "must not contain NUL characters"),
            ({"external_id": "a", "text": "x", "metadata": [1, 2]}, "metadata", "must be an object, got list"),
            ({"external_id": "a", "text": "x", "metadata": "k=v"}, "metadata", "must be an object, got str"),
            ({"external_id": "a", "text": "x", "metadata": 3}, "metadata", "must be an object, got int"),
            (
                {"external_id": "a", "text": "x", "metadata": {"k": "v\x00"}},
                "metadata",
                "must not contain NUL characters",
            ),
            (
                {"external_id": "a", "text": "x", "metadata": {"k\x00": "v"}},
                "metadata",
                "must not contain NUL characters",
            ),
            (
                {"external_id": "a", "text": "x", "metadata": {"k": [{"deep": "\x00"}]}},
                "metadata",
                "must not contain NUL characters",
            ),
        ],
    )
    def test_field_rules(self, value, field, message):
        errors = errors_of(value)
        assert errors[field] == message
        assert set(errors) == {field}

    def test_max_lengths_are_inclusive(self):
        (record,), rejected = check_one({"external_id": "e" * MAX_EXTERNAL_ID_CHARS, "text": "x" * MAX_TEXT})
        assert rejected == []
        assert len(record.external_id) == MAX_EXTERNAL_ID_CHARS

    def test_text_limit_counts_characters_not_bytes(self):
        (record,), rejected = check_one({"external_id": "a", "text": "é" * MAX_TEXT})
        assert rejected == [] and len(record.text) == MAX_TEXT

    @pytest.mark.parametrize("value, expected", [(7, "7"), (0, "0"), (-12, "-12"), (10**30, str(10**30))])
    def test_integer_external_id_kept_as_its_decimal_string(self, value, expected):
        (record,), rejected = check_one({"external_id": value, "text": "x"})
        assert rejected == []
        assert record.external_id == expected

    def test_integer_external_id_too_long(self):
        errors = errors_of({"external_id": 10**300, "text": "x"})
        assert errors == {"external_id": "is longer than 255 characters"}

    def test_unknown_fields_are_an_error_not_dropped(self):
        errors = errors_of({"external_id": "a", "txt": "x", "extra": 1})
        assert (
            errors["record"]
            == "unknown field(s) 'txt', 'extra'; allowed: external_id, text, metadata, embedding, label, honeypot"
        )
        assert errors["text"] == "is required"

    def test_all_errors_of_a_record_are_reported_together(self):
        errors = errors_of({"external_id": 1.5, "text": "", "metadata": [], "embedding": "no"})
        assert set(errors) == {"external_id", "text", "metadata", "embedding"}

    def test_rejected_record_keeps_its_external_id_when_it_is_valid(self):
        _, (rejected,) = check_one({"external_id": "keep-me", "text": ""})
        assert rejected.external_id == "keep-me"
        _, (rejected,) = check_one({"external_id": 1.5, "text": ""})
        assert rejected.external_id is None

    @pytest.mark.parametrize("value", [[1, 2], "x", 3, None, True])
    def test_record_must_be_an_object(self, value):
        _, (rejected,) = check_one(value)
        assert rejected.errors == {"record": f"must be an object, got {type(value).__name__}"}
        assert rejected.external_id is None

    def test_lone_surrogates_are_rejected_not_crashing(self):
        # "\ud800" is legal JSON but not encodable as UTF-8: no database can store it.
        payload = b'[{"external_id": "a", "text": "bad \\ud800 text"}, {"external_id": "b\\udfff", "text": "x"},'
        payload += b' {"external_id": "c", "text": "x", "metadata": {"k": "\\udc00"}}, {"external_id": "d", "text": "ok \\ud83d\\ude00"}]'
        result = parse_and_validate("json", payload)
        assert [r.external_id for r in result.records] == ["d"]
        assert result.records[0].text == "ok \U0001f600"
        assert result.rejected[1].external_id == "b\\udfff"  # reported escaped: a response must be UTF-8
        message = "must not contain lone surrogates (invalid Unicode)"
        assert [(r.position, r.errors) for r in result.rejected] == [
            (0, {"text": message}),
            (1, {"external_id": message}),
            (2, {"metadata": message}),
        ]

    @pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
    def test_metadata_with_non_finite_numbers_is_rejected(self, number):
        # PostgreSQL's jsonb cannot store NaN or Infinity.
        payload = f'[{{"external_id": "a", "text": "x", "metadata": {{"score": {number}}}}}]'.encode()
        result = parse_and_validate("json", payload)
        assert result.records == []
        assert "metadata" in result.rejected[0].errors

    @pytest.mark.parametrize(
        "levels, accepted", [(1, True), (MAX_METADATA_DEPTH, True), (MAX_METADATA_DEPTH + 1, False), (300, False)]
    )
    def test_metadata_nesting_limit(self, levels, accepted):
        nested: object = "leaf"
        for level in range(levels):  # dicts and lists alternate, the outermost is a dict
            nested = [nested] if (levels - 1 - level) % 2 else {"k": nested}
        records, rejected = check_one({"external_id": "a", "text": "x", "metadata": nested})
        if accepted:
            assert rejected == [] and len(records) == 1
        else:
            assert rejected[0].errors == {"metadata": f"is nested more than {MAX_METADATA_DEPTH} levels deep"}

    def test_deeply_nested_metadata_is_rejected_not_crashing(self):
        nested: dict = {}
        for _ in range(900):
            nested = {"k": nested}
        payload = json.dumps([{"external_id": "a", "text": "x", "metadata": nested}]).encode()
        try:
            result = parse_and_validate("json", payload)
        except PayloadError:
            return  # refusing the whole payload is fine too
        assert result.records == []
        assert "metadata" in result.rejected[0].errors


class TestEmbeddings:
    @pytest.mark.parametrize(
        "embedding, message",
        [
            ([1, 2, 3], "has 3 values, this project's embeddings have 4"),
            ([1, 2, 3, 4, 5], "has 5 values, this project's embeddings have 4"),
            ([], "has 0 values, this project's embeddings have 4"),
            ("1,2,3,4", "must be a list of 4 numbers"),
            ({"0": 1}, "must be a list of 4 numbers"),
            (5, "must be a list of 4 numbers"),
            ([1, 2, 3, "4"], "must contain only numbers"),
            ([1, 2, 3, None], "must contain only numbers"),
            ([1, 2, 3, True], "must contain only numbers"),
            ([[1, 2], [3, 4], [5, 6], [7, 8]], "must contain only numbers"),
            ([1, 2, 3, [4]], "must contain only numbers"),
            ([1, 2, 3, math.nan], "must contain only finite float32 values"),
            ([1, 2, 3, math.inf], "must contain only finite float32 values"),
            ([1, 2, -math.inf, 4], "must contain only finite float32 values"),
            ([1, 2, 3, 1e39], "must contain only finite float32 values"),
        ],
    )
    def test_bad_embeddings(self, embedding, message):
        errors = errors_of({"external_id": "a", "text": "x", "embedding": embedding})
        assert errors == {"embedding": message}

    @pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
    def test_non_finite_json_tokens_in_embedding(self, token):
        payload = b'[{"external_id": "a", "text": "x", "embedding": [1, 2, 3, ' + token + b"]}]"
        result = parse_and_validate("json", payload)
        assert result.rejected[0].errors == {"embedding": "must contain only finite float32 values"}

    def test_integer_too_large_for_a_float_is_rejected_not_crashing(self):
        payload = b'[{"external_id": "a", "text": "x", "embedding": [1, 2, 3, ' + b"9" * 400 + b"]}]"
        result = parse_and_validate("json", payload)
        assert result.records == []
        assert result.rejected[0].errors == {"embedding": "must contain only finite float32 values"}

    def test_stored_as_little_endian_float32(self):
        (record,), _ = check_one({"external_id": "a", "text": "x", "embedding": [0.1, -1, 3.4e38, 1e-3]})
        assert len(record.embedding) == 4 * 4
        decoded = np.frombuffer(record.embedding, dtype="<f4")
        np.testing.assert_array_equal(decoded, np.array([0.1, -1, 3.4e38, 1e-3], dtype=np.float32))

    def test_dimension_comes_from_the_caller(self):
        (record,), rejected = check_one({"external_id": "a", "text": "x", "embedding": [0.5] * 7}, dim=7)
        assert rejected == [] and len(record.embedding) == 28


class TestDuplicates:
    def test_duplicate_in_json_names_the_first_index(self):
        payload = json.dumps(
            [
                {"external_id": "a", "text": "x"},
                {"external_id": "b", "text": "y"},
                {"external_id": "a", "text": "z"},
                {"external_id": "a", "text": "w"},
            ]
        ).encode()
        result = parse_and_validate("json", payload)
        assert [r.external_id for r in result.records] == ["a", "b"]
        assert [(r.position, r.errors) for r in result.rejected] == [
            (2, {"external_id": "duplicate within this request (first at index 0)"}),
            (3, {"external_id": "duplicate within this request (first at index 0)"}),
        ]

    def test_duplicate_in_json_lines_names_the_first_line(self):
        payload = b'\n{"external_id": "a", "text": "x"}\n{"external_id": "a", "text": "y"}\n'
        result = parse_and_validate("jsonl", payload)
        assert result.rejected[0].position == 3
        assert result.rejected[0].errors == {"external_id": "duplicate within this request (first at line 2)"}

    def test_duplicate_in_csv_names_the_first_line(self):
        result = parse_and_validate("csv", b'external_id,text\na,"multi\nline"\na,again\n')
        assert result.rejected[0].position == 4
        assert result.rejected[0].errors == {"external_id": "duplicate within this request (first at line 2)"}

    def test_int_and_string_forms_of_an_id_are_duplicates(self):
        result = parse_and_validate("json", b'[{"external_id": 5, "text": "x"}, {"external_id": "5", "text": "y"}]')
        assert result.rejected[0].errors == {"external_id": "duplicate within this request (first at index 0)"}

    def test_first_occurrence_counts_even_when_it_is_itself_invalid(self):
        result = parse_and_validate("json", b'[{"external_id": "a", "text": ""}, {"external_id": "a", "text": "y"}]')
        assert result.records == []
        assert result.rejected[1].errors == {"external_id": "duplicate within this request (first at index 0)"}

    def test_ids_differing_in_case_or_spaces_are_distinct(self):
        result = parse_and_validate(
            "json",
            b'[{"external_id": "a", "text": "x"}, {"external_id": "A", "text": "y"}, {"external_id": "a ", "text": "z"}]',
        )
        assert result.rejected == []
        assert [r.external_id for r in result.records] == ["a", "A", "a "]


def test_same_records_in_every_format_give_the_same_clean_records():
    rows = [
        {"external_id": "a", "text": "hello, world", "metadata": {"lang": "en"}, "embedding": [1.0, 2.0, 3.0, 4.0]},
        {"external_id": "b", "text": 'quote " and\nnewline'},
    ]
    as_json = json.dumps(rows).encode()
    as_jsonl = "\n".join(json.dumps(r) for r in rows).encode()
    as_csv = (
        b"external_id,text,metadata,embedding\n"
        b'a,"hello, world","{""lang"": ""en""}","[1, 2, 3, 4]"\n'
        b'b,"quote "" and\nnewline",,\n'
    )
    results = [
        parse_and_validate(fmt, payload) for fmt, payload in (("json", as_json), ("jsonl", as_jsonl), ("csv", as_csv))
    ]
    for result in results:
        assert result.rejected == []
    summaries = [
        [(r.external_id, r.text, r.text_hash, r.metadata, r.embedding) for r in result.records] for result in results
    ]
    assert summaries[0] == summaries[1] == summaries[2]
    assert [r.position_kind for r in results] == ["index", "line", "line"]


# --- label and honeypot (labels a team already has) -----------------------------------------------

LABELS = {"refund": 11, "card_lost": 12}


def validate_labelled(raw, **kwargs):
    return validate_records(raw, embedding_dim=DIM, max_text_chars=MAX_TEXT, position_kind="index", labels=LABELS)


def test_label_and_honeypot_become_label_ids():
    result = validate_labelled(
        [
            RawRecord(0, {"external_id": "a", "text": "t"}),
            RawRecord(1, {"external_id": "b", "text": "t", "label": "refund"}),
            RawRecord(2, {"external_id": "c", "text": "t", "label": "card_lost", "honeypot": True}),
            RawRecord(3, {"external_id": "d", "text": "t", "label": None, "honeypot": False}),
        ]
    )
    assert result.rejected == []
    assert [(r.label_id, r.honeypot) for r in result.records] == [(None, False), (11, False), (12, True), (None, False)]


@pytest.mark.parametrize(
    ("record", "field", "reason"),
    [
        ({"label": "Refund"}, "label", "unknown label 'Refund'; this project's labels: 'refund', 'card_lost'"),
        ({"label": ""}, "label", "unknown label ''"),
        ({"label": ["refund"]}, "label", "must be a label name (a string), got list"),
        ({"honeypot": True}, "honeypot", "a honeypot needs a label"),
        ({"label": "refund", "honeypot": 1}, "honeypot", "must be true or false, got int"),
        ({"label": "refund", "honeypot": "true"}, "honeypot", "must be true or false, got str"),
    ],
)
def test_bad_label_or_honeypot_is_a_field_error(record, field, reason):
    result = validate_labelled([RawRecord(0, {"external_id": "a", "text": "t", **record})])
    assert result.records == []
    assert result.rejected[0].external_id == "a"
    assert result.rejected[0].errors[field].startswith(reason)


def test_without_a_label_set_every_label_is_unknown():
    result = validate([RawRecord(0, {"external_id": "a", "text": "t", "label": "refund"})])
    assert result.rejected[0].errors["label"].startswith("unknown label 'refund'")


def test_long_label_sets_are_cut_in_the_message():
    labels = {f"l{i}": i for i in range(100)}
    result = validate_records(
        [RawRecord(0, {"external_id": "a", "text": "t", "label": "x" * 500})],
        embedding_dim=DIM,
        max_text_chars=MAX_TEXT,
        position_kind="index",
        labels=labels,
    )
    message = result.rejected[0].errors["label"]
    assert "(100 in all)" in message and len(message) < 400


@pytest.mark.parametrize(
    ("cell", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("false", False), ("0", False), ("No", False)],
)
def test_csv_honeypot_words(cell, expected):
    raw = parse_csv(f"external_id,text,label,honeypot\na,t,refund,{cell}\n".encode())
    assert raw[0].value == {"external_id": "a", "text": "t", "label": "refund", "honeypot": expected}


def test_csv_empty_label_and_honeypot_cells_are_absent():
    raw = parse_csv(b"external_id,text,label,honeypot,channel\na,t,,,web\n")
    assert raw[0].value == {"external_id": "a", "text": "t", "metadata": {"channel": "web"}}


def test_csv_bad_honeypot_names_the_record():
    raw = parse_csv(b"external_id,text,label,honeypot\nx-1,t,refund,maybe\n")
    result = validate_labelled(raw)
    assert result.rejected[0].position == 2 and result.rejected[0].external_id == "x-1"
    assert result.rejected[0].errors == {"honeypot": "must be one of true, false, 1, 0, yes, no; got 'maybe'"}
