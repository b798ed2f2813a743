"""POST / GET /api/v1/projects/{id}/items through the real API stack (parsers, views, services, DB)."""

import json
import random

import numpy as np
import pytest
from django.test import override_settings

from acquisition.models import ItemEmbedding
from annotation.models import EmbeddingState, IngestBatch, Item, ItemStatus, Project, Role

JSON = "application/json"
JSONL = "application/x-ndjson"
CSV = "text/csv"

pytestmark = pytest.mark.django_db


def items_url(project_or_id, query: str = "") -> str:
    pk = getattr(project_or_id, "pk", project_or_id)
    return f"/api/v1/projects/{pk}/items" + (f"?{query}" if query else "")


def push(api, project, body, content_type=JSON, query=""):
    """POST a raw body (bytes/str sent as is; lists of dicts encoded for the content type)."""
    if isinstance(body, list):
        if content_type == JSON:
            body = json.dumps(body)
        elif content_type == JSONL:
            body = "\n".join(json.dumps(record) for record in body) + "\n"
        else:
            raise ValueError("encode CSV bodies yourself")
    return api.post(items_url(project, query), data=body, content_type=content_type)


def snapshot():
    """Everything an ingest may write, to compare before / after a refused request."""
    return {
        "items": sorted(
            Item.objects.values_list("external_id", "text", "text_hash", "metadata", "embedding_state", "updated_at")
        ),
        "embeddings": sorted((e.item_id, bytes(e.vector)) for e in ItemEmbedding.objects.all()),
        "batches": IngestBatch.objects.count(),
    }


def vector(*values):
    return np.array(values, dtype="<f4")


@pytest.fixture
def seeded(admin_api, project):
    """One stored item with metadata and a pushed embedding."""
    response = push(
        admin_api, project, [{"external_id": "s-1", "text": "seeded", "metadata": {"m": 1}, "embedding": [1, 2, 3, 4]}]
    )
    assert response.status_code == 201, response.json()
    return Item.objects.get(project=project, external_id="s-1")


# --- every format ---------------------------------------------------------------------------


CSV_BODY = (
    'external_id,text,channel\nt-1,My card has not arrived,chat\nt-2,"Refund please,\nI was charged twice",email\n'
)


@pytest.mark.parametrize(
    "content_type, body, fmt",
    [
        (
            JSON,
            json.dumps(
                [
                    {"external_id": "t-1", "text": "My card has not arrived", "metadata": {"channel": "chat"}},
                    {
                        "external_id": "t-2",
                        "text": "Refund please,\nI was charged twice",
                        "metadata": {"channel": "email"},
                    },
                ]
            ),
            "json",
        ),
        (
            JSONL,
            '{"external_id": "t-1", "text": "My card has not arrived", "metadata": {"channel": "chat"}}\n\n'
            '{"external_id": "t-2", "text": "Refund please,\\nI was charged twice", "metadata": {"channel": "email"}}\n',
            "jsonl",
        ),
        (
            "application/jsonl",
            '{"external_id": "t-1", "text": "My card has not arrived", "metadata": {"channel": "chat"}}\n'
            '{"external_id": "t-2", "text": "Refund please,\\nI was charged twice", "metadata": {"channel": "email"}}',
            "jsonl",
        ),
        (CSV, CSV_BODY, "csv"),
        ("text/csv; charset=utf-8", "\ufeff" + CSV_BODY, "csv"),
        (
            "application/json; charset=utf-8",
            json.dumps(
                [
                    {"external_id": "t-1", "text": "My card has not arrived", "metadata": {"channel": "chat"}},
                    {
                        "external_id": "t-2",
                        "text": "Refund please,\nI was charged twice",
                        "metadata": {"channel": "email"},
                    },
                ]
            ),
            "json",
        ),
    ],
)
def test_ingest_every_format(admin_api, admin_user, project, content_type, body, fmt):
    response = push(admin_api, project, body.encode("utf-8"), content_type)
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["created"] == 2 and data["updated"] == 0 and data["unchanged"] == 0
    assert data["rejected_count"] == 0 and data["rejected"] == []
    assert data["awaiting_embedding"] == 2 and data["embeddings_written"] == 0

    items = {item.external_id: item for item in Item.objects.filter(project=project)}
    assert set(items) == {"t-1", "t-2"}
    assert items["t-1"].text == "My card has not arrived"
    assert items["t-2"].text == "Refund please,\nI was charged twice"
    assert items["t-1"].metadata == {"channel": "chat"}
    assert items["t-2"].metadata == {"channel": "email"}
    assert all(
        item.status == ItemStatus.UNLABELED and item.embedding_state == EmbeddingState.PENDING
        for item in items.values()
    )

    batch = IngestBatch.objects.get(pk=data["batch_id"])
    assert (batch.project_id, batch.format, batch.created_by, batch.records, batch.created) == (
        project.pk,
        fmt,
        admin_user,
        2,
        2,
    )


