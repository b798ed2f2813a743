"""The streamed label export (JSON Lines, CSV) and the model-weights download: contents, filters,
roles, streaming with a bounded number of queries, and DRF's ``?format=`` override kept out."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from acquisition.models import ModelVersion
from annotation import export
from annotation.ingest_records import text_digest
from annotation.models import (
    Annotation,
    Item,
    ItemStatus,
    LabelClass,
    LabelSource,
    Role,
)
from tests.invariants import annotate_directly, make_items

pytestmark = pytest.mark.django_db

TRICKY = 'Hello, "world"\nsecond line, with a comma'
UNICODE = "Karte verloren — ünïcødé ✓ 🚀"
HEADER = "external_id,text,label,confidence,source,gold,honeypot,status,metadata,annotations"


def url(project_id, **params):
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return reverse("api-export", args=[project_id]) + (f"?{query}" if query else "")


def body(response) -> bytes:
    assert response.streaming is True
    return b"".join(response.streaming_content)


def label(project, name):
    return LabelClass.objects.get(project=project, name=name)


def iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def item(project, external_id, text, **fields):
    return Item.objects.create(
        project=project, external_id=external_id, text=text, text_hash=text_digest(text), **fields
    )


@pytest.fixture
def people(member):
    return {
        "ann1": member("ann1"),
        "ann2": member("ann2"),
        "rev": member("rev", Role.REVIEWER),
    }


@pytest.fixture
def pool(project, people):
    """Three items: one in progress with two annotations and tricky text; one finalised by review
    (unicode, annotations created out of username order); one untouched, with no metadata."""
    ann1, ann2 = people["ann1"], people["ann2"]
    refund, card, other = label(project, "refund"), label(project, "card_lost"), label(project, "other")
    a = item(project, "a-1", TRICKY, metadata={"channel": "chat", "n": 1}, status=ItemStatus.IN_PROGRESS)
    b = item(
        project,
        "b,2",
        UNICODE,
        metadata={"lang": "de", "note": "ü"},
        status=ItemStatus.FINALIZED,
        final_label=card,
        final_confidence=0.93,
        final_source=LabelSource.REVIEW,
        finalized_at=timezone.now(),
    )
    c = item(project, "c-3", "plain")
    Annotation.objects.create(project=project, item=a, user=ann1, label=refund)
    Annotation.objects.create(project=project, item=b, user=ann2, label=card)
    Annotation.objects.create(project=project, item=a, user=ann2, label=other)
    Annotation.objects.create(project=project, item=b, user=ann1, label=refund)
    return a, b, c


def expected_records(project, items):
    out = []
    for it in items:
        it.refresh_from_db()
        annotations = [
            {"annotator": ann.user.username, "label": ann.label.name, "created_at": iso(ann.created_at)}
            for ann in Annotation.objects.filter(item=it).select_related("user", "label").order_by("id")
        ]
        out.append(
            {
                "external_id": it.external_id,
                "text": it.text,
                "label": it.final_label.name if it.final_label_id else None,
                "confidence": it.final_confidence,
                "source": it.final_source or None,
                "gold": it.final_source == "gold",
                "honeypot": it.honeypot,
                "status": it.status,
                "metadata": it.metadata,
                "annotations": annotations,
            }
        )
    return out


# --- JSON Lines ------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 2, 2000])
def test_jsonl_export_holds_every_item_in_id_order_with_its_annotations(admin_api, project, pool, monkeypatch, chunk):
    monkeypatch.setattr(export, "CHUNK_SIZE", chunk)
    response = admin_api.get(url(project.pk))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"] == f'attachment; filename="project-{project.pk}-labels.jsonl"'
    raw = body(response)
    assert raw.endswith(b"\n")
    lines = raw.decode("utf-8").split("\n")[:-1]
    assert [json.loads(line) for line in lines] == expected_records(project, pool)
    # the record of b, exactly (compact, unicode unescaped, annotations in annotation-id order)
    a, b, _ = pool
    annotations = list(Annotation.objects.filter(item=b).order_by("id"))
    assert lines[1] == (
        '{"external_id":"b,2","text":"' + UNICODE + '","label":"card_lost","confidence":0.93,"source":"review",'
        '"gold":false,"honeypot":false,"status":"finalized","metadata":{"lang":"de","note":"ü"},"annotations":['
        f'{{"annotator":"ann2","label":"card_lost","created_at":"{iso(annotations[0].created_at)}"}},'
        f'{{"annotator":"ann1","label":"refund","created_at":"{iso(annotations[1].created_at)}"}}]}}'
    )
    assert json.loads(lines[0])["text"] == TRICKY
    assert json.loads(lines[2]) == {
        "external_id": "c-3",
        "text": "plain",
        "label": None,
        "confidence": None,
        "source": None,
        "gold": False,
        "honeypot": False,
        "status": "unlabeled",
        "metadata": {},
        "annotations": [],
    }


def test_export_of_an_empty_project_is_empty(admin_api, project):
    assert body(admin_api.get(url(project.pk))) == b""
    assert body(admin_api.get(url(project.pk, format="csv"))).decode() == HEADER + "\r\n"


def test_status_final_exports_only_items_with_a_final_label(admin_api, project, pool):
    _, b, _ = pool
    lines = body(admin_api.get(url(project.pk, status="final"))).decode().splitlines()
    assert [json.loads(line) for line in lines] == expected_records(project, [b])
    rows = list(
        csv.DictReader(io.StringIO(body(admin_api.get(url(project.pk, format="csv", status="final"))).decode()))
    )
    assert [row["external_id"] for row in rows] == ["b,2"]
    # explicit "all" is the default
    assert body(admin_api.get(url(project.pk, status="all"))) == body(admin_api.get(url(project.pk)))


def test_export_leaves_other_projects_out(admin_api, project, pool, make_project):
    other = make_project("Other")
    make_items(other, 3, prefix="o")
    lines = body(admin_api.get(url(project.pk))).decode().splitlines()
    assert [json.loads(line)["external_id"] for line in lines] == ["a-1", "b,2", "c-3"]
    assert len(body(admin_api.get(url(other.pk))).decode().splitlines()) == 3


# --- CSV -------------------------------------------------------------------------------------


def test_csv_export_round_trips_through_dictreader(admin_api, project, pool, monkeypatch):
    monkeypatch.setattr(export, "CHUNK_SIZE", 2)
    response = admin_api.get(url(project.pk, format="csv"))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="project-{project.pk}-labels.csv"'
    text = body(response).decode("utf-8")
    assert text.startswith(HEADER + "\r\n")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    expected = expected_records(project, pool)
    assert [list(row) for row in rows] == [HEADER.split(",")] * 3
    for row, record in zip(rows, expected, strict=True):
        assert row == {
            "external_id": record["external_id"],
            "text": record["text"],
            "label": record["label"] or "",
            "confidence": "" if record["confidence"] is None else str(record["confidence"]),
            "source": record["source"] or "",
            "gold": "true" if record["gold"] else "false",
            "honeypot": "true" if record["honeypot"] else "false",
            "status": record["status"],
            "metadata": json.dumps(record["metadata"], ensure_ascii=False, separators=(",", ":")),
            "annotations": json.dumps(record["annotations"], ensure_ascii=False, separators=(",", ":")),
        }
        assert json.loads(row["metadata"]) == record["metadata"]
        assert json.loads(row["annotations"]) == record["annotations"]
    assert rows[0]["text"] == TRICKY
    assert rows[1]["text"] == UNICODE
    assert rows[1]["external_id"] == "b,2"
    # the tricky text is quoted, its quotes doubled, its newline kept inside the field
    assert '"Hello, ""world""\nsecond line, with a comma"' in text


# --- parameters, roles, content negotiation --------------------------------------------------


def test_unknown_format_is_a_400_that_lists_the_allowed_values(admin_api, project, pool):
    for bad in ("xml", "json", "api"):  # json / api: DRF's own ?format= override must not answer
        response = admin_api.get(url(project.pk, format=bad))
        assert response.status_code == 400, bad
        data = response.json()
        assert data["allowed"]["format"] == ["jsonl", "csv"]
        assert "jsonl" in data["errors"]["format"] and "csv" in data["errors"]["format"]
        assert repr(bad) in data["detail"]
        assert data["code"] == "invalid"
    response = admin_api.get(url(project.pk, status="open"))
    assert response.status_code == 400
    assert response.json()["allowed"]["status"] == ["all", "final"]


@pytest.mark.parametrize(
    ("role", "expected"),
    [(Role.ANNOTATOR, 403), (Role.REVIEWER, 200), (Role.ADMIN, 200), (None, 404)],
)
def test_export_roles(api_for, make_user, member, project, pool, role, expected):
    user = member("someone", role) if role else make_user("stranger")
    response = api_for(user).get(url(project.pk, format="csv"))
    assert response.status_code == expected
    if expected != 200:
        assert response["Content-Type"] == "application/json"
        assert "detail" in response.json()
    else:
        assert len(list(csv.DictReader(io.StringIO(body(response).decode(), newline="")))) == 3


def test_export_of_an_unknown_project_is_a_404_and_anonymous_callers_are_refused(api_for, admin_api, project):
    assert admin_api.get(url(project.pk + 100)).status_code == 404
    assert admin_api.get(url(project.pk + 100, format="nope")).status_code == 404  # membership first
    assert api_for(None).get(url(project.pk)).status_code in (401, 403)


def test_export_with_a_token_and_a_download_accept_header(token_api, people, project, pool):
    api = token_api(people["rev"])
    response = api.get(url(project.pk, format="csv"), HTTP_ACCEPT="text/csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert body(response).decode().startswith(HEADER)
    response = api.get(url(project.pk), HTTP_ACCEPT="application/x-ndjson")
    assert response.status_code == 200
    assert len(body(response).splitlines()) == 3
    # errors stay JSON whatever the client accepts
    response = api.get(url(project.pk, format="xml"), HTTP_ACCEPT="text/csv")
    assert response.status_code == 400
    assert response.json()["allowed"]["format"] == ["jsonl", "csv"]


# --- streaming and bounded queries -----------------------------------------------------------


def plant(project, users, n):
    """``n`` items, each labelled by every one of ``users``; every second one finalised."""
    items = make_items(project, n, prefix="bulk")
    labels = list(LabelClass.objects.filter(project=project).order_by("order", "id"))
    pairs = [(it, user) for it in items for user in users]
    annotate_directly(project, [(it, user, labels[k % len(labels)]) for k, (it, user) in enumerate(pairs)])
    Item.objects.filter(pk__in=[it.pk for it in items[::2]]).update(
        status=ItemStatus.FINALIZED, final_label=labels[0], final_confidence=1.0, final_source=LabelSource.CONSENSUS
    )
    return items


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_streams_with_queries_bounded_by_the_number_of_chunks(
    admin_api, project, people, monkeypatch, django_assert_max_num_queries, fmt
):
    plant(project, [people["ann1"], people["ann2"]], 50)
    monkeypatch.setattr(export, "CHUNK_SIZE", 10)
    # project + role + label names, then per chunk of 10 items: its items and its annotations
    # (5 full chunks and the empty read that ends the walk); nothing per item.
    with django_assert_max_num_queries(3 + 2 * 5 + 1) as captured:
        response = admin_api.get(url(project.pk, format=fmt))
        assert response.status_code == 200
        assert response.streaming is True
        raw = b"".join(response.streaming_content)
    sql = [query["sql"].upper() for query in captured.captured_queries]
    assert not any("OFFSET" in statement for statement in sql)
    if fmt == "jsonl":
        records = [json.loads(line) for line in raw.decode().splitlines()]
    else:
        records = list(csv.DictReader(io.StringIO(raw.decode(), newline="")))
        for record in records:
            record["annotations"] = json.loads(record["annotations"])
    assert [r["external_id"] for r in records] == [f"bulk-{i}" for i in range(50)]
    assert all([a["annotator"] for a in r["annotations"]] == ["ann1", "ann2"] for r in records)
    assert sum(1 for r in records if r["label"]) == 25


def test_export_generator_walks_by_keyset_and_yields_blocks(project, people):
    plant(project, [people["ann1"]], 25)
    blocks = list(export.stream(project, "jsonl", buffer_bytes=1, chunk_size=7))
    assert len(blocks) == 25  # one block per line when the buffer is tiny
    assert all(block.endswith(b"\n") for block in blocks)
    assert len(list(export.stream(project, "jsonl"))) == 1  # small exports: one block
    assert [r["external_id"] for r in export.records(project, final_only=True, chunk_size=4)] == [
        f"bulk-{i}" for i in range(0, 25, 2)
    ]
    with pytest.raises(ValueError, match="allowed: jsonl, csv"):
        export.stream(project, "xml")


def test_schema_documents_the_export_and_weights_downloads():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    get = schema["paths"]["/api/v1/projects/{project_id}/export"]["get"]
    params = {p["name"]: p for p in get["parameters"] if p["in"] == "query"}
    assert set(params["format"]["schema"]["enum"]) == {"jsonl", "csv"}
    assert params["format"]["schema"]["default"] == "jsonl"
    assert set(params["status"]["schema"]["enum"]) == {"all", "final"}
    assert set(get["responses"]["200"]["content"]) == {"application/x-ndjson", "text/csv"}
    weights = schema["paths"]["/api/v1/projects/{project_id}/model-versions/{version}/weights"]["get"]
    assert set(weights["responses"]["200"]["content"]) == {"application/octet-stream"}


# --- model weights ---------------------------------------------------------------------------

WEIGHTS = b"\x80\x02fake torch state \x00\xff" * 100


@pytest.fixture
def versions(project, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    stored = ModelVersion.objects.create(project=project, version=3, status="current", label_names=["a", "b"])
    stored.weights.save("x.pt", ContentFile(WEIGHTS))
    empty = ModelVersion.objects.create(project=project, version=4, status="failed")
    return stored, empty


def weights_url(project_id, version):
    return reverse("api-model-version-weights", args=[project_id, version])


def test_admin_downloads_the_stored_weights(admin_api, project, versions):
    response = admin_api.get(weights_url(project.pk, 3))
    assert response.status_code == 200
    assert response.streaming is True
    assert response["Content-Disposition"] == f'attachment; filename="project-{project.pk}-v3.pt"'
    assert response["Content-Type"] == "application/octet-stream"
    assert int(response["Content-Length"]) == len(WEIGHTS)
    assert b"".join(response.streaming_content) == WEIGHTS
    response.close()


def test_weights_download_ignores_accept_and_format(admin_api, project, versions):
    response = admin_api.get(weights_url(project.pk, 3) + "?format=json", HTTP_ACCEPT="application/octet-stream")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == WEIGHTS
    response.close()


def test_weights_404_for_a_missing_version_or_missing_weights(admin_api, project, versions):
    stored, _ = versions
    for version, code in ((99, "not_found"), (4, "no_weights")):
        response = admin_api.get(weights_url(project.pk, version))
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert response.json()["code"] == code
        assert str(version) in response.json()["detail"]
    stored.weights.storage.delete(stored.weights.name)  # recorded but gone from storage
    response = admin_api.get(weights_url(project.pk, 3))
    assert response.status_code == 404
    assert response.json()["code"] == "no_weights"


@pytest.mark.parametrize(
    ("role", "expected"),
    [(Role.ANNOTATOR, 403), (Role.REVIEWER, 403), (None, 404)],
)
def test_weights_only_for_admins(api_for, make_user, member, project, versions, role, expected):
    user = member("someone", role) if role else make_user("stranger")
    response = api_for(user).get(weights_url(project.pk, 3))
    assert response.status_code == expected
    assert "detail" in response.json()


def test_weights_of_an_unknown_project_is_a_404(admin_api, project, versions):
    assert admin_api.get(weights_url(project.pk + 100, 3)).status_code == 404