def test_integer_external_ids_are_stored_as_strings(admin_api, project):
    response = push(admin_api, project, [{"external_id": 42, "text": "x"}])
    assert response.status_code == 201
    assert Item.objects.get(project=project).external_id == "42"
    again = push(admin_api, project, [{"external_id": "42", "text": "x"}])
    assert again.json()["unchanged"] == 1


def test_same_external_id_in_another_project_is_a_separate_item(admin_api, project, make_project):
    other = make_project()
    push(admin_api, project, [{"external_id": "a", "text": "one"}])
    response = push(admin_api, other, [{"external_id": "a", "text": "two"}])
    assert response.status_code == 201 and response.json()["created"] == 1
    assert sorted(Item.objects.filter(external_id="a").values_list("project_id", "text")) == sorted(
        [(project.pk, "one"), (other.pk, "two")]
    )


# --- idempotency and updates ----------------------------------------------------------------


@pytest.mark.parametrize("content_type", [JSON, JSONL])
def test_pushing_the_same_records_twice_changes_nothing(admin_api, project, content_type):
    records = [
        {"external_id": f"r-{i}", "text": f"text {i}", "metadata": {"i": i, "tags": ["a", "é"], "f": 0.1}}
        for i in range(5)
    ]
    first = push(admin_api, project, records, content_type)
    assert first.status_code == 201 and first.json()["created"] == 5
    before = snapshot()

    second = push(admin_api, project, records, content_type)
    assert second.status_code == 200
    body = second.json()
    assert (body["created"], body["updated"], body["unchanged"], body["awaiting_embedding"]) == (0, 0, 5, 0)
    after = snapshot()
    assert after["items"] == before["items"]  # updated_at included
    assert after["batches"] == before["batches"] + 1
    batch = IngestBatch.objects.get(pk=body["batch_id"])
    assert batch.status == IngestBatch.Status.PROCESSED and batch.unchanged == 5


def test_same_records_in_another_format_are_unchanged(admin_api, project):
    push(admin_api, project, [{"external_id": "a", "text": "hello, world"}, {"external_id": "b", "text": "two\nlines"}])
    before = snapshot()
    response = push(admin_api, project, 'external_id,text\na,"hello, world"\nb,"two\nlines"\n', CSV)
    assert response.status_code == 200
    assert response.json()["unchanged"] == 2
    assert snapshot()["items"] == before["items"]


def test_metadata_key_order_does_not_count_as_a_change(admin_api, project):
    push(admin_api, project, '[{"external_id": "a", "text": "x", "metadata": {"a": 1, "b": {"c": 2, "d": 3}}}]')
    response = push(
        admin_api, project, '[{"external_id": "a", "text": "x", "metadata": {"b": {"d": 3, "c": 2}, "a": 1}}]'
    )
    assert response.json()["unchanged"] == 1


@pytest.mark.parametrize("value", [1e23, 1e300, -2.5e-300, 0.1, 1.0, 10**30, 2**63 + 1, "1e23", [1e23, {"x": 1e200}]])
def test_metadata_numbers_pushed_again_are_unchanged(admin_api, project, value):
    # PostgreSQL's jsonb keeps the decimal value: 1e23 comes back as the integer 10**23.
    records = [{"external_id": "a", "text": "x", "metadata": {"v": value}}]
    assert push(admin_api, project, records).status_code == 201
    before = snapshot()
    body = push(admin_api, project, records).json()
    assert (body["updated"], body["unchanged"]) == (0, 1)
    assert snapshot()["items"] == before["items"]


@pytest.mark.parametrize(
    "old, new", [(1e23, 2e23), (1, 2), (0.1, 0.2), ("1", 1), (None, 0), ([1, 2], [2, 1]), ({"a": 1}, {"b": 1})]
)
def test_changed_metadata_values_are_updates(admin_api, project, old, new):
    push(admin_api, project, [{"external_id": "a", "text": "x", "metadata": {"v": old}}])
    body = push(admin_api, project, [{"external_id": "a", "text": "x", "metadata": {"v": new}}]).json()
    assert body["updated"] == 1
    stored = Item.objects.get(project=project, external_id="a").metadata["v"]
    assert stored == new or (isinstance(new, float) and float(stored) == new)  # jsonb: 2e23 -> 2 * 10**23


def test_changed_text_updates_and_invalidates_the_embedding(admin_api, project, seeded):
    assert ItemEmbedding.objects.filter(item=seeded).exists()
    assert seeded.embedding_state == EmbeddingState.READY

    response = push(admin_api, project, [{"external_id": "s-1", "text": "seeded, edited"}])
    assert response.status_code == 200
    body = response.json()
    assert (body["created"], body["updated"], body["unchanged"], body["awaiting_embedding"]) == (0, 1, 0, 1)

    item = Item.objects.get(pk=seeded.pk)
    assert item.text == "seeded, edited"
    assert item.text_hash != seeded.text_hash
    assert item.embedding_state == EmbeddingState.PENDING
    assert item.metadata == {"m": 1}  # not given: kept
    assert item.updated_at > seeded.updated_at
    assert item.created_at == seeded.created_at
    assert not ItemEmbedding.objects.filter(item=seeded).exists()


def test_changed_metadata_only_keeps_the_embedding(admin_api, project, seeded):
    response = push(admin_api, project, [{"external_id": "s-1", "text": "seeded", "metadata": {"m": 2}}])
    assert response.status_code == 200
    assert (response.json()["updated"], response.json()["awaiting_embedding"]) == (1, 0)
    item = Item.objects.get(pk=seeded.pk)
    assert item.metadata == {"m": 2}
    assert item.text == "seeded"
    assert item.embedding_state == EmbeddingState.READY
    np.testing.assert_array_equal(ItemEmbedding.objects.get(item=seeded).as_array(), vector(1, 2, 3, 4))


def test_omitted_metadata_keeps_the_stored_metadata(admin_api, project, seeded):
    response = push(admin_api, project, [{"external_id": "s-1", "text": "seeded"}])
    assert response.json()["unchanged"] == 1
    response = push(admin_api, project, [{"external_id": "s-1", "text": "seeded", "metadata": None}])
    assert response.json()["unchanged"] == 1
    assert Item.objects.get(pk=seeded.pk).metadata == {"m": 1}


def test_empty_metadata_object_clears_it(admin_api, project, seeded):
    response = push(admin_api, project, [{"external_id": "s-1", "text": "seeded", "metadata": {}}])
    assert response.json()["updated"] == 1
    assert Item.objects.get(pk=seeded.pk).metadata == {}


def test_a_changed_text_sends_a_final_item_back_to_the_pool(admin_api, project, seeded):
    # a new text is a new question (tests/test_data_safety.py has the whole story)
    Item.objects.filter(pk=seeded.pk).update(status=ItemStatus.FINALIZED)
    push(admin_api, project, [{"external_id": "s-1", "text": "new text"}])
    item = Item.objects.get(pk=seeded.pk)
    assert item.status == ItemStatus.UNLABELED and item.text == "new text" and item.text_revision == 2


def test_changed_metadata_alone_keeps_the_item_status(admin_api, project, seeded):
    Item.objects.filter(pk=seeded.pk).update(status=ItemStatus.FINALIZED)
    push(admin_api, project, [{"external_id": "s-1", "text": seeded.text, "metadata": {"k": 1}}])
    item = Item.objects.get(pk=seeded.pk)
    assert item.status == ItemStatus.FINALIZED and item.metadata == {"k": 1} and item.text_revision == 1


def test_mixed_request_counts(admin_api, project, seeded):
    push(admin_api, project, [{"external_id": "keep", "text": "same"}, {"external_id": "edit", "text": "old"}])
    response = push(
        admin_api,
        project,
        [
            {"external_id": "keep", "text": "same"},
            {"external_id": "edit", "text": "new"},
            {"external_id": "fresh-1", "text": "n1"},
            {"external_id": "fresh-2", "text": "n2", "embedding": [0, 0, 0, 1]},
        ],
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["created"], body["updated"], body["unchanged"]) == (2, 1, 1)
    assert body["embeddings_written"] == 1
    assert body["awaiting_embedding"] == 2  # fresh-1 and the edited text
    assert Item.objects.filter(project=project).count() == 5  # with the seeded one
    batch = IngestBatch.objects.get(pk=body["batch_id"])
    assert (batch.records, batch.created, batch.updated, batch.unchanged, batch.rejected) == (4, 2, 1, 1, 0)


# --- pushed embeddings ----------------------------------------------------------------------


def test_pushed_embedding_is_stored_as_float32(admin_api, project):
    values = [0.1, -2.5, 3.4e38, 1e-7]
    response = push(admin_api, project, [{"external_id": "e", "text": "x", "embedding": values}])
    assert response.status_code == 201
    body = response.json()
    assert (body["embeddings_written"], body["awaiting_embedding"]) == (1, 0)
    item = Item.objects.get(project=project, external_id="e")
    assert item.embedding_state == EmbeddingState.READY
    stored = ItemEmbedding.objects.get(item=item)
    assert (stored.dim, stored.source, stored.project_id) == (4, "provided", project.pk)
    assert len(bytes(stored.vector)) == 16
    np.testing.assert_array_equal(stored.as_array(), np.array(values, dtype=np.float32))


def test_pushing_the_same_embedding_again_is_unchanged(admin_api, project, seeded):
    stored_before = ItemEmbedding.objects.get(item=seeded)
    response = push(admin_api, project, [{"external_id": "s-1", "text": "seeded", "embedding": [1, 2, 3, 4]}])
    body = response.json()
    assert (body["unchanged"], body["updated"], body["embeddings_written"]) == (1, 0, 0)
    stored_after = ItemEmbedding.objects.get(item=seeded)
    assert stored_after.updated_at == stored_before.updated_at
    # 1 and 1.0 are the same float32.
    body = push(
        admin_api, project, [{"external_id": "s-1", "text": "seeded", "embedding": [1.0, 2.0, 3.0, 4.0]}]
    ).json()
    assert body["unchanged"] == 1


def test_a_different_embedding_replaces_the_stored_one(admin_api, project, seeded):
    body = push(admin_api, project, [{"external_id": "s-1", "text": "seeded", "embedding": [4, 3, 2, 1]}]).json()
    assert (body["updated"], body["embeddings_written"]) == (1, 1)
    np.testing.assert_array_equal(ItemEmbedding.objects.get(item=seeded).as_array(), vector(4, 3, 2, 1))
    assert ItemEmbedding.objects.count() == 1
    assert Item.objects.get(pk=seeded.pk).embedding_state == EmbeddingState.READY


def test_new_text_with_a_new_embedding_keeps_the_item_ready(admin_api, project, seeded):
    body = push(admin_api, project, [{"external_id": "s-1", "text": "changed", "embedding": [9, 9, 9, 9]}]).json()
    assert (body["updated"], body["embeddings_written"], body["awaiting_embedding"]) == (1, 1, 0)
    assert Item.objects.get(pk=seeded.pk).embedding_state == EmbeddingState.READY
    np.testing.assert_array_equal(ItemEmbedding.objects.get(item=seeded).as_array(), vector(9, 9, 9, 9))


def test_embedding_pushed_later_for_an_existing_item(admin_api, project):
    push(admin_api, project, [{"external_id": "a", "text": "x"}])
    body = push(admin_api, project, [{"external_id": "a", "text": "x", "embedding": [1, 1, 1, 1]}]).json()
    assert (body["updated"], body["embeddings_written"]) == (1, 1)
    item = Item.objects.get(project=project, external_id="a")
    assert item.embedding_state == EmbeddingState.READY
    np.testing.assert_array_equal(item.embedding.as_array(), vector(1, 1, 1, 1))


def test_embedding_in_a_csv_column(admin_api, project):
    response = push(admin_api, project, 'external_id,text,embedding\na,x,"[0.5, 0.25, 0, -1]"\nb,y,\n', CSV)
    assert response.status_code == 201
    assert response.json()["embeddings_written"] == 1
    np.testing.assert_array_equal(ItemEmbedding.objects.get(item__external_id="a").as_array(), vector(0.5, 0.25, 0, -1))
    assert Item.objects.get(external_id="b").embedding_state == EmbeddingState.PENDING


# --- refused requests: 400 and nothing written ----------------------------------------------


BAD_REQUESTS = [
    pytest.param(JSON, b'[{"external_id": "a", "text": "x"},', "malformed JSON at line 1 column", id="malformed-json"),
    pytest.param(JSON, b'{"external_id": "a", "text": "x"}', "expected a JSON array of records", id="json-object"),
    pytest.param(
        JSONL,
        b'{"external_id": "n", "text": "x"}\n{"external_id": "b"\n',
        "malformed JSON on line 2",
        id="malformed-jsonl",
    ),
    pytest.param(CSV, b'external_id,text\nn,x\nb,"open quote\n', "malformed CSV", id="malformed-csv"),
    pytest.param(CSV, b"id,body\nn,x\n", "lacks required column(s): external_id, text", id="csv-header"),
    pytest.param(JSON, b'[{"external_id": "n", "text": "\xff"}]', "not valid UTF-8 (byte 31)", id="not-utf8"),
    pytest.param(JSON, b"[]", "holds no records", id="empty-array"),
    pytest.param(CSV, b"external_id,text\n", "holds no records", id="csv-header-only"),
    pytest.param(JSONL, b"\n\n", "holds no records", id="blank-jsonl"),
    pytest.param(JSON, b"[" * 50_000 + b"]" * 50_000, "malformed JSON", id="deep-nesting"),
]


@pytest.mark.parametrize("content_type, body, message", BAD_REQUESTS)
def test_malformed_payloads_are_refused(admin_api, project, seeded, content_type, body, message):
    before = snapshot()
    response = push(admin_api, project, body, content_type)
    assert response.status_code == 400, response.content
    assert message in response.json()["detail"]
    assert snapshot() == before


def test_empty_body_is_refused(admin_api, project):
    for content_type in (JSON, JSONL, CSV):
        response = admin_api.post(items_url(project), data=b"", content_type=content_type)
        assert response.status_code == 400
        assert response.json()["detail"] == "the request body holds no records"
    assert not IngestBatch.objects.exists()


def _rejected(response):
    body = response.json()
    assert "nothing was written" in body["detail"]
    return body["rejected"]


BAD_RECORDS = [
    pytest.param({"external_id": "b"}, {"text": "is required"}, id="missing-text"),
    pytest.param({"external_id": "b", "text": ""}, {"text": "must not be empty"}, id="empty-text"),
    pytest.param({"external_id": "b", "text": "   "}, {"text": "must not be empty"}, id="blank-text"),
    pytest.param({"external_id": "b", "text": 5}, {"text": "must be a string, got int"}, id="int-text"),
    pytest.param({"external_id": True, "text": "x"}, {"external_id": "must be a string, got bool"}, id="bool-id"),
    pytest.param({"external_id": 1.5, "text": "x"}, {"external_id": "must be a string, got float"}, id="float-id"),
    pytest.param(
        {"external_id": "b", "text": "x", "metadata": [1]},
        {"metadata": "must be an object, got list"},
        id="metadata-list",
    ),
    pytest.param(
        {"external_id": "b", "text": "x", "embedding": [1, 2, 3]},
        {"embedding": "has 3 values, this project's embeddings have 4"},
        id="embedding-length",
    ),
    pytest.param(
        {"external_id": "b", "text": "x", "embedding": [1, 2, 3, "4"]},
        {"embedding": "must contain only numbers"},
        id="embedding-str",
    ),
    pytest.param(
        {"external_id": "b", "txt": "x"},
        {
            "record": "unknown field(s) 'txt'; allowed: external_id, text, metadata, embedding, label, honeypot",
            "text": "is required",
        },
        id="unknown-field",
    ),
    pytest.param(
        {"external_id": "b", "text": "nul \x00 here"}, {"text": "must not contain NUL characters"}, id="nul-text"
    ),
    pytest.param(
        {"external_id": "b", "text": "x", "metadata": {"k": "\x00"}},
        {"metadata": "must not contain NUL characters"},
        id="nul-metadata",
    ),
    pytest.param(
        {"external_id": "a-0", "text": "again"},
        {"external_id": "duplicate within this request (first at index 0)"},
        id="duplicate",
    ),
]


@pytest.mark.parametrize("bad, errors", BAD_RECORDS)
def test_an_invalid_record_refuses_the_whole_request(admin_api, project, seeded, bad, errors):
    before = snapshot()
    # The first record would update the seeded item and the second create one: neither may happen.
    records = [{"external_id": "a-0", "text": "fine"}, {"external_id": "s-1", "text": "changed"}, bad]
    response = push(admin_api, project, records)
    assert response.status_code == 400
    body = response.json()
    assert (
        body["detail"]
        == "1 of 3 records are invalid; nothing was written (send ?on_error=skip to store the valid ones)"
    )
    assert body["rejected_count"] == 1
    expected_id = bad.get("external_id") if isinstance(bad.get("external_id"), str) else None
    assert body["rejected"] == [{"index": 2, "external_id": expected_id, "errors": errors}]
    assert snapshot() == before


def test_rejected_records_in_json_lines_and_csv_carry_their_line(admin_api, project):
    response = push(
        admin_api, project, '{"external_id": "a", "text": "x"}\n\n{"external_id": "b", "text": ""}\n', JSONL
    )
    assert response.status_code == 400
    assert _rejected(response) == [{"line": 3, "external_id": "b", "errors": {"text": "must not be empty"}}]

    response = push(admin_api, project, 'external_id,text\na,"two\nlines"\na,dup\nc,x,extra\n', CSV)
    assert response.status_code == 400
    assert _rejected(response) == [
        {"line": 4, "external_id": "a", "errors": {"external_id": "duplicate within this request (first at line 2)"}},
        {"line": 5, "external_id": None, "errors": {"row": "has 3 fields, the header has 2"}},
    ]
    assert not Item.objects.exists()


def test_text_longer_than_the_limit(admin_api, project, settings):
    settings.QUORUM_MAX_TEXT_CHARS = 10
    response = push(
        admin_api, project, [{"external_id": "a", "text": "x" * 11}, {"external_id": "b", "text": "y" * 10}]
    )
    assert response.status_code == 400
    assert _rejected(response) == [
        {"index": 0, "external_id": "a", "errors": {"text": "has 11 characters, the limit is 10"}}
    ]
    assert not Item.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'[{"external_id": "a", "text": "lone \\ud800 surrogate"}]', id="surrogate-text"),
        pytest.param(b'[{"external_id": "a\\udfff", "text": "x"}]', id="surrogate-id"),
        pytest.param(b'[{"external_id": "a", "text": "x", "metadata": {"\\ud800": 1}}]', id="surrogate-metadata-key"),
        pytest.param(b'[{"external_id": "a", "text": "x", "metadata": {"score": NaN}}]', id="nan-metadata"),
        pytest.param(b'[{"external_id": "a", "text": "x", "metadata": {"score": Infinity}}]', id="inf-metadata"),
        pytest.param(b'[{"external_id": "a", "text": "x", "metadata": {"score": 1e999}}]', id="overflow-metadata"),
        pytest.param(
            b'[{"external_id": "a", "text": "x", "embedding": [1, 2, 3, ' + b"9" * 400 + b"]}]", id="huge-int-embedding"
        ),
        pytest.param(b'[{"external_id": "a", "text": "x", "embedding": [1, 2, 3, NaN]}]', id="nan-embedding"),
        pytest.param(
            b'[{"external_id": "a", "text": "x", "metadata": ' + b'{"k": ' * 800 + b"1" + b"}" * 800 + b"}]",
            id="deep-metadata",
        ),
        pytest.param(b'[{"external_id": ' + b"1" * 5000 + b', "text": "x"}]', id="5000-digit-id"),
    ],
)
def test_unstorable_values_are_a_400_not_a_crash(admin_api, project, body):
    response = push(admin_api, project, body)
    assert response.status_code == 400, response.content
    assert not Item.objects.exists()


def test_a_rejected_surrogate_id_is_reported_escaped(admin_api, project):
    response = push(admin_api, project, b'[{"external_id": "a\\udfff", "text": "x"}]')
    assert response.json()["rejected"] == [
        {
            "index": 0,
            "external_id": "a\\udfff",
            "errors": {"external_id": "must not contain lone surrogates (invalid Unicode)"},
        }
    ]


@override_settings(QUORUM_INGEST_MAX_BYTES=200)
def test_payload_over_the_size_limit(admin_api, project):
    small = json.dumps([{"external_id": "a", "text": "x"}]).encode()
    big = json.dumps([{"external_id": "a", "text": "x" * 300}]).encode()
    response = push(admin_api, project, big)
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "payload is larger than the limit of 200 bytes (QUORUM_INGEST_MAX_BYTES); split it into several requests"
    )
    assert not Item.objects.exists() and not IngestBatch.objects.exists()
    assert push(admin_api, project, small).status_code == 201


def test_payload_of_exactly_the_size_limit_is_accepted(admin_api, project):
    body = json.dumps([{"external_id": "a", "text": "x" * 50}]).encode()
    with override_settings(QUORUM_INGEST_MAX_BYTES=len(body)):
        assert push(admin_api, project, body).status_code == 201
    with override_settings(QUORUM_INGEST_MAX_BYTES=len(body) - 1):
        assert push(admin_api, project, body).status_code == 400


@pytest.mark.parametrize("content_type", [JSON, JSONL])
def test_too_many_records(admin_api, project, content_type):
    records = [{"external_id": str(i), "text": "x"} for i in range(3)]
    with override_settings(QUORUM_INGEST_MAX_RECORDS=2):
        response = push(admin_api, project, records, content_type)
        assert response.status_code == 400
        assert response.json()["detail"] == "3 records in one request; the limit is 2 (QUORUM_INGEST_MAX_RECORDS)"
        assert not Item.objects.exists()
        assert push(admin_api, project, records[:2], content_type).status_code == 201


def test_large_request_beyond_django_upload_limit_and_chunk_size(admin_api, project):
    # ~3.3 MB (over DATA_UPLOAD_MAX_MEMORY_SIZE) and more records than one 2,000-row statement.
    records = [{"external_id": f"big-{i}", "text": f"{i} " + "lorem ipsum " * 100} for i in range(2600)]
    body = json.dumps(records).encode()
    assert len(body) > 3_000_000
    response = push(admin_api, project, body)
    assert response.status_code == 201
    assert response.json()["created"] == 2600
    assert Item.objects.filter(project=project).count() == 2600
    records[2500]["text"] = "changed"
    body = push(admin_api, project, json.dumps(records).encode()).json()
    assert (body["created"], body["updated"], body["unchanged"]) == (0, 1, 2599)
    assert Item.objects.get(project=project, external_id="big-2500").text == "changed"


# --- on_error=skip --------------------------------------------------------------------------


def test_on_error_skip_stores_the_valid_records(admin_api, project):
    records = [
        {"external_id": "ok-1", "text": "fine"},
        {"external_id": "bad", "text": ""},
        {"external_id": "ok-2", "text": "fine too"},
        {"external_id": "ok-1", "text": "duplicate"},
    ]
    response = push(admin_api, project, records, query="on_error=skip")
    assert response.status_code == 201
    body = response.json()
    assert (body["created"], body["rejected_count"]) == (2, 2)
    assert body["rejected"] == [
        {"index": 1, "external_id": "bad", "errors": {"text": "must not be empty"}},
        {
            "index": 3,
            "external_id": "ok-1",
            "errors": {"external_id": "duplicate within this request (first at index 0)"},
        },
    ]
    assert sorted(Item.objects.values_list("external_id", "text")) == [("ok-1", "fine"), ("ok-2", "fine too")]
    batch = IngestBatch.objects.get(pk=body["batch_id"])
    assert (batch.records, batch.created, batch.rejected) == (4, 2, 2)


def test_on_error_skip_with_lines(admin_api, project):
    response = push(admin_api, project, "external_id,text\na,x\nb\nc,z\n", CSV, query="on_error=skip")
    assert response.status_code == 201
    assert response.json()["rejected"] == [
        {"line": 3, "external_id": None, "errors": {"row": "has 1 fields, the header has 2"}}
    ]
    assert sorted(Item.objects.values_list("external_id", flat=True)) == ["a", "c"]


def test_on_error_skip_with_nothing_valid_is_still_a_400(admin_api, project):
    response = push(admin_api, project, [{"external_id": "a", "text": ""}], query="on_error=skip")
    assert response.status_code == 400
    assert response.json()["detail"] == "1 of 1 records are invalid; nothing was written"
    assert not IngestBatch.objects.exists()


def test_on_error_skip_does_not_excuse_a_malformed_payload(admin_api, project):
    response = push(admin_api, project, b'[{"external_id": "a", "text": "x"}, {', query="on_error=skip")
    assert response.status_code == 400
    assert not Item.objects.exists()


def test_unknown_on_error_value(admin_api, project):
    response = push(admin_api, project, [{"external_id": "a", "text": "x"}], query="on_error=ignore")
    assert response.status_code == 400
    assert response.json() == {"on_error": "must be 'reject' or 'skip', got 'ignore'"}
    assert not Item.objects.exists()


# --- who may push, what is refused ----------------------------------------------------------


def test_unknown_project_is_404(admin_api, project):
    response = push(admin_api, project.pk + 1000, [{"external_id": "a", "text": "x"}])
    assert response.status_code == 404


def test_non_member_gets_404(api_for, make_user, project):
    api = api_for(make_user("mallory"))
    assert push(api, project, [{"external_id": "a", "text": "x"}]).status_code == 404
    assert api.get(items_url(project)).status_code == 404
    assert not Item.objects.exists()


@pytest.mark.parametrize("role", [Role.ANNOTATOR, Role.REVIEWER])
def test_only_admins_push(api_for, member, project, role):
    api = api_for(member("m", role))
    response = push(api, project, [{"external_id": "a", "text": "x"}])
    assert response.status_code == 403
    assert not Item.objects.exists()


def test_anonymous_is_401(api_for, project):
    api = api_for(None)
    assert push(api, project, [{"external_id": "a", "text": "x"}]).status_code == 401
    assert api.get(items_url(project)).status_code == 401


def test_superuser_may_push_without_membership(api_for, make_user, project):
    api = api_for(make_user("root", superuser=True))
    assert push(api, project, [{"external_id": "a", "text": "x"}]).status_code == 201


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/octet-stream",
    ],
)
def test_unsupported_content_type_is_415(admin_api, project, content_type):
    response = admin_api.post(
        items_url(project), data=b'[{"external_id": "a", "text": "x"}]', content_type=content_type
    )
    assert response.status_code == 415
    assert not Item.objects.exists()


ODD_BODIES = [
    b"",
    b"null",
    b"true",
    b"0",
    b'""',
    b"{}",
    b"[null]",
    b"[[]]",
    b"[{}]",
    b"[1, 2, 3]",
    b'["a"]',
    b"\x00\x01\x02",
    b"\xef\xbb\xbf",
    b"\xff\xfe[\x00]\x00",
    b"\n\r\n",
    b",,,",
    b'"',
    b'[{"external_id":',
    b"\\u0000",
    b'[{"external_id": {"a": 1}, "text": {"b": 2}, "metadata": "x", "embedding": {"c": 3}}]',
    b'[{"external_id": "a", "text": "x", "embedding": [[1], [2], [3], [4]]}]',
    b'[{"external_id": "a", "text": "x", "embedding": [true, false, null, 1]}]',
    b'[{"external_id": "a", "text": "x", "embedding": [1e400, -1e400, 0, 0]}]',
    b'[{"external_id": "a", "text": "x", "metadata": {"": ""}}]',
    b'external_id,text\n"a"b,c\n',
    b"external_id,text,metadata\na,b,{\n",
    b"external_id,text,embedding\na,b,NaN\n",
    b"external_id,text,embedding\na,b,[NaN,1,2,3]\n",
    b"external_id,text\n\x00,\x00\n",
    b"\r\r\r",
    b'{"external_id": "a", "text": "x"}\r{"external_id": "b", "text": "y"}',
]


def test_odd_payloads_never_cause_a_server_error(admin_api, project):
    rng = random.Random(1234)
    bodies = list(ODD_BODIES)
    alphabet = b'[]{}",:\\ \n\r\x00\xffabc0123456789-.eE' + "é\u2028".encode()
    for _ in range(60):
        bodies.append(bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 60))))
    template = json.dumps(
        [{"external_id": "k", "text": "text", "metadata": {"a": [1, 2]}, "embedding": [1, 2, 3, 4]}]
    ).encode()
    for _ in range(60):  # mutate a valid payload one byte at a time
        body = bytearray(template)
        for _ in range(rng.randint(1, 3)):
            body[rng.randrange(len(body))] = rng.choice(alphabet)
        bodies.append(bytes(body))

    for body in bodies:
        for content_type in (JSON, JSONL, CSV):
            for query in ("", "on_error=skip"):
                response = push(admin_api, project, body, content_type, query)
                assert response.status_code < 500, (body, content_type, response.content)
                assert response.status_code in (200, 201, 400), (body, content_type, response.status_code)


# --- listing items --------------------------------------------------------------------------


@pytest.fixture
def five_items(admin_api, project):
    push(admin_api, project, [{"external_id": f"i-{n}", "text": f"text {n}"} for n in range(5)])
    ids = list(Item.objects.filter(project=project).order_by("id").values_list("id", flat=True))
    Item.objects.filter(pk__in=ids[:2]).update(status=ItemStatus.FINALIZED)
    return ids


def test_list_items_with_cursor_pagination(admin_api, project, five_items):
    seen, url, pages = [], items_url(project, "page_size=2"), 0
    while url:
        response = admin_api.get(url)
        assert response.status_code == 200
        body = response.json()
        assert len(body["results"]) <= 2
        seen += [row["id"] for row in body["results"]]
        url, pages = body["next"], pages + 1
    assert seen == five_items
    assert pages == 3

    first = admin_api.get(items_url(project, "page_size=2")).json()
    second = admin_api.get(first["next"]).json()
    back = admin_api.get(second["previous"]).json()
    assert [r["id"] for r in back["results"]] == [r["id"] for r in first["results"]]
    assert set(first["results"][0]) == {
        "id",
        "external_id",
        "text",
        "metadata",
        "status",
        "embedding_state",
        "honeypot",
        "created_at",
        "updated_at",
    }


def test_new_items_do_not_shift_a_cursor(admin_api, project, five_items):
    first = admin_api.get(items_url(project, "page_size=2")).json()
    push(admin_api, project, [{"external_id": "later", "text": "x"}])
    rest, url = [], first["next"]
    while url:
        body = admin_api.get(url).json()
        rest += [row["external_id"] for row in body["results"]]
        url = body["next"]
    assert rest == ["i-2", "i-3", "i-4", "later"]


def test_filter_items_by_status_and_external_id(admin_api, project, five_items):
    finalized = admin_api.get(items_url(project, "status=finalized")).json()["results"]
    assert [row["id"] for row in finalized] == five_items[:2]
    assert all(row["status"] == "finalized" for row in finalized)
    unlabeled = admin_api.get(items_url(project, "status=unlabeled")).json()["results"]
    assert [row["id"] for row in unlabeled] == five_items[2:]

    one = admin_api.get(items_url(project, "external_id=i-3")).json()["results"]
    assert [(row["external_id"], row["text"]) for row in one] == [("i-3", "text 3")]
    assert admin_api.get(items_url(project, "external_id=nope")).json()["results"] == []

    pending = admin_api.get(items_url(project, "embedding_state=pending")).json()["results"]
    assert len(pending) == 5


def test_invalid_status_filter_is_a_400(admin_api, project, five_items):
    response = admin_api.get(items_url(project, "status=bogus"))
    assert response.status_code == 400
    assert "status" in response.json()


def test_list_shows_only_this_projects_items(admin_api, project, five_items, make_project):
    other = make_project()
    push(admin_api, other, [{"external_id": "i-0", "text": "other project"}])
    rows = admin_api.get(items_url(project)).json()["results"]
    assert [row["id"] for row in rows] == five_items
    other_rows = admin_api.get(items_url(other, "external_id=i-0")).json()["results"]
    assert [row["text"] for row in other_rows] == ["other project"]


def test_reviewers_list_items_annotators_do_not(api_for, member, project, five_items):
    assert api_for(member("rev", Role.REVIEWER)).get(items_url(project)).status_code == 200
    assert api_for(member("ann", Role.ANNOTATOR)).get(items_url(project)).status_code == 403


# --- ingest batches -------------------------------------------------------------------------


def test_ingest_batches_list_and_detail(admin_api, api_for, member, project):
    first = push(admin_api, project, [{"external_id": "a", "text": "x"}]).json()["batch_id"]
    second = push(admin_api, project, [{"external_id": "a", "text": "x"}]).json()["batch_id"]
    listing = admin_api.get(f"/api/v1/projects/{project.pk}/ingests").json()
    assert [row["id"] for row in listing["results"]] == [second, first]
    detail = admin_api.get(f"/api/v1/projects/{project.pk}/ingests/{second}").json()
    assert (detail["unchanged"], detail["status"], detail["created_by"], detail["format"]) == (
        1,
        "processed",
        "alice",
        "json",
    )

    reviewer = api_for(member("rev", Role.REVIEWER))
    assert reviewer.get(f"/api/v1/projects/{project.pk}/ingests").status_code == 403


def test_ingest_batch_of_another_project_is_404(admin_api, project, make_project):
    other = make_project()
    batch_id = push(admin_api, other, [{"external_id": "a", "text": "x"}]).json()["batch_id"]
    assert admin_api.get(f"/api/v1/projects/{project.pk}/ingests/{batch_id}").status_code == 404
    assert admin_api.get(f"/api/v1/projects/{other.pk}/ingests/{batch_id}").status_code == 200


def test_deleting_the_project_removes_items_embeddings_and_batches(admin_api, project, seeded):
    assert admin_api.delete(f"/api/v1/projects/{project.pk}").status_code == 204
    assert not Project.objects.filter(pk=project.pk).exists()
    assert (Item.objects.count(), ItemEmbedding.objects.count(), IngestBatch.objects.count()) == (0, 0, 0)


def test_rejected_list_is_capped_but_the_count_is_not(admin_api, project):
    records = [{"external_id": f"bad-{n}", "text": ""} for n in range(1005)] + [{"external_id": "ok", "text": "x"}]
    response = push(admin_api, project, records, query="on_error=skip")
    assert response.status_code == 201
    body = response.json()
    assert (body["created"], body["rejected_count"], len(body["rejected"])) == (1, 1005, 1000)
    assert body["rejected"][-1]["index"] == 999
    assert IngestBatch.objects.get(pk=body["batch_id"]).rejected == 1005
